#!/usr/bin/env bash
# Label Studio in its own virtualenv (its pins clash with raydq's): what the connector's tests start, and what a
# team can run locally. Idempotent: a venv that already holds this version is left alone.
#   LS_VENV (default .venv-ls)   LS_VERSION (default 1.23.2)   PYTHON (default python3)
# It also leaves an empty, fully migrated database in $LS_VENV/empty-db/: Label Studio's first start spends minutes
# on migrations (measured: 220 s on a loaded 2-core machine, 33 s for a later start), so the tests start from a copy.
set -euo pipefail
cd "$(dirname "$0")/.."

LS_VENV=${LS_VENV:-.venv-ls}
LS_VERSION=${LS_VERSION:-1.23.2}
PYTHON=${PYTHON:-python3}

installed() {
    [ -x "$LS_VENV/bin/label-studio" ] &&
        [ "$("$LS_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" = "$LS_VERSION" ]
}

migrated_db() {
    local dir="$LS_VENV/empty-db"
    [ -f "$dir/label_studio.sqlite3" ] && return 0
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    # Offline: no version check, no analytics, no error reporting.
    (cd "$dir.tmp" && env -u PYTHONPATH HOME="$PWD" LABEL_STUDIO_BASE_DATA_DIR="$PWD" LATEST_VERSION_CHECK=false \
        COLLECT_ANALYTICS=false SENTRY_DSN= FRONTEND_SENTRY_DSN= "$OLDPWD/$LS_VENV/bin/python" -c \
        'from label_studio.server import _setup_env, _apply_database_migrations; _setup_env(); _apply_database_migrations()' \
        >migrate.log 2>&1) || { cat "$dir.tmp/migrate.log" >&2; exit 1; }
    mkdir -p "$dir" && mv "$dir.tmp/label_studio.sqlite3" "$dir/" && rm -rf "$dir.tmp"
}

if installed; then
    migrated_db
    echo "label studio setup: $LS_VERSION already in $LS_VENV"
    exit 0
fi
[ -x "$LS_VENV/bin/python" ] || "$PYTHON" -m venv "$LS_VENV"
"$LS_VENV/bin/python" -m pip install -q --upgrade pip
"$LS_VENV/bin/python" -m pip install -q "label-studio==$LS_VERSION"
installed || { echo "label studio setup: label-studio $LS_VERSION did not install into $LS_VENV" >&2; exit 1; }
rm -rf "$LS_VENV/empty-db"
migrated_db
echo "label studio setup: label-studio $LS_VERSION in $LS_VENV"
