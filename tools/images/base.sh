#!/usr/bin/env bash
# The base image made here from Debian's packages, for machines that cannot pull the public
# Python image: Debian bookworm (mmdebstrap, variant "essential") with python3, its venv module
# and the CA certificates; no apt, no documentation, no locales.
#
# Cached by content: the key hashes this script (suite, package list, options), so a change to
# any of them makes a new image; the root filesystem tarball lives under
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/images/base/<key>.tar
# and is imported into podman's store as localhost/knooppunt-base:<key>.
#
# Usage: tools/images/base.sh     build/import if missing; print the image reference on stdout
# Environment: KNOOPPUNT_DEBIAN_MIRROR (default http://deb.debian.org/debian)
set -euo pipefail

SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,tzdata
MIRROR="${KNOOPPUNT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_dir="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/images/base"
key="$(sha256sum "$here/base.sh" | cut -c1-12)"
ref="localhost/knooppunt-base:$key"
tarball="$cache_dir/$key.tar"

if podman image exists "$ref"; then
    echo "base.sh: $ref cached" >&2
    echo "$ref"
    exit 0
fi
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9
if [[ ! -f "$tarball" ]]; then
    t0=$SECONDS
    echo "base.sh: mmdebstrap $SUITE + $PACKAGES (a few minutes, once)..." >&2
    tmp="$(mktemp --suffix=.tar "$cache_dir/$key.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    mmdebstrap --variant=essential --include="$PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
        "$SUITE" "$tmp" "$MIRROR" 2>&1 \
        | while IFS= read -r line; do
            case "$line" in I:*|E:*|W:*) echo "base.sh: $line" >&2 ;; esac
          done
    [[ -s "$tmp" ]] || { echo "base.sh: mmdebstrap produced nothing" >&2; exit 1; }
    mv "$tmp" "$tarball"
    trap - EXIT
    echo "base.sh: root filesystem made in $((SECONDS - t0))s" >&2
fi
podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "Debian $SUITE with $PACKAGES (tools/images/base.sh)" \
    "$tarball" "$ref" >/dev/null
echo "base.sh: imported $ref" >&2
echo "$ref"
