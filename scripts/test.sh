#!/usr/bin/env bash
# Quickstart 2: install everything, lint, and run the whole test suite (slow tests included).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
uv run ruff check ct_assets ct_assets_tests bench bentos examples
exec uv run pytest --durations=15 "$@"
