#!/usr/bin/env bash
# Set up a CPU serving environment (no torch) and run the built-in demo: build the AV-digits
# corpus with a held-out speaker and evaluate the pretrained model bundle on it.
# Usage: bash scripts/demo.sh [DATA_DIR]   (default: $AVSEARCH_DATA or ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AVSEARCH_VENV:-.venv-demo}
DATA=${1:-${AVSEARCH_DATA:-../shared/data}}
OUT=${AVSEARCH_DEMO_DIR:-out/demo}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[cpu]'
"$VENV/bin/avsearch" corpus digits --source "$DATA" --out "$OUT/corpus" --split test \
  --scenes 200 --overwrite
"$VENV/bin/avsearch" eval --model models/pretrained/digits --corpus "$OUT/corpus" \
  --json "$OUT/eval.json"
