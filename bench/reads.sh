#!/usr/bin/env bash
# Read benchmark: evstore's read functions vs the plain SQL a user would
# write against the same table (evstore.events, same indexes).
#
#   read_stream   streams of 20, 1,000 and 100,000 events, read whole
#                 (vs SELECT ... WHERE stream_id = $1 ORDER BY stream_version)
#   read_all      pages of 1,000 after a random position: no filter, two
#                 categories of ten, two event types of five, consumer group
#                 member 1 of 4 (vs SELECT ... WHERE global_position > $1
#                 [AND filter] ORDER BY global_position LIMIT 1000)
#
# The plain SQL is not equivalent: it has no fence, so under concurrent
# appends it can skip events that commit late (see docs/read_all.md).  It is
# the speed a reader would get without that guarantee.
#
#   sudo flock /tmp/evstore-install.lock bench/reads.sh
#   (READS_EVENTS=300000 background events; BENCH_SECONDS, BENCH_ROUNDS)
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
READS_EVENTS=${READS_EVENTS:-300000}
bench_start
S=$BENCH_DIR

echo "loading: streams of 20, 1,000, 100,000 events and $READS_EVENTS others..." >&2
psql_b <<SQL
CREATE EXTENSION evstore;
SELECT evstore.append_events('small-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('n', v, 'pad', repeat('x', 100)))) FROM generate_series(1, 20) v));
SELECT evstore.append_events('mid-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('n', v, 'pad', repeat('x', 100)))) FROM generate_series(1, 1000) v));
SELECT count(evstore.append_events('big-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('n', v, 'pad', repeat('x', 100)))) FROM generate_series(1, 1000) v)))
FROM generate_series(1, 100);
-- background: 10 categories, 5 event types, streams of 10 events; commits
-- every 1,000 streams (each append holds a per-stream lock until commit:
-- tens of thousands of streams in one transaction exhaust the lock table)
DO \$\$
BEGIN
    FOR s IN 1 .. $READS_EVENTS / 10 LOOP
        PERFORM evstore.append_events('cat' || (s % 10) || '-' || s,
            (SELECT jsonb_agg(jsonb_build_object('type', 'Type' || ((s + v) % 5), 'data', jsonb_build_object('n', v, 'pad', repeat('y', 80)))) FROM generate_series(1, 10) v));
        IF s % 1000 = 0 THEN COMMIT; END IF;
    END LOOP;
END \$\$;
VACUUM ANALYZE;
SQL
maxpos=$(psql_b -At -c "SELECT max(global_position) FROM evstore.events")

for n in small mid big; do
    echo "SELECT * FROM evstore.read_stream('$n-1');" > $S/rs_${n}_evstore.sql
    echo "SELECT * FROM evstore.events WHERE stream_id = '$n-1' ORDER BY stream_version;" > $S/rs_${n}_plain.sql
done
page='\set p random(0, '$((maxpos - 20000))')'
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.read_all(:p, 1000);" > $S/ra_all_evstore.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.events WHERE global_position > :p ORDER BY global_position LIMIT 1000;" > $S/ra_all_plain.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.read_all(:p, 1000, ARRAY['cat3', 'cat7']);" > $S/ra_cat_evstore.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.events WHERE category = ANY (ARRAY['cat3', 'cat7']) AND global_position > :p ORDER BY global_position LIMIT 1000;" > $S/ra_cat_plain.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.read_all(:p, 1000, NULL, ARRAY['Type1', 'Type4']);" > $S/ra_type_evstore.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.events WHERE event_type = ANY (ARRAY['Type1', 'Type4']) AND global_position > :p ORDER BY global_position LIMIT 1000;" > $S/ra_type_plain.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.read_all(:p, 1000, NULL, NULL, 1, 4);" > $S/ra_group_evstore.sql
printf '%s\n%s\n' "$page" "SELECT * FROM evstore.events WHERE stream_bucket % 4 = 1 AND global_position > :p ORDER BY global_position LIMIT 1000;" > $S/ra_group_plain.sql
chown postgres $S/*.sql

rows=()
run_pair() {   # name clients label
    local name=$1 clients=$2 label=$3 e=() p=() me mp
    for r in $(seq "$BENCH_ROUNDS"); do
        e+=("$(pgbench_tps $S/${name}_evstore.sql "$clients")")
        p+=("$(pgbench_tps $S/${name}_plain.sql "$clients")")
    done
    me=$(median "${e[@]}"); mp=$(median "${p[@]}")
    echo "  $label: evstore ${e[*]} | plain ${p[*]}" >&2
    echo "RESULT,reads,$label,evstore,$me,tps,${e[*]}"
    echo "RESULT,reads,$label,plain-sql,$mp,tps,${p[*]}"
    echo "RATIO,reads,$label,evstore/plain-sql,$(ratio $me $mp)"
    rows+=("$label|$me|$mp|$(ratio $me $mp)")
}

run_pair rs_small 2 "read_stream 20 events"
run_pair rs_mid 2 "read_stream 1,000 events"
run_pair rs_big 1 "read_stream 100,000 events"
run_pair ra_all 2 "read_all page of 1,000, no filter"
run_pair ra_cat 2 "read_all page of 1,000, 2 of 10 categories"
run_pair ra_type 2 "read_all page of 1,000, 2 of 5 event types"
run_pair ra_group 2 "read_all page of 1,000, consumer group 1 of 4"

echo
echo "evstore read benchmark (medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s, $maxpos events stored, $(nproc) cores)"
printf '%-48s %12s %12s %8s\n' test "evstore tps" "plain tps" ratio
for row in "${rows[@]}"; do
    IFS='|' read -r l a b c <<<"$row"
    printf '%-48s %12s %12s %8s\n' "$l" "$a" "$b" "$c"
done
