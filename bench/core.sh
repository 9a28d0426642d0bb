#!/usr/bin/env bash
# Core benchmark: evstore appends and reads vs the plain SQL that does the
# same work against a table with the same columns and indexes.  Each pair is
# run interleaved BENCH_ROUNDS times; medians and ratios are printed.
#
#   sudo bench/core.sh            (BENCH_SECONDS=5 BENCH_ROUNDS=3 by default)
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bench_start
S=$BENCH_DIR

psql_b <<'SQL'
CREATE EXTENSION evstore;
CREATE SEQUENCE plain_seq CACHE 1;
-- same columns, constraints and indexes (primary key, two unique, two secondary)
CREATE TABLE plain_events (LIKE evstore.events INCLUDING ALL);
CREATE TABLE bench_batch AS
    SELECT jsonb_agg(jsonb_build_object('type', 'ItemAdded', 'data', jsonb_build_object('sku', 'sku-' || i, 'qty', i % 7))) AS batch
    FROM generate_series(1, 1000) i;
-- 500 streams of 20 events for the read test
SELECT count(evstore.append_events('read-' || s,
       (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('n', v, 'pad', repeat('x', 100))))
        FROM generate_series(0, 19) v)))
FROM generate_series(1, 500) s;
VACUUM ANALYZE;
SQL

cat > $S/append_evstore.sql <<'P'
SELECT evstore.append_event('acct-' || :client_id, 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
cat > $S/append_plain.sql <<'P'
\set v :v + 1
INSERT INTO plain_events VALUES (nextval('plain_seq'), 'acct-' || :client_id, :v, gen_random_uuid(), 'Deposited', '{"amount": 10, "currency": "EUR"}', NULL, now(), 'acct', 7);
P
cat > $S/batch_evstore.sql <<'P'
SELECT evstore.append_events('cart-' || :client_id, batch) FROM bench_batch;
P
cat > $S/batch_plain.sql <<'P'
\set v :v + 1
INSERT INTO plain_events
SELECT nextval('plain_seq'), 'cart-' || :client_id, :v::bigint * 1000 + o - 1, gen_random_uuid(), e->>'type', e->'data', e->'metadata', now(), 'cart', 7
FROM bench_batch, jsonb_array_elements(batch) WITH ORDINALITY AS x(e, o);
P
cat > $S/read_evstore.sql <<'P'
\set s random(1, 500)
SELECT * FROM evstore.read_stream('read-' || :s);
P
cat > $S/read_plain.sql <<'P'
\set s random(1, 500)
SELECT * FROM evstore.events WHERE stream_id = 'read-' || :s ORDER BY stream_version;
P
chown postgres $S/*.sql

declare -A res
run_pair() {   # name clients
    local name=$1 clients=$2 e=() p=()
    for r in $(seq "$BENCH_ROUNDS"); do
        e+=("$(pgbench_tps $S/${name}_evstore.sql "$clients")")
        p+=("$(pgbench_tps $S/${name}_plain.sql "$clients" -D v=$((r * 1000000)))")
    done
    res[$name.e]=$(median "${e[@]}"); res[$name.p]=$(median "${p[@]}")
    echo "  $name: evstore ${e[*]} | plain ${p[*]}" >&2
}

run_pair append 8
run_pair batch 1
run_pair read 2

echo
echo "evstore core benchmark (medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s, synchronous_commit=${BENCH_SYNC_COMMIT:-off}, $(nproc) cores)"
printf '%-44s %12s %12s %8s %s\n' test "evstore tps" "plain tps" ratio target
printf '%-44s %12s %12s %8s %s\n' "single-event append, 8 clients, own streams" "${res[append.e]}" "${res[append.p]}" "$(ratio ${res[append.e]} ${res[append.p]})" ">= 0.85"
printf '%-44s %12s %12s %8s %s\n' "append_events 1,000 events vs INSERT..SELECT" "${res[batch.e]}" "${res[batch.p]}" "$(ratio ${res[batch.e]} ${res[batch.p]})" ">= 0.80"
printf '%-44s %12s %12s %8s %s\n' "read_stream 20 events vs plain SELECT" "${res[read.e]}" "${res[read.p]}" "$(ratio ${res[read.e]} ${res[read.p]})" ">= 0.83 (time <= 1.2x)"
