#!/usr/bin/env bash
# Install, from Debian's packages, what building and running the images needs:
#   tools/images/install.sh          podman, buildah, runc, mmdebstrap (the image build)
#   tools/images/install.sh --node   also containerd, the CNI plugins, iptables, conntrack and
#                                    catatonit (the real worker node of the `realpods` tests;
#                                    catatonit is the pod sandbox's "pause" process)
# Idempotent: nothing is called when every command is already there. Needs root (or
# passwordless sudo) only when it installs. Services the packages would start (containerd)
# are kept from starting: the tests run their own instances.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# command:package
wanted=(podman:podman buildah:buildah runc:runc mmdebstrap:mmdebstrap)
if [[ "${1:-}" == --node ]]; then
    wanted+=(containerd:containerd ctr:containerd /usr/lib/cni/bridge:containernetworking-plugins
             iptables:iptables conntrack:conntrack catatonit:catatonit)
fi
missing=()
for w in "${wanted[@]}"; do
    cmd="${w%%:*}" pkg="${w#*:}"
    if [[ "$cmd" == /* ]]; then [[ -x "$cmd" ]] && continue
    else command -v "$cmd" >/dev/null 2>&1 && continue; fi
    [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install.sh: needs root: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi
policy=/usr/sbin/policy-rc.d
own_policy=""
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    own_policy=1
fi
trap '[[ -z "$own_policy" ]] || $SUDO rm -f "$policy"' EXIT
echo "install.sh: apt-get install ${missing[*]}..." >&2
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
