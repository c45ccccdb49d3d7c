#!/usr/bin/env bash
# Build the real Kubernetes control plane used by the `controlplane` tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok
# (fake nodes that run pods without a container runtime).
#
# Everything comes from the Go module proxy and is compiled with the ordinary
# go toolchain from the pinned wrapper module in ./gomod (go.mod + go.sum are
# committed; no vendor dir).  Binaries are cached per version under
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/controlplane/<k8s-version>/bin/
# and a warm cache makes this script a no-op that takes well under a second.
#
# Usage:
#   tests/controlplane/build.sh            build if missing, print the bin dir
#   tests/controlplane/build.sh --bin-dir  only print the bin dir (never builds)
#   tests/controlplane/build.sh --check    exit 0 if all binaries are cached
#   tests/controlplane/build.sh --force    rebuild even if cached
#
# Environment: KNOOPPUNT_CACHE (cache root), GO (go command, default `go`),
# KNOOPPUNT_BUILD_PARALLEL (go build -p, default: number of CPUs).
set -euo pipefail

# --- pinned versions: keep in sync with gomod/go.mod (see README.md) ---
K8S_VERSION=v1.37.2   # k8s.io/kubernetes; staging modules k8s.io/* at v0.37.2
ETCD_VERSION=v3.7.0   # go.etcd.io/etcd/server/v3 (the version kubernetes pins)
KWOK_VERSION=v0.8.0   # sigs.k8s.io/kwok
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
cache_dir="$cache_root/controlplane/$K8S_VERSION"
bin_dir="$cache_dir/bin"
# The stamp also covers go.sum, so any dependency change in gomod/ rebuilds.
gosum_hash="$(sha256sum "$here/gomod/go.sum" | cut -c1-12)"
stamp="k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION go.sum=$gosum_hash"

cached() {
    [[ -f "$bin_dir/VERSIONS" ]] && [[ "$(cat "$bin_dir/VERSIONS")" == "$stamp" ]] || return 1
    [[ -f "$bin_dir/kwok-stages.yaml" ]] || return 1
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x "$bin_dir/$b" ]] || return 1
    done
}

mode="${1:-build}"
case "$mode" in
    --bin-dir) echo "$bin_dir"; exit 0 ;;
    --check) cached; exit $? ;;
    --force|build) ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--bin-dir|--check|--force]" >&2; exit 2 ;;
esac

if [[ "$mode" != --force ]] && cached; then
    echo "control plane $stamp: cached in $bin_dir" >&2
    echo "$bin_dir"
    exit 0
fi

GO="${GO:-go}"
if ! command -v "$GO" >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go   # the image's Go, when /usr/local/go/bin is not on PATH
fi
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: the go toolchain is required (go 1.26+)" >&2
    exit 1
fi

mkdir -p "$cache_dir"
# One build at a time per cache dir (parallel CI jobs / developers).
exec 9>"$cache_dir/.lock"
flock 9
if [[ "$mode" != --force ]] && cached; then   # someone else just built it
    echo "$bin_dir"
    exit 0
fi

tmp="$(mktemp -d "$cache_dir/bin.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

export CGO_ENABLED=0
# -mod=readonly: go.sum is committed, the build must not change it.
export GOFLAGS="-mod=readonly -buildvcs=false"
parallel="${KNOOPPUNT_BUILD_PARALLEL:-$(nproc 2>/dev/null || echo 2)}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

start=$SECONDS
. "$here/../../tools/progress.sh"
step() {   # step NAME MODULE_DIR PACKAGE LDFLAGS; a progress line every 30 s (cold: minutes)
    local name="$1" dir="$2" pkg="$3" ldflags="$4"
    echo "build.sh: building $name ($pkg)..." >&2
    (cd "$dir" && progress_run "build.sh: $name" \
        "$GO" build -v -p "$parallel" -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$pkg")
}

step etcd "$here/gomod" go.etcd.io/etcd/server/v3 "-s -w"
step kube-apiserver "$here/gomod" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
step kube-controller-manager "$here/gomod" k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
step kube-scheduler "$here/gomod" k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
# kwok is compiled against the same k8s.io/* v0.37.x libraries (replace
# directives) as the control plane; the smoke tests check that it works.
step kwok "$here/gomod" sigs.k8s.io/kwok/cmd/kwok "-s -w"

# kwok's own default stages (what `kwokctl` uses): nodes become Ready and keep
# a lease, pods become Running/Succeeded and are deleted; taken from the pinned
# kwok module so they always match the binary.
kwok_dir="$(cd "$here/gomod" && "$GO" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$kwok_dir/kustomize/stage/$f"
done > "$tmp/kwok-stages.yaml"

echo "$stamp" > "$tmp/VERSIONS"
chmod 755 "$tmp"
rm -rf "$bin_dir.old"
[[ -d "$bin_dir" ]] && mv "$bin_dir" "$bin_dir.old"
mv "$tmp" "$bin_dir"
rm -rf "$bin_dir.old"
trap - EXIT
echo "build.sh: control plane $stamp built in $((SECONDS - start))s into $bin_dir" >&2
echo "$bin_dir"
