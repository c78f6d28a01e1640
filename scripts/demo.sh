#!/usr/bin/env bash
# Quickstart 1: install everything, run the demo on real 2013 flights, then open the Dagster UI.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec uv run ct demo "$@"
