#!/usr/bin/env bash
# Multi-stream appends and the cost of the statistics counters.
#
#   multi   one event to each of two streams in one transaction, each client
#           on its own two streams; every variant sends its payloads as
#           text that the server parses on each call (as an application's
#           parameters are), so none gets a payload parsed once at PREPARE:
#             append_multi     one call of evstore.append_multi (one statement)
#             two calls        BEGIN; append_event; append_event; COMMIT
#                              (four round trips, what an application does
#                              without append_multi)
#             one statement    SELECT append_event(..), append_event(..)
#                              (one round trip, no lock ordering)
#           target: append_multi >= 1.0x two calls.
#   stats   single-event append_event at STATS_CLIENTS (8) clients, own
#           streams, with evstore.track_stats on and off (ALTER SYSTEM and a
#           reload between runs, rounds interleaved on, off, on, ...), and
#           the same with 100 appends per transaction (less commit time
#           around the counters); target: on/off >= 0.98.
#
# Output: a human table, and RESULT/RATIO lines for bench/run-all.sh.
#
#   sudo flock /tmp/evstore-install.lock sh -c 'make -s install && bench/multi.sh'
#   (MULTI_CLIENTS="1 8" STATS_CLIENTS=8 BENCH_SECONDS=5 BENCH_ROUNDS=5 by default)
here=$(cd "$(dirname "$0")" && pwd)
BENCH_ROUNDS=${BENCH_ROUNDS:-5}
source "$here/lib.sh"
MULTI_CLIENTS=${MULTI_CLIENTS:-"1 8"}
STATS_CLIENTS=${STATS_CLIENTS:-8}
bench_start
S=$BENCH_DIR

psql_b -c 'CREATE EXTENSION evstore'

cat > $S/multi_multi.sql <<'P'
SELECT count(*) FROM evstore.append_multi(('[{"stream_id": "order' || :client_id || '-1", "events": [{"type": "OrderPlaced", "data": {"amount": ' || :client_id || ', "currency": "EUR"}}]}, {"stream_id": "stock' || :client_id || '-1", "events": [{"type": "StockReserved", "data": {"amount": ' || :client_id || ', "sku": "a"}}]}]')::jsonb);
P
cat > $S/multi_two.sql <<'P'
BEGIN;
SELECT evstore.append_event('order' || :client_id || '-1', 'OrderPlaced', ('{"amount": ' || :client_id || ', "currency": "EUR"}')::jsonb);
SELECT evstore.append_event('stock' || :client_id || '-1', 'StockReserved', ('{"amount": ' || :client_id || ', "sku": "a"}')::jsonb);
COMMIT;
P
cat > $S/multi_one.sql <<'P'
SELECT evstore.append_event('order' || :client_id || '-1', 'OrderPlaced', ('{"amount": ' || :client_id || ', "currency": "EUR"}')::jsonb),
       evstore.append_event('stock' || :client_id || '-1', 'StockReserved', ('{"amount": ' || :client_id || ', "sku": "a"}')::jsonb);
P
cat > $S/single.sql <<'P'
SELECT evstore.append_event('acct' || :client_id || '-1', 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
# 100 appends per transaction: less commit and round-trip time around the
# counters, so their share of an append's cost shows more
cat > $S/loop.sql <<'P'
SELECT count(evstore.append_event('loop' || :client_id || '-1', 'Deposited', '{"amount": 10, "currency": "EUR"}')) FROM generate_series(1, 100);
P
chown postgres $S/*.sql

rows=()
for c in $MULTI_CLIENTS; do
    m=() t=() o=()
    for r in $(seq "$BENCH_ROUNDS"); do
        m+=("$(pgbench_tps $S/multi_multi.sql "$c")")
        t+=("$(pgbench_tps $S/multi_two.sql "$c")")
        o+=("$(pgbench_tps $S/multi_one.sql "$c")")
    done
    label="2 streams x 1 event, $c clients"
    mm=$(median "${m[@]}"); tm=$(median "${t[@]}"); om=$(median "${o[@]}")
    echo "  $label: append_multi ${m[*]} | two calls ${t[*]} | one statement ${o[*]}" >&2
    echo "RESULT,multi,$label,append_multi,$mm,tps,${m[*]}"
    echo "RESULT,multi,$label,two-append_event-calls,$tm,tps,${t[*]}"
    echo "RESULT,multi,$label,one-statement-two-calls,$om,tps,${o[*]}"
    echo "RATIO,multi,$label,append_multi/two-calls,$(ratio "$mm" "$tm")"
    echo "RATIO,multi,$label,append_multi/one-statement,$(ratio "$mm" "$om")"
    rows+=("$label|append_multi $mm|two calls $tm|$(ratio "$mm" "$tm")x|one statement $om|$(ratio "$mm" "$om")x")
done

set_stats() {
    psql_b -c "ALTER SYSTEM SET evstore.track_stats = $1" -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 0.5
}
stats_pair() {   # script label
    local script=$1 label=$2 on=() off=() onm offm
    for r in $(seq "$BENCH_ROUNDS"); do
        set_stats on;  on+=("$(pgbench_tps "$script" "$STATS_CLIENTS")")
        set_stats off; off+=("$(pgbench_tps "$script" "$STATS_CLIENTS")")
    done
    onm=$(median "${on[@]}"); offm=$(median "${off[@]}")
    echo "  $label: track_stats on ${on[*]} | off ${off[*]}" >&2
    echo "RESULT,multi,$label,track_stats-on,$onm,tps,${on[*]}"
    echo "RESULT,multi,$label,track_stats-off,$offm,tps,${off[*]}"
    echo "RATIO,multi,$label,track_stats-on/off,$(ratio "$onm" "$offm")"
    rows+=("$label|track_stats on $onm|off $offm|$(ratio "$onm" "$offm")x||")
}
stats_pair $S/single.sql "single-event append, $STATS_CLIENTS clients, own streams"
stats_pair $S/loop.sql "100 single-event appends per xact, $STATS_CLIENTS clients"
set_stats on

# The counters' CPU cost in one backend, free of client and commit noise:
# 5000 appends in one statement, on and off interleaved, 2 x BENCH_ROUNDS
# each; the minimum of each is the least disturbed run.
cpu=$(psql_b -At -v rounds="$BENCH_ROUNDS" <<'SQL'
SELECT set_config('bench.rounds', :'rounds', false) \gset
CREATE TEMP TABLE runs (setting text, ms float8);
DO $$
DECLARE t0 timestamptz; s text;
BEGIN
  FOR r IN 1..(2 * current_setting('bench.rounds')::int) LOOP
    FOREACH s IN ARRAY ARRAY['on', 'off'] LOOP
      PERFORM set_config('evstore.track_stats', s, false);
      t0 := clock_timestamp();
      PERFORM count(evstore.append_event('cpu-' || r || s, 'T', '{"amount": 10}')) FROM generate_series(1, 5000);
      INSERT INTO runs VALUES (s, extract(epoch FROM clock_timestamp() - t0) * 1000);
    END LOOP;
  END LOOP;
END $$;
SELECT (SELECT min(ms) FROM runs WHERE setting = 'on') || ' ' || (SELECT min(ms) FROM runs WHERE setting = 'off');
SQL
)
read -r cpu_on cpu_off <<<"$cpu"
label="5000 appends in one statement, 1 backend (min ms)"
echo "  $label: track_stats on $cpu_on ms | off $cpu_off ms" >&2
echo "RESULT,multi,$label,track_stats-on,$cpu_on,ms"
echo "RESULT,multi,$label,track_stats-off,$cpu_off,ms"
echo "RATIO,multi,$label,track_stats-on/off-throughput,$(ratio "$cpu_off" "$cpu_on")"
rows+=("$label|track_stats on ${cpu_on}ms|off ${cpu_off}ms|$(ratio "$cpu_off" "$cpu_on")x||")
# the counters are there: events counted with track_stats on only
psql_b -At -c "SELECT 'counted appends: ' || appends || ', events: ' || events FROM evstore.stats" >&2

echo
echo "evstore multi-stream append and stats benchmark (medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s, synchronous_commit=${BENCH_SYNC_COMMIT:-off}, $(nproc) cores)"
for row in "${rows[@]}"; do
    IFS='|' read -r l a b c d e <<<"$row"
    printf '%-48s %-22s %-20s %-7s %-22s %s\n' "$l" "$a" "$b" "$c" "$d" "$e"
done
