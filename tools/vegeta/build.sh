#!/usr/bin/env bash
# Build the vegeta HTTP load generator (open-loop benchmarks, benchmarks/intake.py) from its Go
# module (github.com/tsenart/vegeta/v12) with the ordinary go toolchain: only the Go module
# proxy, no release download site.
#
# The binary is cached per version:
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/vegeta/<version>/vegeta
# A warm cache makes this a no-op; a new version gets a new directory.
#
# Usage:
#   tools/vegeta/build.sh          build if missing; print the binary's path on stdout
#   tools/vegeta/build.sh --path   only print where the binary goes (never builds)
#   tools/vegeta/build.sh --check  exit 0 when the binary is cached
#   tools/vegeta/build.sh --force  rebuild
#
# Environment: KNOOPPUNT_CACHE (cache root), GO (go command, default `go`, then
# /usr/local/go/bin/go), VEGETA_VERSION (override the pinned version).
set -euo pipefail

VEGETA_VERSION="${VEGETA_VERSION:-v12.13.0}"
VEGETA_MODULE="github.com/tsenart/vegeta/v12"

cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
cache_dir="$cache_root/vegeta/$VEGETA_VERSION"
binary="$cache_dir/vegeta"

cached() {
    [[ -x "$binary" ]] && [[ -f "$cache_dir/VERSION" ]] \
        && [[ "$(cat "$cache_dir/VERSION")" == "$VEGETA_MODULE@$VEGETA_VERSION" ]]
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
    GO=/usr/local/go/bin/go
fi
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: the go toolchain is required to build vegeta $VEGETA_VERSION" >&2
    exit 1
fi

mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9   # one build at a time per version
if [[ "$mode" != --force ]] && cached; then
    echo "$binary"
    exit 0
fi

tmp="$(mktemp -d "$cache_dir/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "building $VEGETA_MODULE@$VEGETA_VERSION into $cache_dir ..." >&2
start=$SECONDS
# `go install module@version` builds from the module's own go.mod/go.sum (checked against the
# Go checksum database).
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    "$GO" install -trimpath -ldflags "-s -w -X main.Version=$VEGETA_VERSION" \
    "$VEGETA_MODULE@$VEGETA_VERSION"
"$tmp/vegeta" -version >&2 || true
mv -f "$tmp/vegeta" "$binary"
echo "$VEGETA_MODULE@$VEGETA_VERSION" > "$cache_dir/VERSION"
echo "built vegeta $VEGETA_VERSION in $((SECONDS - start)) s" >&2
echo "$binary"
