#!/usr/bin/env bash
# Append benchmark: evstore vs a plain INSERT into a table with the same
# columns and indexes (no version check, no locking: the floor), and vs a
# PL/pgSQL append written the way Message DB writes a message
# (mdb_append below):
#
#   1. pg_advisory_xact_lock on a 64-bit hash of the stream's CATEGORY
#      (Message DB's acquire_lock: one writer per category at a time),
#   2. the stream's current version by max(stream_version) over the
#      (stream_id, stream_version) index,
#   3. the expected-version check (raises ES001),
#   4. INSERT with nextval() for the global position.
#
# Same columns, constraints and indexes as evstore.events, so the three
# differ only in how an append is done.  Workloads (pgbench custom scripts,
# BENCH_SECONDS each, BENCH_ROUNDS rounds interleaved evstore, mdb, plain):
#
#   distinct  N clients, each on its own stream in its own category
#   hot       N clients, a random stream of 100,000 in ONE category
#   batch     append 100 events in one call (mdb: 100 calls in one transaction)
#
# Output: a human table, and RESULT/RATIO lines for bench/run-all.sh.
#
#   sudo flock /tmp/evstore-install.lock bench/appends.sh
#   (APPEND_CLIENTS="1 8 32" BENCH_SECONDS=5 BENCH_ROUNDS=3 by default)
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
APPEND_CLIENTS=${APPEND_CLIENTS:-"1 8 32"}
bench_start
S=$BENCH_DIR

psql_b <<'SQL'
CREATE EXTENSION evstore;
CREATE SEQUENCE plain_seq CACHE 1;
CREATE TABLE plain_events (LIKE evstore.events INCLUDING ALL);
CREATE SEQUENCE mdb_seq CACHE 1;
CREATE TABLE mdb_events (LIKE evstore.events INCLUDING ALL);

-- Message DB style append (see the header of bench/appends.sh)
CREATE FUNCTION mdb_append(p_stream text, p_type text, p_data jsonb,
                           p_metadata jsonb DEFAULT NULL, p_expected bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_category text := split_part(p_stream, '-', 1);
    v_version bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(v_category, 0));
    SELECT max(stream_version) INTO v_version FROM mdb_events WHERE stream_id = p_stream;
    v_version := coalesce(v_version, -1);
    IF p_expected IS NOT NULL AND p_expected <> v_version THEN
        RAISE EXCEPTION 'wrong expected version % (stream %, version %)', p_expected, p_stream, v_version
            USING ERRCODE = 'ES001';
    END IF;
    v_version := v_version + 1;
    INSERT INTO mdb_events (global_position, stream_id, stream_version, event_id, event_type,
                            data, metadata, recorded_at, category, stream_bucket)
    VALUES (nextval('mdb_seq'), p_stream, v_version, gen_random_uuid(), p_type,
            p_data, p_metadata, now(), v_category, (evstore.stream_hash(p_stream) % 256)::smallint);
    RETURN v_version;
END $$;

CREATE TABLE bench_batch AS
    SELECT jsonb_agg(jsonb_build_object('type', 'ItemAdded', 'data', jsonb_build_object('sku', 'sku-' || i, 'qty', i % 7))) AS batch
    FROM generate_series(1, 100) i;
VACUUM ANALYZE;
SQL

# distinct: own stream, own category per client
cat > $S/distinct_evstore.sql <<'P'
SELECT evstore.append_event('acct' || :client_id || '-1', 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
cat > $S/distinct_mdb.sql <<'P'
SELECT mdb_append('acct' || :client_id || '-1', 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
cat > $S/distinct_plain.sql <<'P'
\set v :v + 1
INSERT INTO plain_events VALUES (nextval('plain_seq'), 'acct' || :client_id || '-1', :v, gen_random_uuid(), 'Deposited', '{"amount": 10, "currency": "EUR"}', NULL, now(), 'acct' || :client_id, 7);
P
# hot: one category, random stream out of 100,000
cat > $S/hot_evstore.sql <<'P'
\set s random(1, 100000)
SELECT evstore.append_event('hot-' || :s, 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
cat > $S/hot_mdb.sql <<'P'
\set s random(1, 100000)
SELECT mdb_append('hot-' || :s, 'Deposited', '{"amount": 10, "currency": "EUR"}');
P
cat > $S/hot_plain.sql <<'P'
\set s random(1, 100000)
\set v :v + 1
INSERT INTO plain_events VALUES (nextval('plain_seq'), 'hot-' || :s, :v::bigint * 64 + :client_id, gen_random_uuid(), 'Deposited', '{"amount": 10, "currency": "EUR"}', NULL, now(), 'hot', 7);
P
# batch of 100 events, each client its own stream
cat > $S/batch_evstore.sql <<'P'
SELECT evstore.append_events('cart' || :client_id || '-1', batch) FROM bench_batch;
P
cat > $S/batch_mdb.sql <<'P'
BEGIN;
SELECT count(mdb_append('cart' || :client_id || '-1', e->>'type', e->'data')) FROM bench_batch, jsonb_array_elements(batch) e;
COMMIT;
P
cat > $S/batch_plain.sql <<'P'
\set v :v + 1
INSERT INTO plain_events
SELECT nextval('plain_seq'), 'cart' || :client_id || '-1', :v::bigint * 1000 + o - 1, gen_random_uuid(), e->>'type', e->'data', e->'metadata', now(), 'cart' || :client_id, 7
FROM bench_batch, jsonb_array_elements(batch) WITH ORDINALITY AS x(e, o);
P
chown postgres $S/*.sql

declare -A res raw
run_triple() {   # workload clients label
    local name=$1 clients=$2 label=$3 e=() m=() p=()
    for r in $(seq "$BENCH_ROUNDS"); do
        e+=("$(pgbench_tps $S/${name}_evstore.sql "$clients")")
        m+=("$(pgbench_tps $S/${name}_mdb.sql "$clients")")
        # distinct -D values per round and client keep plain (stream, version) unique
        p+=("$(pgbench_tps $S/${name}_plain.sql "$clients" -D v=$((RANDOM * 100000000 + r * 10000000)))")
    done
    local key="$name/$clients"
    res[$key.e]=$(median "${e[@]}"); res[$key.m]=$(median "${m[@]}"); res[$key.p]=$(median "${p[@]}")
    echo "  $label: evstore ${e[*]} | mdb ${m[*]} | plain ${p[*]}" >&2
    echo "RESULT,appends,$label,evstore,${res[$key.e]},tps,${e[*]}"
    echo "RESULT,appends,$label,messagedb-plpgsql,${res[$key.m]},tps,${m[*]}"
    echo "RESULT,appends,$label,plain-insert,${res[$key.p]},tps,${p[*]}"
    echo "RATIO,appends,$label,evstore/messagedb-plpgsql,$(ratio ${res[$key.e]} ${res[$key.m]})"
    echo "RATIO,appends,$label,evstore/plain-insert,$(ratio ${res[$key.e]} ${res[$key.p]})"
    rows+=("$label|${res[$key.e]}|${res[$key.m]}|${res[$key.p]}|$(ratio ${res[$key.e]} ${res[$key.m]})|$(ratio ${res[$key.e]} ${res[$key.p]})")
}

rows=()
for c in $APPEND_CLIENTS; do
    run_triple distinct "$c" "single-event append, $c clients, own streams"
    run_triple hot "$c" "single-event append, $c clients, one hot category"
done
run_triple batch 1 "append_events 100 events, 1 client"

echo
echo "evstore append benchmark (medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s, synchronous_commit=${BENCH_SYNC_COMMIT:-off}, $(nproc) cores)"
printf '%-52s %11s %11s %11s %9s %9s\n' test "evstore tps" "mdb tps" "plain tps" "vs mdb" "vs plain"
for row in "${rows[@]}"; do
    IFS='|' read -r l a b c d e <<<"$row"
    printf '%-52s %11s %11s %11s %9s %9s\n' "$l" "$a" "$b" "$c" "$d" "$e"
done
