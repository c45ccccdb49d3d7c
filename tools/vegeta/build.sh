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

exec bash "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" vegeta "$VEGETA_MODULE" "$VEGETA_VERSION" \
    "$VEGETA_MODULE" "-s -w -X main.Version=$VEGETA_VERSION" -version -- "$@"
