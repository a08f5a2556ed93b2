#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the browser tests of the unit atlas
# (tests/browser.py drives it over the DevTools protocol; no chromedriver needed).
# Idempotent: returns at once when a chromium binary is already on PATH.
set -euo pipefail

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_chromium; then
    echo "chromium: already installed ($(command -v chromium || command -v chromium-browser))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_chromium.sh: need root (or sudo) to apt-get install chromium" >&2; exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# fonts-dejavu-core: readable text in screenshots on a bare machine.
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

if ! have_chromium; then
    echo "install_chromium.sh: apt-get finished but no chromium binary is on PATH" >&2
    exit 1
fi
echo "chromium: installed ($(command -v chromium || command -v chromium-browser))"
