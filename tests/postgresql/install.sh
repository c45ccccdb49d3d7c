#!/usr/bin/env bash
# Install the PostgreSQL server binaries from Debian's packages, for the tests.
#
#   bash tests/postgresql/install.sh          install if needed; print the bin dir
#   bash tests/postgresql/install.sh --bin-dir   print the bin dir, install nothing (exit 1 if absent)
#
# The tests start their own private server (tests/postgresql/server.py) in a temporary
# directory; the distribution's default cluster is never needed, so it is not created
# during our install, and stopped if the package scripts started one anyway.
#
# Idempotent and fast when the binaries are already present: no apt calls at all.
# Needs root (or passwordless sudo) only when it actually installs.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

find_bin_dir() {
  # Highest installed major version with both initdb and postgres.
  local dir best=""
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
      best=$dir
    fi
  fi
  if [ -z "$best" ]; then
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V); do
      if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
        best=$dir
      fi
    done
  fi
  [ -n "$best" ] || return 1
  echo "$best"
}

if [ "${1:-}" = "--bin-dir" ]; then
  find_bin_dir
  exit $?
fi

if bin_dir=$(find_bin_dir); then
  echo "$bin_dir"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install.sh: no PostgreSQL server binaries and no apt-get; install PostgreSQL" \
       "(initdb, postgres) and make 'pg_config --bindir' point at them" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install.sh: PostgreSQL is not installed and this needs root:" \
         "sudo apt-get install -y --no-install-recommends postgresql" >&2
    exit 1
  fi
fi

# Do not let the package create (and start) the default 'main' cluster.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" |
  $SUDO tee /etc/postgresql-common/createcluster.d/knooppunt-tests.conf >/dev/null

# Belt and braces: forbid service starts during the install (unless a policy already exists,
# as in most container images, which say 'exit 101' already).
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT

install() {
  $SUDO apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    postgresql >&2
}

# apt-get update only when the package lists are missing or the install fails on them.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || ! install; then
  $SUDO apt-get update -q >&2
  install
fi

# If the package scripts created and started a cluster anyway, stop it (the tests run their own).
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
    if [ "$status" = "online" ]; then
      $SUDO pg_ctlcluster "$ver" "$name" stop >&2 || true
    fi
  done
fi

bin_dir=$(find_bin_dir) || {
  echo "install.sh: installed 'postgresql' but found no initdb/postgres binaries" >&2
  exit 1
}
echo "$bin_dir"
