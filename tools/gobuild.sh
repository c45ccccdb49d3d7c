#!/usr/bin/env bash
# Build one Go command from its module with the ordinary go toolchain (`go install
# module@version`: the module's own go.mod/go.sum, checked against the Go checksum database; no
# release download site) and cache the binary per version:
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/<name>/<version>/<name>
# A warm cache makes this a no-op (the VERSION stamp next to the binary says module@version).
# Cold builds print a progress line every 30 s (tools/progress.sh).
#
# Used by tools/{helm,promtool,vegeta}/build.sh, which pin what to build:
#   tools/gobuild.sh NAME MODULE VERSION PACKAGE LDFLAGS VERSION_ARG... -- [--path|--check|--force]
# NAME the binary, MODULE@VERSION what `go install` fetches, PACKAGE the command's package
# (MODULE/cmd/NAME or MODULE itself), LDFLAGS for `go build`, VERSION_ARG... how to make the
# new binary print its version (a smoke test before it is cached).
#
# Environment: KNOOPPUNT_CACHE (cache root), GO (go command, default `go`, then
# /usr/local/go/bin/go), GOBUILD_TAGS (build tags, part of the cache stamp; set by the
# NAME/build.sh that needs them, e.g. promtool leaves out the service discoveries).
set -euo pipefail

name="$1" module="$2" version="$3" package="$4" ldflags="$5"
shift 5
version_args=()
while (($#)) && [[ "$1" != -- ]]; do version_args+=("$1"); shift; done
[[ "${1:-}" == -- ]] && shift

cache_dir="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/$name/$version"
binary="$cache_dir/$name"
tags="${GOBUILD_TAGS:-}"
stamp="$module@$version${tags:+ tags=$tags}"

cached() {
    [[ -x "$binary" ]] && [[ -f "$cache_dir/VERSION" ]] && [[ "$(cat "$cache_dir/VERSION")" == "$stamp" ]]
}

mode="${1:-build}"
case "$mode" in
    --path) echo "$binary"; exit 0 ;;
    --check) cached; exit $? ;;
    --force|build) ;;
    *) echo "usage: tools/$name/build.sh [--path|--check|--force]" >&2; exit 2 ;;
esac
if [[ "$mode" != --force ]] && cached; then
    echo "$binary"
    exit 0
fi

GO="${GO:-go}"
if ! command -v "$GO" >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "tools/$name/build.sh: the go toolchain is required (go 1.26+)" >&2
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
. "$(dirname "${BASH_SOURCE[0]}")/progress.sh"
echo "tools/$name/build.sh: building $package@$version into $cache_dir ..." >&2
GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
    progress_run "tools/$name/build.sh: $name $version" \
    "$GO" install -v -trimpath ${tags:+-tags "$tags"} -ldflags "$ldflags" "$package@$version"
"$tmp/$name" "${version_args[@]}" >&2
mv -f "$tmp/$name" "$binary"
echo "$stamp" > "$cache_dir/VERSION"
echo "$binary"
