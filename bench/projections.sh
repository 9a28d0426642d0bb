#!/usr/bin/env bash
# Projection benchmark: the cost projections add to appends, measured side
# by side in one run (pgbench, one append per transaction, interleaved
# rounds, medians):
#
#   none      appends with no projection registered
#   sync      appends with one attribute-sync projection that matches every event
#   nomatch20 appends with 20 registered projections (10 handler, 10 sync),
#             none of which matches the event
#   copy      INSERT of the same event into a copy of evstore.events without
#             triggers (baseline of the trigger variant)
#   copy_trg  the same INSERT with a PL/pgSQL AFTER INSERT trigger doing the
#             same attribute sync generically (any data attribute -> same-named
#             column, through jsonb_populate_record and dynamic SQL)
#
# Ratios printed: sync/none and nomatch20/none (time per append), and the
# trigger's added cost over the sync projection's added cost.
#
# The same three append variants also run with batches of 50 events per
# append_events call, where the fixed cost of a transaction weighs less and
# the per-event cost of projections shows more.
#
#   sudo bench/projections.sh      (BENCH_SECONDS=2 BENCH_ROUNDS=11 BENCH_PORT=5541)
#
# It builds and installs evstore from this tree and runs its own server, all
# under the machine-wide install lock.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi
export PATH="/usr/lib/postgresql/15/bin:$PATH"
here=$(cd "$(dirname "$0")/.." && pwd)
PORT=${BENCH_PORT:-5541}
SECS=${BENCH_SECONDS:-2}
ROUNDS=${BENCH_ROUNDS:-11}

exec 9>/tmp/evstore-install.lock
flock 9

W=$(mktemp -d /tmp/projections-bench.XXXXXX)
as_pg() { runuser -u postgres -- "$@"; }
cleanup() { as_pg pg_ctl -D "$W/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

cp -a "$here"/. "$W/src"; rm -rf "$W/src/.git"; chown -R postgres "$W"
(cd "$W/src" && as_pg make -s clean >/dev/null 2>&1; as_pg make -s >/dev/null 2>&1 && make -s install >/dev/null)

as_pg initdb -D "$W/data" -A trust >/dev/null
cat "$here/test/evstore.conf" >> "$W/data/postgresql.conf"
cat >> "$W/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W'
shared_buffers = 256MB
synchronous_commit = off
checkpoint_timeout = 30min
max_wal_size = 4GB
CONF
as_pg pg_ctl -D "$W/data" -l "$W/log" -w start >/dev/null
psql_db() { local db=$1; shift; as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$W" -p "$PORT" -d "$db" "$@"; }

for db in b_none b_sync b_20; do
    psql_db postgres -c "CREATE DATABASE $db"
    psql_db $db <<'SQL'
CREATE EXTENSION evstore;
CREATE TABLE rm (order_id text PRIMARY KEY, status text, total numeric, items integer, note text);
SQL
done

psql_db b_sync -o /dev/null <<'SQL'
SELECT evstore.create_sync_projection('rm', 'rm', 'order_id', '$.order_id',
    delete_types => ARRAY['OrderCancelled'], categories => ARRAY['bench']);
SQL

psql_db b_20 -o /dev/null <<'SQL'
CREATE FUNCTION h(e evstore.events) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT evstore.create_projection('h' || i, 'h(evstore.events)', categories => ARRAY['other' || i])
  FROM generate_series(1, 10) i;
SELECT evstore.create_sync_projection('s' || i, 'rm', 'order_id', '$.order_id',
    categories => ARRAY['bench'], upsert_types => ARRAY['Other' || i])
  FROM generate_series(1, 10) i;
SQL

# the PL/pgSQL way, in b_none: a copy of evstore.events and a generic trigger
psql_db b_none <<'SQL'
CREATE TABLE copy_plain (LIKE evstore.events INCLUDING ALL);
CREATE TABLE copy_trg (LIKE evstore.events INCLUDING ALL);
CREATE SEQUENCE copy_seq CACHE 1;
CREATE TABLE rm_trg (LIKE rm INCLUDING ALL);
CREATE FUNCTION sync_rm() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cols text[];
BEGIN
    IF NEW.category <> 'bench' THEN RETURN NULL; END IF;
    IF NEW.event_type = 'OrderCancelled' THEN
        DELETE FROM public.rm_trg WHERE order_id = NEW.data->>'order_id';
        RETURN NULL;
    END IF;
    SELECT array_agg(quote_ident(a.attname::text)) INTO cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = 'public.rm_trg'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname <> 'order_id' AND NEW.data ? a.attname::text;
    IF cols IS NULL THEN
        INSERT INTO public.rm_trg (order_id) VALUES (NEW.data->>'order_id') ON CONFLICT DO NOTHING;
    ELSE
        EXECUTE format('INSERT INTO public.rm_trg AS t (order_id, %1$s) SELECT $2, %2$s FROM pg_catalog.jsonb_populate_record(NULL::public.rm_trg, $1) r '
                       'ON CONFLICT (order_id) DO UPDATE SET (%1$s) = ROW(%3$s)',
                       array_to_string(cols, ', '),
                       (SELECT string_agg('r.' || c, ', ') FROM unnest(cols) c),
                       (SELECT string_agg('EXCLUDED.' || c, ', ') FROM unnest(cols) c))
        USING NEW.data, NEW.data->>'order_id';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER copy_trg_sync AFTER INSERT ON copy_trg FOR EACH ROW EXECUTE FUNCTION sync_rm();
SQL

cat > "$W/append.sql" <<'P'
\set id random(1, 1000)
\set total random(1, 100000)
\set items random(1, 20)
SELECT evstore.append_event('bench-' || :id::int, 'OrderUpdated', jsonb_build_object('order_id', 'o' || :id::int, 'total', :total::int / 100.0, 'items', :items::int, 'status', 's' || :items::int));
P
cat > "$W/batch.sql" <<'P'
\set id random(1, 1000)
SELECT evstore.append_events('bench-' || :id::int, (SELECT jsonb_agg(jsonb_build_object('type', 'OrderUpdated', 'data', jsonb_build_object('order_id', 'o' || (:id::int * 100 + g % 20), 'total', g / 100.0, 'items', g, 'status', 's' || g))) FROM generate_series(1, 50) g));
P
cat > "$W/copy.sql" <<'P'
\set id random(1, 1000)
\set total random(1, 100000)
\set items random(1, 20)
INSERT INTO TABLE_NAME VALUES (nextval('copy_seq'), 'bench-' || :id::int, nextval('copy_seq'), gen_random_uuid(), 'OrderUpdated', jsonb_build_object('order_id', 'o' || :id::int, 'total', :total::int / 100.0, 'items', :items::int, 'status', 's' || :items::int), NULL, now(), 'bench', 7);
P
sed 's/TABLE_NAME/copy_plain/' "$W/copy.sql" > "$W/copy_plain.sql"
sed 's/TABLE_NAME/copy_trg/' "$W/copy.sql" > "$W/copy_trg.sql"
chown postgres "$W"/*.sql

tps() {   # db script -> transactions per second
    local out
    out=$(as_pg pgbench -n -h "$W" -p "$PORT" -M prepared -c 1 -T "$SECS" -f "$2" "$1" 2>&1) ||
        { echo "pgbench failed on $1 $2:" >&2; echo "$out" | grep -v "^ *$" | head -8 >&2; exit 1; }
    echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -a t_none t_sync t_20 t_copy t_trg b_none b_sync b_20
# warm-up
tps b_none "$W/append.sql" >/dev/null; tps b_sync "$W/append.sql" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
    t_none+=("$(tps b_none "$W/append.sql")")
    t_sync+=("$(tps b_sync "$W/append.sql")")
    t_20+=("$(tps b_20 "$W/append.sql")")
    t_copy+=("$(tps b_none "$W/copy_plain.sql")")
    t_trg+=("$(tps b_none "$W/copy_trg.sql")")
    b_none+=("$(tps b_none "$W/batch.sql")")
    b_sync+=("$(tps b_sync "$W/batch.sql")")
    b_20+=("$(tps b_20 "$W/batch.sql")")
    echo "round $r: none ${t_none[-1]} sync ${t_sync[-1]} nomatch20 ${t_20[-1]} copy ${t_copy[-1]} copy_trg ${t_trg[-1]} tps;" \
         "batches of 50: none ${b_none[-1]} sync ${b_sync[-1]} nomatch20 ${b_20[-1]} tps"
done
bnone=$(median "${b_none[@]}"); bsync=$(median "${b_sync[@]}"); b20=$(median "${b_20[@]}")

none=$(median "${t_none[@]}"); sync=$(median "${t_sync[@]}"); n20=$(median "${t_20[@]}")
copy=$(median "${t_copy[@]}"); trg=$(median "${t_trg[@]}")

# sanity: the two read models agree in shape (both were fed)
psql_db b_sync -At -c "SELECT 'sync read model rows: ' || count(*) FROM rm"
psql_db b_none -At -c "SELECT 'trigger read model rows: ' || count(*) FROM rm_trg"

awk -v none="$none" -v sync="$sync" -v n20="$n20" -v copy="$copy" -v trg="$trg" \
    -v bnone="$bnone" -v bsync="$bsync" -v b20="$b20" 'BEGIN {
    us = 1000000
    printf "median tps: none %.0f, sync %.0f, nomatch20 %.0f, copy %.0f, copy_trg %.0f\n", none, sync, n20, copy, trg
    printf "time per append: none %.1f us, sync %.1f us, nomatch20 %.1f us\n", us/none, us/sync, us/n20
    printf "time per insert: copy %.1f us, copy_trg %.1f us\n", us/copy, us/trg
    ps = us/sync - us/none; pt = us/trg - us/copy
    printf "ratio sync/none (time per append, target <= 1.3): %.2f\n", none/sync
    printf "ratio nomatch20/none (time per append, target <= 1.1): %.2f\n", none/n20
    printf "added cost: sync projection %.1f us, PL/pgSQL trigger %.1f us\n", ps, pt
    printf "ratio trigger/projection added cost (target >= 2): %.2f\n", pt/ps
    printf "ratio copy_trg/sync total time per write: %.2f\n", sync/trg
    printf "batches of 50 events, time per event: none %.1f us, sync %.1f us, nomatch20 %.1f us\n", us/bnone/50, us/bsync/50, us/b20/50
    printf "ratio sync/none in batches of 50: %.2f\n", bnone/bsync
    printf "ratio nomatch20/none in batches of 50: %.2f\n", bnone/b20
}'
