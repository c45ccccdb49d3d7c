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

# The ldflags are the ones helm's Makefile sets for a release.
ldflags="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION"
ldflags+=" -X $HELM_MODULE/internal/version.metadata="
ldflags+=" -X $HELM_MODULE/internal/version.gitTreeState=clean"
exec bash "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" helm "$HELM_MODULE" "$HELM_VERSION" \
    "$HELM_MODULE/cmd/helm" "$ldflags" version --short -- "$@"
