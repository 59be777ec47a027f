"""Capture / inference threads, sources, mailbox and stats. No Qt here."""
