#!/usr/bin/env bash
# Set up a virtual environment (CPU variants, training, Ray and test tools) and run the test suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AVSEARCH_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[cpu,train,test,ray]'
"$VENV/bin/ruff" check models indexer service tests bench scripts
"$VENV/bin/hadolint" Dockerfile
exec "$VENV/bin/python" -m pytest "$@"
