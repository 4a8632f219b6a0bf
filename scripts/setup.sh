#!/usr/bin/env bash
# One-shot set-up for a fresh Debian machine: system packages (the Fashion-MNIST dataset that the embedded
# default embeds, a PostgreSQL server that the label-store tests run against, and the headless Chromium + driver
# that the labeling page's browser test drives), a virtualenv with raydq, and Label Studio in its own virtualenv.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist postgresql chromium chromium-driver)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "raydq setup: the Debian packages ${missing[*]} are missing and this user cannot install them." >&2
        echo "Run as root, or ask an administrator for: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch 2.14.1 + torchvision 0.29.1 are pinned in pyproject.toml: the only pair that imports together here.
"$VENV/bin/python" -m pip install -q -e '.[dev]'
# Label Studio (the connector's tests start it) in .venv-ls: its pins clash with ours.
bash scripts/setup_label_studio.sh
echo "raydq setup: done ($("$VENV/bin/python" -c 'import ray, torch; print(f"ray {ray.__version__}, torch {torch.__version__}")'))"
