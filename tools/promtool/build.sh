#!/usr/bin/env bash
# Build promtool from Prometheus' Go module (github.com/prometheus/prometheus) with the
# ordinary go toolchain: no release download site, only the Go module proxy. The chart's
# PrometheusRule is unit-tested with `promtool test rules` (tests/iac/test_alerts.py).
#
# The binary is cached per version:
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/promtool/<version>/promtool
# A warm cache makes this a no-op; a new version gets a new directory.
#
# Usage:
#   tools/promtool/build.sh          build if missing; print the binary's path on stdout
#   tools/promtool/build.sh --path   only print where the binary goes (never builds)
#   tools/promtool/build.sh --check  exit 0 when the binary is cached
#   tools/promtool/build.sh --force  rebuild
#
# Environment: KNOOPPUNT_CACHE (cache root), GO (go command, default `go`),
# PROMTOOL_VERSION (override the pinned module version).
set -euo pipefail

# --- pinned version: the Go module tag v0.316.0 is Prometheus 3.16.0 (named in docs/testing.md) ---
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
PROM_MODULE="github.com/prometheus/prometheus"

cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
cache_dir="$cache_root/promtool/$PROMTOOL_VERSION"
binary="$cache_dir/promtool"

cached() {
    [[ -x "$binary" ]] && [[ -f "$cache_dir/VERSION" ]] \
        && [[ "$(cat "$cache_dir/VERSION")" == "$PROM_MODULE@$PROMTOOL_VERSION" ]]
}

mode="${1:-build}"
case "$mode" in
    --path) echo "$binary"; exit 0 ;;
    --check) cached; exit $? ;;
    --force|build) ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--path|--check|--force]" >&2; exit 2 ;;
esac

if [[ "$mode" != --force ]] && cached; then
    echo "$binary"
    exit 0
fi

GO="${GO:-go}"
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: the go toolchain is required to build promtool $PROMTOOL_VERSION" >&2
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

echo "building $PROM_MODULE/cmd/promtool@$PROMTOOL_VERSION into $cache_dir ..." >&2
start=$SECONDS
# `go install module@version` builds from the module's own go.mod/go.sum (checked against
# the Go checksum database).
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    "$GO" install -trimpath -ldflags "-s -w" "$PROM_MODULE/cmd/promtool@$PROMTOOL_VERSION"
"$tmp/promtool" --version >&2
mv -f "$tmp/promtool" "$binary"
echo "$PROM_MODULE@$PROMTOOL_VERSION" > "$cache_dir/VERSION"
echo "built promtool $PROMTOOL_VERSION in $((SECONDS - start)) s" >&2
echo "$binary"
