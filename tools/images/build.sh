#!/usr/bin/env bash
# Build the Knooppunt images from this repository with podman (tools/images/Containerfile):
#   <registry>/node-runtime:<version>   and   <registry>/operator:<version>
# <registry> is KNOOPPUNT_REGISTRY (default ghcr.io/knooppunt, the references the CRD and the
# chart default to); <version> is pyproject.toml's project.version (the one place it is set).
#
# Where no image registry is reachable (this project's CI), the base is made from Debian's
# packages by base.sh and pip installs from a wheelhouse built on the host, so the build needs
# nothing but Debian's archive and PyPI. KNOOPPUNT_BASE_IMAGE=<image> uses that base instead
# (e.g. docker.io/library/python:3.11-slim-bookworm, the Containerfile's default).
#
# Cached by content: each image carries the label nl.knooppunt.content=<hash of the sources,
# Containerfile, base image, wheelhouse and portal CSS> and is also tagged
# localhost/knooppunt-cache/<target>:<content>; an image with the same content is re-tagged, not
# rebuilt (several checkouts on one machine share the <registry>/<target>:<version> tag). The
# last KNOOPPUNT_IMAGE_KEEP (default 3) contents per target are kept. The node-runtime image
# carries the portal's CSS (tools/portal-assets/build.sh).
#
# Usage:
#   tools/images/build.sh            build what is missing; print "<reference> <size>" per image
#   tools/images/build.sh --refs     only print the two references (never builds)
#   tools/images/build.sh --save DIR also write each image as an archive DIR/<name>.tar
#                                    (for `ctr images import`), cached next to the image
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache_root="${KNOOPPUNT_CACHE:-$HOME/.cache/knooppunt}"
registry="${KNOOPPUNT_REGISTRY:-ghcr.io/knooppunt}"
registry="${registry%/}"
version="$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' "$root/pyproject.toml")"
TARGETS=(node-runtime operator)
PODMAN=(podman --runtime runc)
# This machine's hard limits refuse podman's defaults (nofile 1048576): stay within them.
ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=4096:4096")

ref_of() { echo "$registry/$1:$version"; }

mode="${1:-build}"
case "$mode" in
    --refs) for t in "${TARGETS[@]}"; do ref_of "$t"; done; exit 0 ;;
    build|--save) ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--refs|--save DIR]" >&2; exit 2 ;;
esac
save_dir=""
if [[ "$mode" == --save ]]; then
    save_dir="${2:?--save needs a directory}"
    mkdir -p "$save_dir"
fi

start=$SECONDS
# --- base image
if [[ -n "${KNOOPPUNT_BASE_IMAGE:-}" ]]; then
    base="$KNOOPPUNT_BASE_IMAGE"
else
    base="$(bash "$here/base.sh")"
fi
base_id="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$base")"

# --- wheelhouse: every dependency as a wheel for this Python, keyed by pyproject.toml's content
# (not its path: every clone shares it)
wheels_key="$( { sha256sum <"$root/pyproject.toml"; python3 -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -c1-12)"
wheels_ctx="$cache_root/images/wheels/$wheels_key"
if [[ ! -f "$wheels_ctx/COMPLETE" ]]; then
    t0=$SECONDS
    echo "build.sh: wheelhouse for pyproject.toml ($wheels_key) from PyPI..." >&2
    mkdir -p "$wheels_ctx"
    exec 8>"$wheels_ctx.lock"
    flock 8
    if [[ ! -f "$wheels_ctx/COMPLETE" ]]; then
        rm -rf "$wheels_ctx/wheels"
        venv="$(mktemp -d)"
        trap 'rm -rf "$venv"' EXIT
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
        "$venv/bin/pip" download --quiet --disable-pip-version-check --only-binary=:all: \
            --dest "$wheels_ctx/wheels" "setuptools>=69" wheel pip
        "$venv/bin/pip" wheel --quiet --disable-pip-version-check \
            --wheel-dir "$wheels_ctx/wheels" "$root[postgresql]" >"$wheels_ctx/pip.log" 2>&1 \
            || { tail -n 30 "$wheels_ctx/pip.log" >&2; exit 1; }
        rm -f "$wheels_ctx/wheels"/knooppunt-*.whl
        rm -rf "$venv"
        trap - EXIT
        touch "$wheels_ctx/COMPLETE"
    fi
    exec 8>&-
    echo "build.sh: wheelhouse ready in $((SECONDS - t0))s ($(ls "$wheels_ctx/wheels" | wc -l) wheels)" >&2
fi

# --- the gemeente portal's CSS (npm ci against its lock file; cached by the lock's hash)
portal_ctx="$(bash "$root/tools/portal-assets/build.sh")"

# --- content key: the files the Containerfile copies, the Containerfile, base, wheelhouse,
# the portal's CSS (its directory is named after its lock file's hash)
content="$( {
    cd "$root"
    git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md \
        node_runtime operator tools/images \
        | sort -z | xargs -0 sha256sum
    echo "base=$base_id wheels=$wheels_key version=$version portal=$(basename "$portal_ctx")"
} | sha256sum | cut -c1-16)"
revision="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"

for target in "${TARGETS[@]}"; do
    ref="$(ref_of "$target")"
    have="$("${PODMAN[@]}" image inspect --format '{{index .Labels "nl.knooppunt.content"}}' "$ref" \
        2>/dev/null || true)"
    cache_ref="localhost/knooppunt-cache/$target:$content"
    if [[ "$have" == "$content" ]]; then
        "${PODMAN[@]}" tag "$ref" "$cache_ref"
        echo "build.sh: $ref cached (content $content)" >&2
    elif "${PODMAN[@]}" image exists "$cache_ref"; then
        "${PODMAN[@]}" tag "$cache_ref" "$ref"
        echo "build.sh: $ref cached (content $content, tagged again)" >&2
    else
        t0=$SECONDS
        log="$cache_root/images/build-$target.log"
        echo "build.sh: building $ref (target $target, base $base)..." >&2
        "${PODMAN[@]}" build "${ULIMITS[@]}" --quiet=false --layers \
            --file "$here/Containerfile" --target "$target" \
            --build-context "wheels=$wheels_ctx" \
            --build-context "portal=$portal_ctx" \
            --build-arg "BASE=$base" --build-arg "VERSION=$version" \
            --build-arg "REVISION=$revision" \
            --label "nl.knooppunt.content=$content" \
            --tag "$ref" --tag "$cache_ref" "$root" 2>&1 | tee "$log" \
            | while IFS= read -r line; do
                case "$line" in STEP*) echo "build.sh:   $line" >&2 ;; esac
              done \
            || { tail -n 40 "$log" >&2; echo "build.sh: building $ref failed (log: $log)" >&2; exit 1; }
        echo "build.sh: $ref built in $((SECONDS - t0))s" >&2
        # Older contents: untagged (their layers go with the next `podman image prune`).
        "${PODMAN[@]}" images --sort created --format '{{.Repository}}:{{.Tag}}' \
            --filter "reference=localhost/knooppunt-cache/$target" \
            | tail -n +"$((${KNOOPPUNT_IMAGE_KEEP:-3} + 1))" \
            | xargs -r "${PODMAN[@]}" rmi >/dev/null 2>&1 || true
    fi
    if [[ -n "$save_dir" ]]; then
        archive="$cache_root/images/archives/$target-$content.tar"
        mkdir -p "$(dirname "$archive")"
        # Other worktrees' archives (other content) may be in use by a test session that is
        # about to import them: only those unused for an hour go.
        find "$(dirname "$archive")" -maxdepth 1 -name "$target-*.tar" ! -name "${archive##*/}" \
            -mmin +60 -delete
        if [[ ! -f "$archive" ]]; then
            # The tag is shared by every worktree: make sure it named the same image throughout.
            before="$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$ref")"
            "${PODMAN[@]}" save --quiet --format docker-archive -o "$archive.tmp" "$ref"
            if [[ "$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$ref")" != "$before" ]]; then
                rm -f "$archive.tmp"
                echo "build.sh: $ref was retagged by another build meanwhile; run again" >&2
                exit 1
            fi
            mv "$archive.tmp" "$archive"
        fi
        touch "$archive"
        ln -sf "$archive" "$save_dir/$target.tar"
    fi
    size="$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$ref")"
    printf '%s %s MB\n' "$ref" "$(( (size + 500000) / 1000000 ))"
done
echo "build.sh: images ready in $((SECONDS - start))s" >&2
