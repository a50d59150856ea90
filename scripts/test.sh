#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the test suite: first on two processes
# (pytest-xdist; TEST_WORKERS=N for another count, 0 for one process), then the tests
# marked `alone` (wall-clock and latency bounds) with the machine to themselves.
# Extra arguments go to both pytest calls, e.g. `bash scripts/test.sh -k slurm`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r requirements-dev.txt
python3 -m pip install -q --no-deps -e .
workers=${TEST_WORKERS:-2}
parallel=()
if [ "$workers" != 0 ]; then
  parallel=(-n "$workers" --dist loadgroup --no-loadscope-reorder)
fi
status=0
python3 -m pytest -q "${parallel[@]}" -m "not alone" tests "$@" || status=$?
# Exit code 5 is "no test selected" (e.g. -k matched none of the `alone` tests).
python3 -m pytest -q -m alone tests "$@" || { code=$?; [ "$code" = 5 ] || status=$code; }
if [ "$status" = 5 ]; then status=0; fi
exit "$status"
