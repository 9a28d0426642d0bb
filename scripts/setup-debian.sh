#!/usr/bin/env bash
# Install what evstore needs to build, test and benchmark on Debian 12.
# Idempotent: installs only what is missing.  Needs root (or sudo).
set -euo pipefail

PKGS=(make gcc postgresql-15 postgresql-server-dev-15 postgresql-contrib
      libssl-dev uuid-dev libipc-run-perl postgresql-15-wal2json
      python3-psycopg python3-psycopg2)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the Debian package starts a cluster on 5432; evstore's tests bring their own
export PATH="/usr/lib/postgresql/15/bin:$PATH"
pg_config --version
