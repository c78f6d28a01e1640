#!/usr/bin/env bash
# Quickstart 2: install everything, lint, and run the whole test suite (slow tests included).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
uv run ruff check ct_assets ct_assets_tests bench bentos examples
# Two workers (pytest-xdist): the slow tests mostly wait on servers and sensors, so two at a time
# fit on two cores; `worksteal` evens out their lengths. Tests marked `alone` (the demo's
# ten-minute budget) run afterwards by themselves, so their timing is not another test's load.
if [ $# -gt 0 ]; then
  exec uv run pytest -n 2 --dist worksteal --durations=15 "$@"
fi
uv run pytest -n 2 --dist worksteal --durations=15 -m "not alone"
exec uv run pytest --durations=5 -m alone
