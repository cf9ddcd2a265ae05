#!/usr/bin/env bash
# Set up a CPU serving environment (no torch) and run the built-in demo: build the AV-digits
# corpus from the sample in data/sample/, index it with the pretrained model bundle and serve it
# (a search page at /, the API docs at /docs). Nothing is downloaded but PyPI packages.
# Usage: bash scripts/demo.sh [avsearch demo flags, e.g. --port 8080 --host 0.0.0.0 --no-serve]
# Environment: AVSEARCH_VENV (default .venv-demo), AVSEARCH_DEMO_DIR (default out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AVSEARCH_VENV:-.venv-demo}
OUT=${AVSEARCH_DEMO_DIR:-out/demo}
if [ ! -x "$VENV/bin/python" ]; then
  echo "demo: creating the virtual environment $VENV" >&2
  python3 -m venv "$VENV"
fi
echo "demo: installing avsearch with its CPU runtime (onnxruntime, faiss-cpu) into $VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[cpu]'
exec "$VENV/bin/avsearch" demo --out "$OUT" "$@"
