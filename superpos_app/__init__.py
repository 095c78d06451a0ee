"""superpos desktop app."""
