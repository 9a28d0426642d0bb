#!/usr/bin/env bash
# Wake-up benchmark: time from an append's commit to a consumer getting the
# event, for a consumer that waits (subscription_fetch / read_all with a
# timeout) and one that polls every 100 ms (subscription_fetch without a
# timeout, pg_sleep(0.1) when it got nothing).  Side by side, one run.
#
# One appender commits one event at a time, WAKEUP_EVENTS times per mode,
# with a random pause of 5-45 ms between commits (so the consumer is idle
# when the commit comes, and the commits fall at random phases of the
# polling interval).  The commit time is the transaction's commit timestamp
# (track_commit_timestamp); the consumer notes clock_timestamp() as soon
# as the fetch has returned.  Both are the server's clock.
#
# Then what waiting costs the appenders: single-event appends (8 clients,
# pgbench) with no waiter vs with WAKEUP_WAITERS backends waiting in
# read_all on a category that never comes (each commit wakes all of them:
# they re-check and sleep again), interleaved, medians of BENCH_ROUNDS.
#
#   sudo flock -o /tmp/evstore-install.lock bench/wakeup.sh
#   (WAKEUP_EVENTS=300 per mode, WAKEUP_WAITERS=50; BENCH_SECONDS, BENCH_ROUNDS)
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
WAKEUP_EVENTS=${WAKEUP_EVENTS:-300}
WAKEUP_WAITERS=${WAKEUP_WAITERS:-50}
bench_start "track_commit_timestamp = on"
S=$BENCH_DIR

psql_b <<'SQL'
CREATE EXTENSION evstore;
CREATE TABLE public.latency (mode text, ms double precision);
-- one consumer: fetch (waiting or not), note when the rows arrived, ack, commit
CREATE PROCEDURE public.consume(mode text, n int) LANGUAGE plpgsql AS $$
DECLARE
    ps bigint[];
    t timestamptz;
    got int := 0;
BEGIN
    WHILE got < n LOOP
        IF mode = 'subscription_fetch, waiting' THEN
            SELECT array_agg(f.global_position), clock_timestamp() INTO ps, t
            FROM evstore.subscription_fetch('bench', 0, 100, 'c', interval '10 seconds') f;
        ELSIF mode = 'read_all, waiting' THEN
            SELECT array_agg(f.global_position), clock_timestamp() INTO ps, t
            FROM evstore.read_all((SELECT acked_position FROM evstore.subscription_checkpoints
                                   WHERE subscription = 'bench'), 100,
                                  timeout => interval '10 seconds') f;
        ELSE
            SELECT array_agg(f.global_position), clock_timestamp() INTO ps, t
            FROM evstore.subscription_fetch('bench', 0, 100, 'c') f;
        END IF;
        IF ps IS NULL THEN
            IF mode LIKE '%polling%' THEN
                PERFORM pg_sleep(0.1);
            END IF;
            CONTINUE;
        END IF;
        INSERT INTO public.latency
        SELECT mode, extract(epoch FROM t - pg_xact_commit_timestamp(e.xmin)) * 1000
        FROM evstore.events e WHERE e.global_position = ANY (ps);
        got := got + cardinality(ps);
        PERFORM evstore.subscription_ack('bench', 0, (SELECT max(p) FROM unnest(ps) p), 'c');
        COMMIT;
    END LOOP;
END $$;
CREATE PROCEDURE public.append(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        PERFORM pg_sleep(0.005 + random() * 0.04);
        PERFORM evstore.append_event('order-' || i, 'Placed', '{}');
        COMMIT;
    END LOOP;
END $$;
SELECT evstore.create_subscription('bench', ARRAY['order']);
SQL

for mode in 'subscription_fetch, waiting' 'read_all, waiting' 'subscription_fetch, polling every 100 ms'; do
    echo "measuring: $mode ($WAKEUP_EVENTS events)..." >&2
    psql_b -c "CALL public.consume('$mode', $WAKEUP_EVENTS)" &
    consumer=$!
    sleep 0.5
    psql_b -c "CALL public.append($WAKEUP_EVENTS)"
    wait $consumer
done

echo "wake-up latency, commit -> consumer has the event ($WAKEUP_EVENTS events each, ms)"
psql_b -P footer=off <<'SQL'
SELECT mode,
       count(*) AS events,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS median_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) AS p99_ms,
       round(max(ms)::numeric, 2) AS max_ms
FROM public.latency GROUP BY mode ORDER BY median_ms;
WITH m AS (SELECT mode, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS med FROM public.latency GROUP BY mode)
SELECT round((SELECT med FROM m WHERE mode LIKE '%polling%') /
             (SELECT med FROM m WHERE mode = 'subscription_fetch, waiting'))::numeric AS "polling median / waiting median";
SQL

# --- what the waiters cost the appenders
printf '%s\n' '\set s random(1, 100000)' "SELECT evstore.append_event('acct-' || :s, 'Deposited', '{}');" > $S/append.sql
waiting() { psql_b -At -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%never%'"; }
none=(); some=()
for r in $(seq 1 "$BENCH_ROUNDS"); do
    none+=("$(pgbench_tps $S/append.sql 8)")
    for i in $(seq 1 "$WAKEUP_WAITERS"); do
        psql_b -c "SELECT count(*) FROM evstore.read_all(0, categories => ARRAY['never'], timeout => '1 hour')" >/dev/null 2>&1 &
    done
    while [ "$(waiting)" -lt "$WAKEUP_WAITERS" ]; do sleep 0.1; done
    some+=("$(pgbench_tps $S/append.sql 8)")
    psql_b -At -c "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%never%'" >/dev/null
    wait
done
a=$(median "${none[@]}"); b=$(median "${some[@]}")
echo
echo "appends, 8 clients (tps, median of $BENCH_ROUNDS x ${BENCH_SECONDS}s): no waiter $a, $WAKEUP_WAITERS waiters $b, ratio $(ratio "$b" "$a")"
echo "  runs without: ${none[*]}"
echo "  runs with:    ${some[*]}"
