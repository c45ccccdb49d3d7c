#!/usr/bin/env bash
# Build the Pulumi engine the stacks need from Go modules with the ordinary go toolchain (no
# release download site): the `pulumi` CLI, the Python language host and the kubernetes
# resource provider. Each comes from a pinned wrapper module beside this script (go.mod +
# go.sum committed, no vendor dir):
#
#   cli/         github.com/pulumi/pulumi/pkg/v3/cmd/pulumi                     (PULUMI_VERSION)
#   python/      github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python  v3.68.0,
#                the last sdk/v3 release that still holds it (later releases moved it to a
#                module of its own that is never tagged, so the module proxy cannot serve it);
#                the engine speaks to it through the stable LanguageRuntime protocol
#   kubernetes/  github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes
#                at the only version the proxy serves, a pseudo-version whose commit is the
#                4.25.0-alpha.1768448096 pre-release (pyproject pins that Python SDK)
#
# plus two shell shims from the sdk/v3 module (pulumi-language-python-exec, the program
# runner, and pulumi-resource-pulumi-python, the provider of the stacks' dynamic resources).
# pulumi-tls is not built: its provider module is not served; the development PKI uses a
# dynamic provider instead (stacks/components/dev_certificates.py).
#
# The binaries are cached per version:
#   ${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}/pulumi/<PULUMI_VERSION>/bin/
# A warm cache makes this a no-op; a new version or go.sum gets a new build.
#
# Usage:
#   tools/pulumi/build.sh            build if missing; print the bin dir on stdout
#   tools/pulumi/build.sh --bin-dir  only print the bin dir (never builds)
#   tools/pulumi/build.sh --check    exit 0 when everything is cached
#   tools/pulumi/build.sh --force    rebuild
#
# Environment: KNOOPPUNT_CACHE (cache root), GO (go command, default `go`).
set -euo pipefail

# --- pinned versions (also in docs/deploy.md, pyproject.toml's iac extra, tests/iac/engine.py) ---
PULUMI_VERSION=v3.276.0                 # github.com/pulumi/pulumi/pkg/v3 (the CLI)
LANGUAGE_HOST_VERSION=v3.68.0           # github.com/pulumi/pulumi/sdk/v3 (the Python host)
KUBERNETES_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
KUBERNETES_VERSION=4.25.0-alpha.1768448096   # what that commit was released as
BINARIES=(pulumi pulumi-language-python pulumi-language-python-exec
          pulumi-resource-pulumi-python pulumi-resource-kubernetes)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
cache_dir="$cache_root/pulumi/$PULUMI_VERSION"
bin_dir="$cache_dir/bin"
sums="$(cat "$here"/cli/go.sum "$here"/python/go.sum "$here"/kubernetes/go.sum | sha256sum | cut -c1-12)"
stamp="pulumi=$PULUMI_VERSION language-python=$LANGUAGE_HOST_VERSION"
stamp+=" kubernetes=$KUBERNETES_VERSION go.sum=$sums"

cached() {
    [[ -f "$bin_dir/VERSIONS" ]] && [[ "$(cat "$bin_dir/VERSIONS")" == "$stamp" ]] || return 1
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
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--bin-dir|--check|--force]" >&2; exit 2 ;;
esac

if [[ "$mode" != --force ]] && cached; then
    echo "pulumi $stamp: cached in $bin_dir" >&2
    echo "$bin_dir"
    exit 0
fi

GO="${GO:-go}"
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "build.sh: the go toolchain is required (pulumi $PULUMI_VERSION needs go 1.26+)" >&2
    exit 1
fi

mkdir -p "$cache_dir"
exec 9>"$cache_dir/.lock"
flock 9   # one build at a time per version (parallel CI jobs, developers)
if [[ "$mode" != --force ]] && cached; then
    echo "$bin_dir"
    exit 0
fi

tmp="$(mktemp -d "$cache_dir/build.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
total=$SECONDS
. "$here/../progress.sh"   # a progress line every 30 s during each (cold: long) go build

step() {  # step <n> <what>: progress on stderr
    echo "[pulumi build $1/4] $2 ..." >&2
}

step 1 "pulumi CLI $PULUMI_VERSION (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)"
start=$SECONDS
(cd "$here/cli" && progress_run "    pulumi CLI" "$GO" build -v -trimpath -o "$tmp/bin/pulumi" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
    github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
echo "    $("$tmp/bin/pulumi" version) in $((SECONDS - start)) s" >&2

step 2 "Python language host $LANGUAGE_HOST_VERSION and its shims"
start=$SECONDS
(cd "$here/python" && progress_run "    language host" "$GO" build -v -trimpath -o "$tmp/bin/pulumi-language-python" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGUAGE_HOST_VERSION" \
    github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python)
# The shims ship in the sdk/v3 module of the CLI's version (they run the installed Python SDK).
sdk_dir="$(cd "$here/cli" && "$GO" mod download -json "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$tmp/bin/"
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$tmp/bin/"
echo "    in $((SECONDS - start)) s" >&2

step 3 "kubernetes provider $KUBERNETES_VERSION (provider/v4@$KUBERNETES_MODULE_VERSION)"
start=$SECONDS
work="$tmp/kubernetes"
mkdir -p "$work"
cp "$here"/kubernetes/{go.mod,go.sum,tools.go} "$work/"
mod_dir="$(cd "$work" && "$GO" mod download -json \
    "github.com/pulumi/pulumi-kubernetes/provider/v4@$KUBERNETES_MODULE_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
cp -r "$mod_dir" "$work/src"
chmod -R u+w "$work/src"
# What the provider's `go generate` (cmd/pulumi-resource-kubernetes/generate.go) writes: the
# schema with its version, and the terraform mapping, minified into the files main.go embeds.
python3 - "$work/src/cmd/pulumi-resource-kubernetes" "$KUBERNETES_VERSION" <<'EOF'
import json, sys
cmd, version = sys.argv[1], sys.argv[2]
schema = json.load(open(f"{cmd}/schema.json"))
schema["version"] = version
json.dump(schema, open(f"{cmd}/schema-embed.json", "w"), separators=(",", ":"))
mapping = json.load(open(f"{cmd}/terraform-mapping.json"))
json.dump(mapping, open(f"{cmd}/terraform-mapping-embed.json", "w"), separators=(",", ":"))
EOF
(cd "$work" && progress_run "    kubernetes provider" "$GO" build -v -trimpath -o "$tmp/bin/pulumi-resource-kubernetes" \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$KUBERNETES_VERSION" \
    github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes)
echo "    in $((SECONDS - start)) s" >&2

step 4 "install into $bin_dir"
mkdir -p "$bin_dir"
for b in "${BINARIES[@]}"; do
    mv -f "$tmp/bin/$b" "$bin_dir/$b"
done
echo "$stamp" > "$bin_dir/VERSIONS"
echo "built pulumi $stamp in $((SECONDS - total)) s" >&2
echo "$bin_dir"
