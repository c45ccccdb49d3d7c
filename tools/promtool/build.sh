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
# `promtool test rules` needs none of Prometheus' service discoveries (AWS, Azure, GCE,
# Kubernetes, ...): the build tag remove_all_sd (Prometheus >= 3.10) leaves their SDKs out,
# which makes the cold build several times shorter.
export GOBUILD_TAGS="remove_all_sd"

exec bash "$(dirname "${BASH_SOURCE[0]}")/../gobuild.sh" promtool "$PROM_MODULE" "$PROMTOOL_VERSION" \
    "$PROM_MODULE/cmd/promtool" "-s -w" --version -- "$@"
