#!/usr/bin/env bash
# Vendor the gemeente portal's NL Design System CSS (and axe-core for its accessibility test)
# from the npm registry, exactly as package-lock.json pins them (`npm ci`: versions and
# integrity hashes). Nothing comes from a CDN at run time; the façade serves these files itself.
#
# Output, cached per lock-file content:
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/portal-assets/<sha256 of the lock>/
#     css/components.css   @utrecht/component-library-css (the NL Design System components)
#     css/theme.css        @nl-design-system-unstable/voorbeeld-design-tokens (theme tokens)
#     axe/axe.min.js       axe-core (tests only)
#     LICENSES             the licences of what was copied
#
# Usage:
#   tools/portal-assets/build.sh          build if missing; print the directory
#   tools/portal-assets/build.sh --path   only print where it goes
#   tools/portal-assets/build.sh --check  exit 0 when built
# Serve it with KNOOPPUNT_FACADE_PORTAL_ASSETS=<directory> (docs/portal.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash="$(sha256sum "$here/package-lock.json" | cut -c1-16)"
cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
out="$cache_root/portal-assets/$hash"

built() { [[ -f "$out/css/components.css" && -f "$out/css/theme.css" && -f "$out/axe/axe.min.js" ]]; }

case "${1:-build}" in
    --path) echo "$out"; exit 0 ;;
    --check) built; exit $? ;;
    build) ;;
    *) echo "usage: $0 [--path|--check]" >&2; exit 2 ;;
esac
if built; then echo "$out"; exit 0; fi
if ! command -v npm >/dev/null; then
  # npm from Debian's packages (as root, or with password-less sudo)
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
      echo "build.sh: npm is required: apt-get install -y --no-install-recommends npm" >&2
      exit 1
    fi
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >&2
fi

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9
if built; then echo "$out"; exit 0; fi
work="$(mktemp -d "$out/npm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
mods="$work/node_modules"
mkdir -p "$out/css" "$out/axe"
cp "$mods/@utrecht/component-library-css/dist/index.css" "$out/css/components.css"
cp "$mods/@nl-design-system-unstable/voorbeeld-design-tokens/dist/theme.css" "$out/css/theme.css"
cp "$mods/axe-core/axe.min.js" "$out/axe/axe.min.js"
{
  for p in @utrecht/component-library-css @nl-design-system-unstable/voorbeeld-design-tokens axe-core; do
    echo "== $p $(node -p "require('$mods/$p/package.json').version") ($(node -p "require('$mods/$p/package.json').license"))"
  done
} > "$out/LICENSES"
echo "$out"
