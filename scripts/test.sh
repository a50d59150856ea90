#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
python3 -m pip install -q --no-deps -e .
python3 -m pytest -q tests "$@"
