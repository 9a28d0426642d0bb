#!/usr/bin/env bash
# Schema evolution benchmark (ratios measured side by side in one run):
#
#   no upcaster registered   read_stream of 1,000 events and a read_all page
#                            of 1,000 with upcasting on (the one cached check
#                            of the registry) vs evstore.upcast = off
#   3-step declarative chain read_stream of 1,000 events that each go
#                            through v1 -> v2 -> v3 -> v4 (rename, add, copy)
#                            vs the raw read (evstore.upcast = off)
#   validation on append     append_event of a 10-field object whose type
#                            has a registered schema (10 typed properties,
#                            required, additionalProperties false) vs a type
#                            without one
#
#   sudo sh -c 'make install && flock /tmp/evstore-install.lock env BENCH_PORT=5581 bench/schema.sh'
#   (BENCH_SECONDS, BENCH_ROUNDS; PG_BIN for another installation)
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
bench_start
S=$BENCH_DIR

echo "loading..." >&2
psql_b <<'SQL'
CREATE EXTENSION evstore;
-- 1,000 plain events, 1,000 events of an upcast type (10 fields each)
SELECT evstore.append_events('plain-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'Plain', 'data',
        jsonb_build_object('n', v, 'a', 'alpha', 'b', 2, 'c', true, 'd', 'delta', 'e', 5.5,
                           'f', 'foxtrot', 'g', 7, 'h', 'hotel', 'pad', repeat('x', 60)))) FROM generate_series(1, 1000) v));
SELECT evstore.append_events('chain-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'Chained', 'data',
        jsonb_build_object('n', v, 'a', 'alpha', 'b', 2, 'c', true, 'd', 'delta', 'e', 5.5,
                           'f', 'foxtrot', 'g', 7, 'h', 'hotel', 'pad', repeat('x', 60)))) FROM generate_series(1, 1000) v));
SELECT count(evstore.append_events('bg-' || s,
    (SELECT jsonb_agg(jsonb_build_object('type', 'Plain', 'data', jsonb_build_object('n', v, 'pad', repeat('y', 80)))) FROM generate_series(1, 100) v)))
FROM generate_series(1, 200) s;
VACUUM ANALYZE;
SQL

cat > $S/rs_on.sql <<'Q'
SET evstore.upcast = on;
SELECT * FROM evstore.read_stream('plain-1');
Q
cat > $S/rs_off.sql <<'Q'
SET evstore.upcast = off;
SELECT * FROM evstore.read_stream('plain-1');
Q
maxpos=$(psql_b -At -c "SELECT max(global_position) FROM evstore.events")
printf '%s\n%s\n%s\n' '\set p random(0, '$((maxpos - 2000))')' "SET evstore.upcast = on;" "SELECT * FROM evstore.read_all(:p, 1000);" > $S/ra_on.sql
printf '%s\n%s\n%s\n' '\set p random(0, '$((maxpos - 2000))')' "SET evstore.upcast = off;" "SELECT * FROM evstore.read_all(:p, 1000);" > $S/ra_off.sql
cat > $S/chain_on.sql <<'Q'
SET evstore.upcast = on;
SELECT * FROM evstore.read_stream('chain-1');
Q
cat > $S/chain_off.sql <<'Q'
SET evstore.upcast = off;
SELECT * FROM evstore.read_stream('chain-1');
Q
cat > $S/app_schema.sql <<'Q'
\set s random(1, 100000)
SELECT evstore.append_event('v-' || :s, 'Validated', '{"order_id": "0190b0b0-0000-7000-8000-000000000001", "amount": 12.5, "qty": 3, "currency": "EUR", "sku": "AB-12", "placed_at": "2026-01-31T12:00:00Z", "gift": false, "note": "leave at the door", "channel": "web", "customer": "c-42"}');
Q
sed 's/Validated/Unvalidated/' $S/app_schema.sql > $S/app_plain.sql
chown postgres $S/*.sql

rows=()
run_pair() {   # a b clients label
    local a=$1 b=$2 clients=$3 label=$4 x=() y=() mx my
    for r in $(seq "$BENCH_ROUNDS"); do
        x+=("$(pgbench_tps $S/$a.sql "$clients")")
        y+=("$(pgbench_tps $S/$b.sql "$clients")")
    done
    mx=$(median "${x[@]}"); my=$(median "${y[@]}")
    echo "  $label: $a ${x[*]} | $b ${y[*]}" >&2
    echo "RESULT,schema,$label,$a,$mx,tps,${x[*]}"
    echo "RESULT,schema,$label,$b,$my,tps,${y[*]}"
    # a cost ratio: how much longer the first takes (time = 1/tps)
    echo "RATIO,schema,$label,$a/$b (time),$(ratio $my $mx)"
    rows+=("$label|$mx|$my|$(ratio $my $mx)")
}

# 1. nothing registered
run_pair rs_on rs_off 2 "read_stream 1,000, none registered: on vs off"
run_pair ra_on ra_off 2 "read_all 1,000, none registered: on vs off"

# 2. a 3-step declarative chain
psql_b <<'SQL'
SELECT evstore.register_upcaster('Chained', 1, 2, '[{"op": "rename", "from": "/a", "to": "/alpha"}]');
SELECT evstore.register_upcaster('Chained', 2, 3, '[{"op": "add", "path": "/source", "value": "web"}]');
SELECT evstore.register_upcaster('Chained', 3, 4, '[{"op": "copy", "from": "/b", "to": "/bravo"}]');
SQL
run_pair chain_on chain_off 2 "read_stream 1,000 through 3 upcasters vs raw"
# upcasters registered, none for the type read
run_pair rs_on rs_off 2 "read_stream 1,000, other types upcast: on vs off"

# 3. validation on append
psql_b <<'SQL'
SELECT evstore.register_event_schema('Validated', 1, $${"type": "object",
  "required": ["order_id", "amount", "qty", "currency", "sku", "placed_at", "gift", "note", "channel", "customer"],
  "additionalProperties": false,
  "properties": {
    "order_id": {"type": "string", "format": "uuid"},
    "amount": {"type": "number", "minimum": 0},
    "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
    "currency": {"enum": ["EUR", "USD", "GBP"]},
    "sku": {"type": "string", "maxLength": 16},
    "placed_at": {"type": "string", "format": "date-time"},
    "gift": {"type": "boolean"},
    "note": {"type": ["string", "null"], "maxLength": 200},
    "channel": {"type": "string"},
    "customer": {"type": "string", "minLength": 1}}}$$);
SQL
run_pair app_schema app_plain 4 "append_event, 10-field schema vs none"

echo
echo "evstore schema evolution benchmark (medians of $BENCH_ROUNDS x ${BENCH_SECONDS}s, $(nproc) cores)"
printf '%-52s %12s %12s %12s\n' test "tps" "baseline tps" "time ratio"
for row in "${rows[@]}"; do
    IFS='|' read -r l a b c <<<"$row"
    printf '%-52s %12s %12s %12s\n' "$l" "$a" "$b" "$c"
done
