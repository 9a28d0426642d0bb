#!/usr/bin/env bash
# Distributed-mode append benchmark (docs/distributed.md), side by side in
# one run: a Citus cluster of 1 coordinator + 2 workers and a single-node
# evstore, all on this machine.  The same 50 streams (all held by worker 1)
# are appended to, one event per call, by pgbench (-M simple, so each call is
# a constant statement that Citus can delegate):
#
#   coord    through the coordinator, delegated to worker 1
#   worker   directly on worker 1 (no delegation)
#   single   a single-node evstore (no Citus)
#
# Rounds are interleaved; medians of BENCH_ROUNDS.  Prints the ratios and the
# cost of delegation per append (1/tps_coord - 1/tps_worker per client, at one
# client).  On a 2-core machine the three servers share the cores: this shows
# overheads, not scaling (see docs/distributed.md, Performance).
#
#   sudo bench/citus.sh     (CITUS_CLIENTS="1 4" BENCH_SECONDS=5 BENCH_ROUNDS=3)
# Skips (exit 0) when Citus is not installed for the server.
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
CITUS_CLIENTS=${CITUS_CLIENTS:-"1 4"}
CITUS_PORT=${CITUS_PORT:-5580}   # coordinator; workers +1, +2; single node +3

pkglib=$("$PG_BIN/pg_config" --pkglibdir)
if [ ! -f "$pkglib/citus.so" ]; then
    echo "SKIP: Citus is not installed for this server (no citus.so in $pkglib)"
    exit 0
fi

D=$BENCH_DIR
node_start() {   # node_start NAME PORT PRELOAD
    as_pg initdb -D "$D/$1" -A trust >/dev/null
    cat >> "$D/$1/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
shared_preload_libraries = '$3'
citus.node_conninfo = 'sslmode=prefer'
shared_buffers = 256MB
max_connections = 100
max_prepared_transactions = 20
wal_level = logical
synchronous_commit = ${BENCH_SYNC_COMMIT:-off}
checkpoint_timeout = 30min
max_wal_size = 4GB
CONF
    [ "$3" = evstore ] && sed -i '/^citus\./d' "$D/$1/postgresql.conf"
    echo "host all all 127.0.0.1/32 trust" >> "$D/$1/pg_hba.conf"
    as_pg pg_ctl -D "$D/$1" -l "$D/$1.log" -w start >/dev/null
}
stop_all() {
    for n in coord w1 w2 single; do
        [ -d "$D/$n" ] && as_pg pg_ctl -D "$D/$n" -m fast -w stop >/dev/null 2>&1
    done
    rm -rf "$D"
}
trap stop_all EXIT
p() { local port=$1; shift; as_pg psql -X -q -At -v ON_ERROR_STOP=1 -h "$D" -p "$port" -d postgres "$@"; }

C=$CITUS_PORT; W1=$((C + 1)); W2=$((C + 2)); S=$((C + 3))
node_start coord $C 'citus, evstore'
node_start w1 $W1 'citus, evstore'
node_start w2 $W2 'citus, evstore'
node_start single $S evstore
for port in $C $W1 $W2; do p $port -c 'CREATE EXTENSION citus'; done
p $C -c "SELECT citus_set_coordinator_host('127.0.0.1', $C)" >/dev/null
p $C -c "SELECT citus_add_node('127.0.0.1', $W1)" -c "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null
p $C -c 'CREATE EXTENSION evstore' -c 'SELECT evstore.distribute()' >/dev/null 2>&1
p $S -c 'CREATE EXTENSION evstore'

# 50 streams held by worker 1, one pgbench script each (pgbench picks one
# script at random per transaction)
streams=$(p $C -c "
SELECT string_agg(s, ' ') FROM (
  SELECT 'acct-' || i AS s FROM generate_series(1, 2000) i
   WHERE EXISTS (SELECT 1 FROM evstore.shards sh
                  WHERE sh.table_name = 'events' AND sh.node_port = $W1
                    AND hashtext('acct-' || i) BETWEEN sh.hash_min AND sh.hash_max)
   LIMIT 50) x")
scripts=()
k=0
for s in $streams; do
    k=$((k + 1))
    echo "SELECT evstore.append_event('$s', 'Deposited', '{\"amount\": 1}');" > "$D/s$k.sql"
    scripts+=(-f "$D/s$k.sql")
done
chown postgres "$D"/s*.sql

tps_on() {   # tps_on PORT CLIENTS
    local tps
    tps=$(as_pg pgbench -n -h "$D" -p "$1" -M simple -c "$2" -j "$2" -T "$BENCH_SECONDS" \
        "${scripts[@]}" postgres 2>&1 | tee -a "$D/pgbench.log" |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1) || true
    if [ -z "$tps" ]; then
        echo "pgbench failed on port $1:" >&2; grep -E "ERROR|error" "$D/pgbench.log" | tail -5 >&2; exit 1
    fi
    echo "$tps"
}

printf '%-8s %10s %10s %10s %14s %14s %18s\n' clients coord worker single coord/worker worker/single "delegation ms/append"
for c in $CITUS_CLIENTS; do
    tc=(); tw=(); ts=()
    for r in $(seq 1 "$BENCH_ROUNDS"); do
        tc+=("$(tps_on $C "$c")")
        tw+=("$(tps_on $W1 "$c")")
        ts+=("$(tps_on $S "$c")")
    done
    mc=$(median "${tc[@]}"); mw=$(median "${tw[@]}"); ms=$(median "${ts[@]}")
    # per client: each client waits for its own calls
    cost=$(awk -v a="$mc" -v b="$mw" -v c="$c" 'BEGIN {printf "%.3f", (c / a - c / b) * 1000}')
    printf '%-8s %10.0f %10.0f %10.0f %14s %14s %18s\n' "$c" "$mc" "$mw" "$ms" \
        "$(ratio "$mc" "$mw")" "$(ratio "$mw" "$ms")" "$cost"
    echo "RESULT citus clients=$c coord_tps=$mc worker_tps=$mw single_tps=$ms"
    echo "RATIO citus clients=$c coord/worker=$(ratio "$mc" "$mw") worker/single=$(ratio "$mw" "$ms") delegation_ms_per_append=$cost"
done
# every append landed in a shard, none in a shell
echo "events in the shards: $(p $C -c 'SELECT count(*) FROM evstore.events')"
echo "bytes in the shells (coordinator, worker 1): $(p $C -c "SELECT pg_relation_size('evstore.events')") $(p $W1 -c "SELECT pg_relation_size('evstore.events')")"
