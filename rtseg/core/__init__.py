"""Types, errors and metadata shared by every layer (stdlib + numpy only)."""
