"""Corpus builders: the AV-digits corpus (MNIST images paired with FSDD recordings)."""
