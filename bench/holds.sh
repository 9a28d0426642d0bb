#!/usr/bin/env bash
# Subscription failure handling benchmark: what a held stream costs
# subscription_fetch, measured side by side in one run (interleaved A,B,...,
# medians of BENCH_ROUNDS rounds of 50 fetches each):
#   A. a 1000-event fetch of a member that holds no stream back (the plain
#      read path: one extra index probe of evstore.subscription_holds);
#   B. the same fetch of a member holding one stream back (1% of the
#      events: a nacked event waiting for its retry), which checks every
#      event of the batch against the member's holds.
# Run as root inside the install lock:
#   flock /tmp/evstore-install.lock bench/holds.sh
# (expects evstore to be installed: make install, inside the same lock)
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

bench_start
psql_b <<'SQL'
CREATE EXTENSION evstore;
SELECT evstore.create_subscription('plain', ARRAY['b']);
SELECT evstore.create_subscription('held', ARRAY['b'], retry_delay => '1 hour');
SELECT count(evstore.append_event('b-' || (i % 100), 'E', '{}')) FROM generate_series(1, 20000) i;
SELECT evstore.subscription_nack('held', 0,
    (SELECT min(global_position) FROM evstore.events WHERE stream_id = 'b-1'), 'x', NULL, 'w');
CREATE FUNCTION fetch_ms(sub text, n integer) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp(); c bigint;
BEGIN
    FOR i IN 1 .. n LOOP
        SELECT count(*) INTO c FROM evstore.subscription_fetch(sub, 0, 1000, 'w');
        IF c <> 1000 THEN RAISE 'fetched %', c; END IF;
    END LOOP;
    RETURN round(extract(epoch FROM clock_timestamp() - t0) * 1000 / n, 3);
END $$;
SQL
plain=(); held=()
for _ in $(seq "$BENCH_ROUNDS"); do
    plain+=("$(psql_b -At -c "SELECT fetch_ms('plain', 50)")")
    held+=("$(psql_b -At -c "SELECT fetch_ms('held', 50)")")
done
p=$(median "${plain[@]}"); h=$(median "${held[@]}")
echo "subscription_fetch of 1000 events, ms per call (median of $BENCH_ROUNDS x 50):"
echo "  no held stream:  $p"
echo "  one held stream: $h"
echo "  ratio held/plain: $(ratio "$h" "$p")"
