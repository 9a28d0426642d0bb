#!/usr/bin/env bash
# Lifecycle benchmark: what the lifecycle features cost, measured side by
# side in one run (interleaved A,B,A,B..., medians of BENCH_ROUNDS runs of
# BENCH_SECONDS each):
#   1. appends whose metadata carries correlation_id/causation_id (kept in
#      the two partial indexes) vs appends with the same metadata under
#      other key names (not indexed);
#   2. appends with evstore.notify_channel set vs unset, 8 clients;
#   3. subscription_fetch (checkpoint row, lease, plpgsql) vs the bare
#      read_all call it wraps, 100 events per call.
# Run as root inside the install lock:
#   flock /tmp/evstore-install.lock bench/lifecycle.sh
# (expects evstore to be installed: make install, inside the same lock)
set -euo pipefail
export PATH="/usr/lib/postgresql/15/bin:$PATH"
PORT=${BENCH_PORT:-5521}
SECS=${BENCH_SECONDS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
DIR=$(mktemp -d /tmp/lifecycle-bench.XXXXXX)
chown postgres "$DIR"
as_pg() { runuser -u postgres -- "$@"; }
stop() { as_pg pg_ctl -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap stop EXIT

as_pg initdb -D "$DIR/data" -A trust >/dev/null
cat >> "$DIR/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$DIR'
shared_preload_libraries = 'evstore'
shared_buffers = 256MB
synchronous_commit = ${BENCH_SYNC_COMMIT:-off}
max_wal_size = 4GB
CONF
as_pg pg_ctl -D "$DIR/data" -l "$DIR/log" -w start >/dev/null
psql_b() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -d postgres "$@"; }

psql_b <<'SQL'
CREATE EXTENSION evstore;
SELECT count(evstore.append_event('sub-' || (i % 50), 'E', jsonb_build_object('i', i)))
  FROM generate_series(1, 20000) i;
SELECT evstore.create_subscription('bench', ARRAY['sub']);
VACUUM ANALYZE;
SQL

cat > $DIR/meta_plain.sql <<'P'
SELECT evstore.append_event('acct-' || :client_id, 'Deposited', '{"amount": 10}', jsonb_build_object('request_id', 'req-' || :client_id || '-' || random(), 'cause_id', gen_random_uuid()::text));
P
cat > $DIR/meta_corr.sql <<'P'
SELECT evstore.append_event('acct-' || :client_id, 'Deposited', '{"amount": 10}', jsonb_build_object('correlation_id', 'req-' || :client_id || '-' || random(), 'causation_id', gen_random_uuid()::text));
P
cat > $DIR/append.sql <<'P'
SELECT evstore.append_event('acct-' || :client_id, 'Deposited', '{"amount": 10}');
P
cat > $DIR/fetch.sql <<'P'
SELECT count(*) FROM evstore.subscription_fetch('bench', 0, 100, 'w' || :client_id);
P
cat > $DIR/readall.sql <<'P'
SELECT count(*) FROM evstore.read_all(0, 100, ARRAY['sub']);
P
chown postgres $DIR/*.sql

tps() {   # script clients [env...]
    local script=$1 clients=$2; shift 2
    env "$@" runuser -u postgres -- env "$@" pgbench -n -h "$DIR" -p "$PORT" -M prepared \
        -c "$clients" -j "$clients" -T "$SECS" -f "$script" postgres 2>&1 |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

a=(); b=(); c=(); d=(); e=(); f=()
for r in $(seq "$ROUNDS"); do
    a+=("$(tps $DIR/meta_plain.sql 4)")
    b+=("$(tps $DIR/meta_corr.sql 4)")
    c+=("$(tps $DIR/append.sql 8)")
    d+=("$(tps $DIR/append.sql 8 PGOPTIONS='-c evstore.notify_channel=bench')")
    e+=("$(tps $DIR/readall.sql 1)")
    # fetch with a lease: one client, so the lease never blocks it
    f+=("$(tps $DIR/fetch.sql 1)")
done
echo "  meta plain: ${a[*]} | meta corr: ${b[*]}" >&2
echo "  notify off: ${c[*]} | notify on: ${d[*]}" >&2
echo "  read_all: ${e[*]} | subscription_fetch: ${f[*]}" >&2

echo
echo "evstore lifecycle benchmark (medians of $ROUNDS x ${SECS}s, synchronous_commit=${BENCH_SYNC_COMMIT:-off}, $(nproc) cores)"
printf '%-52s %10s %10s %6s\n' test "A tps" "B tps" "B/A"
printf '%-52s %10s %10s %6s\n' "append, A: other metadata, B: correlation+causation keys" \
    "$(median "${a[@]}")" "$(median "${b[@]}")" "$(ratio "$(median "${b[@]}")" "$(median "${a[@]}")")"
printf '%-52s %10s %10s %6s\n' "append 8 clients, A: notify off, B: notify on" \
    "$(median "${c[@]}")" "$(median "${d[@]}")" "$(ratio "$(median "${d[@]}")" "$(median "${c[@]}")")"
printf '%-52s %10s %10s %6s\n' "100 events, A: read_all, B: subscription_fetch" \
    "$(median "${e[@]}")" "$(median "${f[@]}")" "$(ratio "$(median "${f[@]}")" "$(median "${e[@]}")")"
