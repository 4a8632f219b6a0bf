#!/usr/bin/env bash
# Label Studio in its own virtualenv (its pins clash with raydq's): what the connector's tests start, and what a
# team can run locally. Idempotent: a venv that already holds this version is left alone.
#   LS_VENV (default .venv-ls)   LS_VERSION (default 1.23.2)   PYTHON (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

LS_VENV=${LS_VENV:-.venv-ls}
LS_VERSION=${LS_VERSION:-1.23.2}
PYTHON=${PYTHON:-python3}

installed() {
    [ -x "$LS_VENV/bin/label-studio" ] &&
        [ "$("$LS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" = "$LS_VERSION" ]
}

if installed; then
    echo "label studio setup: $LS_VERSION already in $LS_VENV"
    exit 0
fi
[ -x "$LS_VENV/bin/python" ] || "$PYTHON" -m venv "$LS_VENV"
"$LS_VENV/bin/python" -m pip install -q --upgrade pip
"$LS_VENV/bin/python" -m pip install -q "label-studio==$LS_VERSION"
installed || { echo "label studio setup: label-studio $LS_VERSION did not install into $LS_VENV" >&2; exit 1; }
echo "label studio setup: label-studio $LS_VERSION in $LS_VENV"
