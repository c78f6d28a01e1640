#!/usr/bin/env bash
# Sourced by the other scripts: makes sure uv exists and the locked environment is installed,
# using the machine's Python 3.11 (uv must not try to download one).
set -euo pipefail
export UV_PYTHON_DOWNLOADS=never
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv from PyPI" >&2
  python3 -m pip install --user --quiet uv 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages uv
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
uv sync --locked --python 3.11 --quiet
