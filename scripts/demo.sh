#!/usr/bin/env bash
# Quickstart 1: install everything, then run the live loop (Dagster, sensors, serving, day-by-day replay).
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec uv run ct demo "$@"
