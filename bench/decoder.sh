#!/usr/bin/env bash
# Decoding throughput of the evstore output plugin against wal2json
# (format-version=2, add-tables=evstore.events) on the same WAL.
#
# Starts its own server (as user postgres, holding the machine-wide install
# lock), creates one slot per plugin *before* loading, appends N events in
# transactions of BATCH events, then decodes the whole WAL with
# pg_logical_slot_peek_changes (which does not consume, so every round sees
# the same WAL), alternating the plugins (A,B,A,B,...) so background noise
# hits both.  Prints events/s per run, the medians and their ratio.
#
#   bench/decoder.sh                    # N=1000000 ROUNDS=5
#   N=200000 ROUNDS=5 bench/decoder.sh
#   PORT=5561 KEEP=1 bench/decoder.sh   # KEEP=1 leaves the data dir
set -euo pipefail

N=${N:-1000000}
BATCH=${BATCH:-100}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-5561}
KEEP=${KEEP:-0}

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
here=$(cd "$(dirname "$0")/.." && pwd)
# another PostgreSQL: PG_CONFIG=/path/to/pg_config
export PATH="$("${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}" --bindir):$PATH"
# output_plugin_libraries exists only in releases with the CVE-2026-6471 fix
plugin_libs() { postgres --describe-config 2>/dev/null | grep '^output_plugin_libraries' >/dev/null && echo "$1" || true; }
[ -f /usr/lib/postgresql/15/lib/wal2json.so ] || { echo "wal2json is not installed (postgresql-15-wal2json)"; exit 1; }

exec 9>/tmp/evstore-install.lock
flock 9

work=$(mktemp -d /tmp/decoder-bench.XXXXXX)
mkdir -p "$work/src-copy"
cp -a "$here"/. "$work/src-copy"/
rm -rf "$work/src-copy/.git"
chown -R postgres:postgres "$work"
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }
pg() { runuser -u postgres -- "$@"; }
data="$work/data"
cleanup() {
    pg pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    if [ "$KEEP" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

(cd "$work/src-copy" && pg make -s clean >/dev/null 2>&1; pg make -s >/dev/null && make -s install >/dev/null)

pg initdb -D "$data" -A trust >/dev/null
grep -v "^output_plugin_libraries" "$here/test/evstore.conf" >> "$data/postgresql.conf"
cat >> "$data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$work'
$(plugin_libs "output_plugin_libraries = 'pgoutput, test_decoding, evstore, wal2json'")
shared_buffers = 256MB
max_wal_size = 8GB
checkpoint_timeout = 30min
synchronous_commit = off
CONF
pg pg_ctl -D "$data" -l "$work/server.log" -w start >/dev/null
psql_() { pg psql -X -q -h "$work" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

psql_ -c "CREATE EXTENSION evstore"
psql_ -c "SELECT 'ok' FROM pg_create_logical_replication_slot('bench_evstore', 'evstore')" >/dev/null
psql_ -c "SELECT 'ok' FROM pg_create_logical_replication_slot('bench_wal2json', 'wal2json')" >/dev/null

echo "loading $N events in transactions of $BATCH events ..."
t0=$(date +%s.%N)
psql_ <<SQL
DO \$\$
DECLARE
    batch jsonb;
BEGIN
    FOR b IN 1 .. ($N / $BATCH) LOOP
        SELECT jsonb_agg(jsonb_build_object(
                 'type', CASE WHEN i % 3 = 0 THEN 'OrderPlaced' ELSE 'ItemAdded' END,
                 'data', jsonb_build_object('sku', 'SKU-' || (i * 7919 % 10007), 'qty', i % 5 + 1,
                                            'price', (i % 1000) / 10.0, 'note', 'bench event ' || i),
                 'metadata', jsonb_build_object('correlation_id', 'corr-' || b, 'user', 'u' || (b % 97))))
          INTO batch
          FROM generate_series(1, $BATCH) i;
        PERFORM evstore.append_events('order-' || (b % 10000), batch);
        COMMIT;
    END LOOP;
END
\$\$;
SQL
t1=$(date +%s.%N)
events=$(psql_ -At -c "SELECT count(*) FROM evstore.events")
echo "loaded $events events in $(calc "$t1 - $t0" 1) s; WAL to decode: $(psql_ -At -c "SELECT pg_size_pretty(pg_current_wal_lsn() - restart_lsn) FROM pg_replication_slots WHERE slot_name = 'bench_evstore'")"
psql_ -c "CHECKPOINT"

# one decoding pass; prints "<events> <seconds>"
run() {
    local slot=$1 opts=$2 filter=$3
    local s e n
    s=$(date +%s.%N)
    n=$(psql_ -At -c "SELECT count(*) FILTER (WHERE $filter) FROM pg_logical_slot_peek_changes('$slot', NULL, NULL $opts)")
    e=$(date +%s.%N)
    echo "$n $(calc "$e - $s")"
}

EV_OPTS=""
EV_FILTER="data LIKE '{\"global_position\":%'"
W2J_OPTS=", 'format-version', '2', 'add-tables', 'evstore.events'"
W2J_FILTER="data LIKE '{\"action\":\"I\"%'"

# warm-up (not counted): reads the WAL into the page cache for both
run bench_evstore "$EV_OPTS" "$EV_FILTER" >/dev/null
run bench_wal2json "$W2J_OPTS" "$W2J_FILTER" >/dev/null

ev_rates=(); w2j_rates=()
for r in $(seq 1 "$ROUNDS"); do
    read -r n sec < <(run bench_evstore "$EV_OPTS" "$EV_FILTER")
    [ "$n" = "$events" ] || { echo "evstore decoded $n events, expected $events"; exit 1; }
    rate=$(calc "$n / $sec" 0)
    ev_rates+=("$rate"); echo "round $r evstore : $n events in $sec s = $rate events/s"

    read -r n sec < <(run bench_wal2json "$W2J_OPTS" "$W2J_FILTER")
    [ "$n" = "$events" ] || { echo "wal2json decoded $n events, expected $events"; exit 1; }
    rate=$(calc "$n / $sec" 0)
    w2j_rates+=("$rate"); echo "round $r wal2json: $n events in $sec s = $rate events/s"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
m_ev=$(median "${ev_rates[@]}")
m_w2j=$(median "${w2j_rates[@]}")
echo "median evstore : $m_ev events/s"
echo "median wal2json: $m_w2j events/s"
echo "ratio evstore/wal2json: $(calc "$m_ev / $m_w2j" 2)x  (target >= 1.5x; N=$N, BATCH=$BATCH, ROUNDS=$ROUNDS)"
