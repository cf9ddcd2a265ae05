"""Retrieval and localisation evaluation (DESIGN.md, "Evaluation protocol"); torch-free."""
