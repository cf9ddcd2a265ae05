"""avsearch: models."""
