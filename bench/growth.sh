#!/usr/bin/env bash
# Growth benchmark: does evstore slow down as the store grows?  Loads the
# store step by step to each size in GROWTH_SIZES (events stored, loaded
# with append_events batches of 1,000 into streams of 1,000 events) and at
# each size measures, interleaved BENCH_ROUNDS times:
#
#   append 1c   single-event append_event, 1 client (latency = 1000/tps ms);
#               appends go to streams created fresh at each size, so what
#               changes between sizes is the store, not the stream length
#   append 8c   single-event append_event, 8 clients (throughput)
#   read 20     read_stream of one of 100 streams of 20 events written first
#               (the oldest data, deepest in the indexes), 1 client
#   INSERT 8c   control: plain INSERT of the same row into evstore.events,
#               8 clients (the owner may INSERT; no evstore logic runs)
#
# and prints each number with its ratio to the smallest size.
#
# This script takes /tmp/evstore-install.lock itself, once per load chunk
# (GROWTH_CHUNK events, default 1,000,000) and once per measurement, and
# stops the server in between, so no hold lasts more than a few minutes.
# Do NOT run it under flock (it would wait for itself).
#
#   sudo bench/growth.sh                 (GROWTH_SIZES="100000 1000000 10000000")
#   sudo GROWTH_SIZES="100000 1000000" bench/growth.sh
here=$(cd "$(dirname "$0")" && pwd)
export BENCH_DIR=${GROWTH_DIR:-/tmp/evstore-growth-${BENCH_PORT:-5599}}
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"
source "$here/lib.sh"
GROWTH_SIZES=${GROWTH_SIZES:-"100000 1000000 10000000"}
GROWTH_CHUNK=${GROWTH_CHUNK:-1000000}
LOCK=/tmp/evstore-install.lock
S=$BENCH_DIR

lock() { exec 8>"$LOCK"; flock 8; ${BENCH_INSTALL_CMD:-true}; }
unlock() { flock -u 8; exec 8>&-; }
server_up() {
    if [ ! -d "$S/data" ]; then
        bench_start        # initdb + config + start (lib.sh); its EXIT trap removes $S
    else
        as_pg pg_ctl -D "$S/data" -l "$S/log" -w start >/dev/null
    fi
}
server_down() { as_pg pg_ctl -D "$S/data" -m fast -w stop >/dev/null; }
trap 'server_down 2>/dev/null || true; rm -rf "$S"' EXIT

lock; server_up
psql_b <<'SQL'
CREATE EXTENSION evstore;
CREATE TABLE bench_batch AS
    SELECT jsonb_agg(jsonb_build_object('type', 'ItemAdded', 'data', jsonb_build_object('sku', 'sku-' || i, 'qty', i % 7, 'pad', repeat('z', 60)))) AS batch
    FROM generate_series(1, 1000) i;
SELECT count(evstore.append_events('probe-' || s,
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('n', v))) FROM generate_series(1, 20) v)))
FROM generate_series(1, 100) s;
SQL
server_down; unlock
trap - EXIT; trap 'as_pg pg_ctl -D "$S/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$S"' EXIT

cat > $S/load.sql <<'P'
SELECT evstore.append_events('load' || :client_id || '-' || nextval('load_seq'), batch) FROM bench_batch;
P
cat > $S/append.sql <<'P'
SELECT evstore.append_event('acct' || :client_id || '-' || :size, 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
# control: a plain INSERT of the same row into the same table (the owner may
# INSERT; it bypasses evstore's checks), so a slowdown that also hits it is
# the table's and indexes', not evstore's
cat > $S/insert.sql <<'P'
\set v :v + 1
INSERT INTO evstore.events VALUES (nextval('evstore.global_position_seq'), 'plain' || :client_id || '-1', :v, evstore.uuid_generate_v7(), 'Deposited', '{"amount": 10, "currency": "EUR"}', NULL, now(), 'plain' || :client_id, 7);
P
cat > $S/read.sql <<'P'
\set s random(1, 100)
SELECT * FROM evstore.read_stream('probe-' || :s);
P
chown postgres $S/*.sql

count() { psql_b -At -c "SELECT coalesce(max(global_position), 0) FROM evstore.events"; }
rows=()
first_a1=; first_a8=; first_r=; first_p8=
for size in $GROWTH_SIZES; do
    lock; server_up
    psql_b -c "CREATE SEQUENCE IF NOT EXISTS load_seq"
    have=$(count)
    while [ "$have" -lt "$size" ]; do
        chunk=$(( size - have < GROWTH_CHUNK ? size - have : GROWTH_CHUNK ))
        batches=$(( (chunk + 1999) / 2000 ))   # 2 clients x 1,000 events
        t0=$(date +%s)
        as_pg pgbench -n -h "$S" -p "$BENCH_PORT" -M prepared -c 2 -j 2 -t "$batches" -f $S/load.sql postgres >>$S/pgbench.log 2>&1
        have=$(count)
        echo "  loaded to $have events ($(( $(date +%s) - t0 ))s for this chunk)" >&2
        if [ "$have" -lt "$size" ]; then server_down; unlock; lock; server_up; fi
    done
    # same starting point at every size: statistics fresh, no checkpoint
    # (and its full-page writes) pending from the load
    psql_b -c "VACUUM ANALYZE evstore.events" -c "CHECKPOINT" >/dev/null
    a1=(); a8=(); rd=(); p8=()
    for r in $(seq "$BENCH_ROUNDS"); do
        a1+=("$(pgbench_tps $S/append.sql 1 -D size=$size)")
        rd+=("$(pgbench_tps $S/read.sql 1)")
        a8+=("$(pgbench_tps $S/append.sql 8 -D size=$size)")
        p8+=("$(pgbench_tps $S/insert.sql 8 -D v=$(( (size / 1000) * 100000 + r * 10000000 )))")
    done
    mp8=$(median "${p8[@]}"); first_p8=${first_p8:-$mp8}
    ma1=$(median "${a1[@]}"); ma8=$(median "${a8[@]}"); mr=$(median "${rd[@]}")
    ckpt=$(psql_b -At -c "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
    dbsize=$(psql_b -At -c "SELECT pg_size_pretty(pg_database_size('postgres'))")
    server_down; unlock
    first_a1=${first_a1:-$ma1}; first_a8=${first_a8:-$ma8}; first_r=${first_r:-$mr}
    lat_a=$(awk -v t="$ma1" 'BEGIN {printf "%.3f", 1000 / t}')
    lat_r=$(awk -v t="$mr" 'BEGIN {printf "%.3f", 1000 / t}')
    echo "  $size ($dbsize, $ckpt checkpoints so far): append 1c ${a1[*]} | append 8c ${a8[*]} | read ${rd[*]} | plain INSERT 8c ${p8[*]}" >&2
    echo "RESULT,growth,append 1 client at $size events,evstore,$ma1,tps,${a1[*]}"
    echo "RESULT,growth,append 8 clients at $size events,evstore,$ma8,tps,${a8[*]}"
    echo "RESULT,growth,read_stream 20 at $size events,evstore,$mr,tps,${rd[*]}"
    echo "RATIO,growth,append 1 client at $size events,vs smallest size,$(ratio $ma1 $first_a1)"
    echo "RATIO,growth,append 8 clients at $size events,vs smallest size,$(ratio $ma8 $first_a8)"
    echo "RATIO,growth,read_stream 20 at $size events,vs smallest size,$(ratio $mr $first_r)"
    echo "RESULT,growth,plain INSERT 8 clients at $size events (control),plain-insert,$mp8,tps,${p8[*]}"
    echo "RATIO,growth,plain INSERT 8 clients at $size events (control),vs smallest size,$(ratio $mp8 $first_p8)"
    rows+=("$size|$dbsize|$lat_a|$(ratio $ma1 $first_a1)|$ma8|$(ratio $ma8 $first_a8)|$lat_r|$(ratio $mr $first_r)|$mp8|$(ratio $mp8 $first_p8)")
done

echo
echo "evstore growth benchmark (medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s, synchronous_commit=${BENCH_SYNC_COMMIT:-off}, $(nproc) cores; ratio = tps relative to the smallest size)"
printf '%12s %9s %14s %7s %14s %7s %14s %7s %14s %7s\n' events "db size" "append ms 1c" ratio "append tps 8c" ratio "read_stream ms" ratio "INSERT tps 8c" ratio
for row in "${rows[@]}"; do
    IFS='|' read -r a b c d e f g h i j <<<"$row"
    printf '%12s %9s %14s %7s %14s %7s %14s %7s %14s %7s\n' "$a" "$b" "$c" "$d" "$e" "$f" "$g" "$h" "$i" "$j"
done
