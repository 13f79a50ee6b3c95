#!/usr/bin/env bash
# Starts the PostgreSQL and Redis servers the tests and examples use, on loopback, when they
# are not already answering. Safe to run again: whatever already answers is left alone.
#
#   scripts/services.sh
#
# Afterwards:
#   PostgreSQL  postgres://postgres@127.0.0.1:5432/test   (trust authentication, database "test")
#   Redis       redis://127.0.0.1:6379                      (no persistence)
#   Cluster     redis://127.0.0.1:7000 … :7005              (3 masters with a replica each)
#   Sentinel    redis://127.0.0.1:7020, :7021, :7022       (master "sayiir" on :7010, replica
#               on :7011; both started by scripts/redis-topologies.sh)
#
# Where a server is missing it is installed from the Debian/Ubuntu packages (needs root and
# apt-get). With Docker, `docker compose up -d --wait` in the repository root does the same.
set -euo pipefail

say() { printf 'services: %s\n' "$*"; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

missing=()
if ! answers 5432 && ! command -v pg_ctlcluster >/dev/null 2>&1; then missing+=(postgresql); fi
if ! answers 6379 && ! command -v redis-server >/dev/null 2>&1; then missing+=(redis-server); fi
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || {
    echo "services: ${missing[*]} not installed and no apt-get here; install them, or run" \
         "'docker compose up -d --wait', or point SAYIIR_POSTGRES_URL / SAYIIR_REDIS_URL at" \
         "servers you have" >&2
    exit 1
  }
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! answers 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q 'sayiir-local-trust' "$hba"; then
    # Local development servers: trust connections from this machine only.
    sed -i '1i local all all trust # sayiir-local-trust\nhost all all 127.0.0.1/32 trust # sayiir-local-trust\nhost all all ::1/128 trust # sayiir-local-trust' "$hba"
  fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 60); do answers 5432 && break; sleep 0.5; done
fi
answers 5432 || { echo "services: PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
psql_() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc "$1"; }
if ! psql_ "SELECT 1" >/dev/null 2>&1; then
  # A fresh Debian cluster knows only the role "postgres" through its socket.
  su postgres -c "psql -qc \"ALTER ROLE postgres WITH LOGIN SUPERUSER\"" >/dev/null
fi
[ "$(psql_ "SELECT count(*) FROM pg_database WHERE datname = 'test'")" = 1 ] \
  || psql_ "CREATE DATABASE test" >/dev/null

if ! answers 6379; then
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/sayiir.log
  for _ in $(seq 60); do answers 6379 && break; sleep 0.5; done
fi
answers 6379 || { echo "services: Redis did not start on 127.0.0.1:6379" >&2; exit 1; }

say "PostgreSQL postgres://postgres@127.0.0.1:5432/test"
say "Redis      redis://127.0.0.1:6379"

# The Redis Cluster and the Sentinel setup the Redis backend's cluster and Sentinel tests run on.
if ! answers 7000; then
  bash "$(dirname "$0")/redis-topologies.sh" start cluster
fi
answers 7000 || { echo "services: the Redis Cluster did not start on 127.0.0.1:7000" >&2; exit 1; }
if ! answers 7020; then
  bash "$(dirname "$0")/redis-topologies.sh" start sentinel
fi
answers 7020 || { echo "services: the Redis sentinels did not start on 127.0.0.1:7020" >&2; exit 1; }
