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
# The README's later commands (`uv run ct ...`) run in new shells, whose PATH may lack ~/.local/bin:
# as root, uv is linked into /usr/local/bin; otherwise the one line to add is printed.
if ! env -i HOME="$HOME" bash -lc 'command -v uv' >/dev/null 2>&1; then
  if [ -w /usr/local/bin ]; then
    ln -sf "$(command -v uv)" /usr/local/bin/uv
  else
    echo "uv is in $(dirname "$(command -v uv)"), not on a new shell's PATH: add it with" >&2
    echo "  export PATH=\"$(dirname "$(command -v uv)"):\$PATH\"" >&2
  fi
fi
# From Debian's packages: HAProxy (the reverse proxy in front of the serving slots), tcmalloc (the
# slots' allocator, see ct_assets/lib/serving/allocator.py), PostgreSQL (the scale-out instance test) and
# Chromium (the browser test of the Dagster UI).
missing=()
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
case "$(/sbin/ldconfig -p 2>/dev/null)" in *libtcmalloc_minimal.so.4*) ;; *) missing+=(libtcmalloc-minimal4) ;; esac
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}' (their tests will be skipped)" >&2
  fi
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
uv sync --locked --python 3.11 --quiet
