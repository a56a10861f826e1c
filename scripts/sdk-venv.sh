#!/usr/bin/env bash
# Creates or reuses a virtualenv with the pinned official cloud SDKs
# (tests/sdk/requirements.txt) and prints its python as the last line.
#
#   IMAGELABEL_VENV  where the venv lives (default: a cache dir keyed by the
#                    hash of requirements.txt, so a changed pin gets a new venv)
#   PYTHON           interpreter that creates the venv (default: python3)
#
# Progress goes to stderr; stdout is only the interpreter path.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$root/tests/sdk/requirements.txt"
hash="$(sha256sum "$req" | cut -c1-16)"
venv="${IMAGELABEL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/imagelabel/venv-$hash}"
python="${PYTHON:-python3}"
marker="$venv/.imagelabel-requirements"

mkdir -p "$(dirname "$venv")"
# Two test runs may start at once; one installs, the other waits.
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

if [ "$(cat "$marker" 2>/dev/null)" != "$hash" ]; then
    if [ ! -x "$venv/bin/python" ]; then
        echo "sdk-venv: creating $venv" >&2
        "$python" -m venv "$venv" >&2
    fi
    echo "sdk-venv: installing $req" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" >&2
    # Written last, so an interrupted install is redone next time.
    echo "$hash" >"$marker"
fi

echo "$venv/bin/python"
