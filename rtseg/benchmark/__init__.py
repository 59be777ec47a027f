"""Headless benchmark: runs a backend over a source and reports per-stage latency."""
