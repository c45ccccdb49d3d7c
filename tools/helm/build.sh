#!/usr/bin/env bash
# Build the helm CLI from its Go module (helm.sh/helm/v4) with the ordinary go
# toolchain: no release download site, only the Go module proxy.
#
# The binary is cached per version:
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/helm/<version>/helm
# A warm cache makes this a no-op; a new version gets a new directory.
#
# Usage:
#   tools/helm/build.sh          build if missing; print the binary's path on stdout
#   tools/helm/build.sh --path   only print where the binary goes (never builds)
#   tools/helm/build.sh --check  exit 0 when the binary is cached
#   tools/helm/build.sh --force  rebuild
#
# Environment: KNOOPPUNT_CACHE (cache root), GO (go command, default `go`),
# HELM_VERSION (override the pinned version, e.g. to try a newer release).
set -euo pipefail

# --- pinned version (also named in docs/deploy.md and tests/iac/helm.py) ---
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
HELM_MODULE="helm.sh/helm/v4"

cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
cache_dir="$cache_root/helm/$HELM_VERSION"
binary="$cache_dir/helm"

cached() {
    [[ -x "$binary" ]] && [[ -f "$cache_dir/VERSION" ]] \
        && [[ "$(cat "$cache_dir/VERSION")" == "$HELM_MODULE@$HELM_VERSION" ]]
}

mode="${1:-build}"
case "$mode" in
    --path) echo "$binary"; exit 0 ;;
    --check) cached; exit $? ;;
    --force|build) ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--path|--check|--force]" >&2; exit 2 ;;
esac

if [[ "$mode" != --force ]] && cached; then
    echo "$binary"
    exit 0
fi

GO="${GO:-go}"
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: the go toolchain is required (helm $HELM_VERSION needs go 1.26+)" >&2
    exit 1
fi

mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9   # one build at a time per version (parallel CI jobs, developers)
if [[ "$mode" != --force ]] && cached; then
    echo "$binary"
    exit 0
fi

tmp="$(mktemp -d "$cache_dir/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "building $HELM_MODULE/cmd/helm@$HELM_VERSION into $cache_dir ..." >&2
start=$SECONDS
# `go install module@version` builds from the module's own go.mod/go.sum (checked against
# the Go checksum database); the ldflags are the ones helm's Makefile sets for a release.
ldflags="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION"
ldflags+=" -X $HELM_MODULE/internal/version.metadata="
ldflags+=" -X $HELM_MODULE/internal/version.gitTreeState=clean"
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    "$GO" install -trimpath -ldflags "$ldflags" "$HELM_MODULE/cmd/helm@$HELM_VERSION"
"$tmp/helm" version --short >&2
mv -f "$tmp/helm" "$binary"
echo "$HELM_MODULE@$HELM_VERSION" > "$cache_dir/VERSION"
echo "built helm $HELM_VERSION in $((SECONDS - start)) s" >&2
echo "$binary"
