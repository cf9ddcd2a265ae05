"""avsearch: service."""
