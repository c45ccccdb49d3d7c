#!/usr/bin/env bash
# Chromium from Debian's packages for the portal's browser tests (Playwright drives it through
# its executable path; Playwright's own browser downloads are never used). Prints its path.
#
#   bash tests/portal/install-chromium.sh          install if missing
#   bash tests/portal/install-chromium.sh --path   print the path, install nothing (exit 1 if absent)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
find_chromium() { command -v chromium || command -v chromium-browser; }
if [ "${1:-}" = "--path" ]; then find_chromium; exit $?; fi
if path=$(find_chromium); then echo "$path"; exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "install-chromium.sh: needs root: apt-get install -y --no-install-recommends chromium" >&2
    exit 1
  fi
fi
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
find_chromium
