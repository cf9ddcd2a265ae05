"""avsearch: indexer."""
