"""avsearch: indexer."""

import logging

# FAISS logs at INFO which of its CPU builds (AVX512, AVX2, generic) it loaded, on every import:
# noise in every command's output. Its warnings still show.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)
