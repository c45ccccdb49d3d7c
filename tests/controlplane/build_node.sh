#!/usr/bin/env bash
# Build the binaries of a real worker node for the `realpods` tests: the kubelet and
# kube-proxy, from the same k8s.io/kubernetes version as the control plane (build.sh), in
# their own wrapper module (./gomod-node) so the control plane's cache key does not move.
# containerd, runc and the CNI plugins come from Debian's packages (tests/controlplane/
# install_node.sh). Cached per version and go.sum under
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/controlplane/<k8s-version>/node/
# A warm cache makes this a no-op.
#
# Usage: build_node.sh [--bin-dir|--check|--force]   (as build.sh)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S_VERSION="$(sed -n 's/^K8S_VERSION=\(v[0-9.]*\).*/\1/p' "$here/build.sh")"
BINARIES=(kubelet kube-proxy)
cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
cache_dir="$cache_root/controlplane/$K8S_VERSION"
bin_dir="$cache_dir/node"
gosum_hash="$(sha256sum "$here/gomod-node/go.sum" | cut -c1-12)"
stamp="k8s=$K8S_VERSION go.sum=$gosum_hash"

cached() {
    [[ -f "$bin_dir/VERSIONS" ]] && [[ "$(cat "$bin_dir/VERSIONS")" == "$stamp" ]] || return 1
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
}

mode="${1:-build}"
case "$mode" in
    --bin-dir) echo "$bin_dir"; exit 0 ;;
    --check) cached; exit $? ;;
    --force|build) ;;
    *) echo "usage: $0 [--bin-dir|--check|--force]" >&2; exit 2 ;;
esac
if [[ "$mode" != --force ]] && cached; then
    echo "$bin_dir"
    exit 0
fi

GO="${GO:-go}"
if ! command -v "$GO" >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    GO=/usr/local/go/bin/go
fi
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.node.lock"
flock 9
if [[ "$mode" != --force ]] && cached; then
    echo "$bin_dir"
    exit 0
fi
tmp="$(mktemp -d "$cache_dir/node.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

export CGO_ENABLED=0
export GOFLAGS="-mod=readonly -buildvcs=false"
parallel="${KNOOPPUNT_BUILD_PARALLEL:-$(nproc 2>/dev/null || echo 2)}"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
done
start=$SECONDS
. "$here/../../tools/progress.sh"
for name in "${BINARIES[@]}"; do
    echo "build_node.sh: building $name (k8s.io/kubernetes/cmd/$name $K8S_VERSION)..." >&2
    # A progress line every 30 s while the (cold: several minutes) build runs.
    (cd "$here/gomod-node" && progress_run "build_node.sh: $name" \
        "$GO" build -v -p "$parallel" -trimpath -ldflags "$ldflags" \
        -o "$tmp/$name" "k8s.io/kubernetes/cmd/$name")
done
echo "$stamp" > "$tmp/VERSIONS"
chmod 755 "$tmp"
rm -rf "$bin_dir.old"
[[ -d "$bin_dir" ]] && mv "$bin_dir" "$bin_dir.old"
mv "$tmp" "$bin_dir"
rm -rf "$bin_dir.old"
trap - EXIT
echo "build_node.sh: node binaries $stamp built in $((SECONDS - start))s into $bin_dir" >&2
echo "$bin_dir"
