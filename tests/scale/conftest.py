"""Fixtures of the scale tests: the service tests' helpers (a live uvicorn server) reused."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tests/indexer/conftest.py

SERVICE_TESTS = Path(__file__).resolve().parents[1] / "service"
if str(SERVICE_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVICE_TESTS))  # service_helpers: live_server, build_index
