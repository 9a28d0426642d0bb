#!/usr/bin/env bash
# Async projections (docs/projections.md, "Inline or async"), measured side
# by side in one run (medians of interleaved rounds):
#
#   appends    single-event append_event, each client on its own stream, in
#              database b_none (no projection) and b_async (one async handler
#              projection that matches every event, its worker running and
#              keeping up), rounds interleaved none, paused, async, none,
#              ... (paused: the same projection paused, so the append path
#              is measured without the worker's work competing for the
#              CPU); at 1 and at ASYNC_CLIENTS (8) clients.  Target: async/none >= 0.95
#              (the append does not pay for the projection; on a small
#              machine the worker's CPU competes with the appenders).
#   lag        during the async rounds at ASYNC_CLIENTS clients: lag_positions
#              and lag_seconds of evstore.projections sampled every 0.2 s
#              (median and max of the samples), and how long the worker took
#              to catch up after the appenders stopped.
#   throughput the same handler applied to a backlog of BACKLOG events:
#              async (paused while the backlog is appended, then resumed;
#              time until its checkpoint reaches the end) vs inline
#              (rebuild_projection of the same projection created inline,
#              which replays the same events through the same code in one
#              transaction), events/s.
#   wake-up    WAKE_SAMPLES (30) single appends at random moments: from the
#              commit to the projection's checkpoint passing the event, ms
#              (the worker sleeps until an append ends, at most
#              evstore.async_idle_wait).
#
# Output: a human table, and RESULT/RATIO lines for bench/run-all.sh.
#
#   sudo flock /tmp/evstore-install.lock sh -c 'make -s install && bench/async.sh'
#   (ASYNC_CLIENTS=8 BACKLOG=20000 BENCH_SECONDS=5 BENCH_ROUNDS=3 by default;
#    PG_CONFIG=... for another installation)
here=$(cd "$(dirname "$0")" && pwd)
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
source "$here/lib.sh"
ASYNC_CLIENTS=${ASYNC_CLIENTS:-8}
BACKLOG=${BACKLOG:-20000}
WAKE_SAMPLES=${WAKE_SAMPLES:-30}
bench_start "max_worker_processes = 16
evstore.async_databases = 'b_async, b_tput'"
S=$BENCH_DIR
psql_db() { local db=$1; shift; as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$S" -p "$BENCH_PORT" -d "$db" "$@"; }

for db in b_none b_async b_tput b_inline; do
    psql_b -c "CREATE DATABASE $db"
    psql_db $db <<'SQL'
CREATE EXTENSION evstore;
CREATE TABLE rm (stream_id text PRIMARY KEY, n bigint NOT NULL, last_position bigint, total bigint);
CREATE FUNCTION h(e evstore.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.rm VALUES (e.stream_id, 1, e.global_position, (e.data->>'x')::bigint)
    ON CONFLICT (stream_id) DO UPDATE
    SET n = rm.n + 1, last_position = excluded.last_position, total = rm.total + excluded.total
$$;
CREATE FUNCTION reset_rm() RETURNS void LANGUAGE sql AS 'TRUNCATE public.rm';
-- wait until projection p's checkpoint reaches target; returns when
CREATE FUNCTION wait_checkpoint(p text, target bigint) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN
    WHILE (SELECT acked_position FROM evstore.subscription_checkpoints
            WHERE subscription = 'projection:' || p AND member = 0) < target LOOP
        PERFORM pg_sleep(0.002);
    END LOOP;
    RETURN clock_timestamp();
END $$;
SQL
done
psql_db b_async -o /dev/null -c "SELECT evstore.create_projection('a', 'h(evstore.events)', async => true)"
psql_db b_tput -o /dev/null -c "SELECT evstore.create_projection('a', 'h(evstore.events)', async => true)"
psql_db b_inline -o /dev/null -c "SELECT evstore.create_projection('a', 'h(evstore.events)', reset_function => 'reset_rm()')"

cat > $S/append.sql <<'P'
SELECT evstore.append_event('bench-' || :client_id, 'Happened', '{"x": 1}');
P

pgbench_db() {   # pgbench_db DB CLIENTS -> tps
    local db=$1 clients=$2 tps
    tps=$(as_pg pgbench -n -h "$S" -p "$BENCH_PORT" -M prepared -c "$clients" -j "$clients" \
        -T "$BENCH_SECONDS" -f "$S/append.sql" "$db" 2>&1 |
        tee -a "$S/pgbench.log" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1) || true
    [ -n "$tps" ] || { echo "pgbench failed on $db" >&2; tail -5 "$S/pgbench.log" >&2; exit 1; }
    echo "$tps"
}
last_position() { psql_db "$1" -At -c "SELECT coalesce(max(global_position), 0) FROM evstore.events"; }

# --- appends: none vs one async projection; lag while it runs
declare -A TPS
lag_pos=(); lag_sec=(); catchup=()
for clients in 1 $ASYNC_CLIENTS; do
    none=(); async=(); paused=()
    for r in $(seq 1 "$BENCH_ROUNDS"); do
        none+=("$(pgbench_db b_none "$clients")")
        # the append path alone: the projection exists, its worker idles
        psql_db b_async -o /dev/null -c "SELECT evstore.pause_projection('a')"
        paused+=("$(pgbench_db b_async "$clients")")
        psql_db b_async -o /dev/null -c "SELECT evstore.resume_projection('a')"
        end=$(last_position b_async)
        psql_db b_async -o /dev/null -c "SELECT wait_checkpoint('a', $end)"
        # sample the lag while the appenders run
        if [ "$clients" = "$ASYNC_CLIENTS" ]; then
            (end=$((SECONDS + BENCH_SECONDS)); while [ $SECONDS -lt $end ]; do
                psql_db b_async -At -F ' ' -c "SELECT lag_positions, round(lag_seconds::numeric, 3) FROM evstore.projections WHERE name = 'a'"
                sleep 0.2; done) > "$S/lag.$r" &
            sampler=$!
        fi
        async+=("$(pgbench_db b_async "$clients")")
        if [ "$clients" = "$ASYNC_CLIENTS" ]; then
            wait $sampler
            while read -r p s; do lag_pos+=("$p"); lag_sec+=("$s"); done < "$S/lag.$r"
        fi
        # let the worker catch up before the next round (and time it)
        end=$(last_position b_async)
        catchup+=("$(psql_db b_async -At -c "SELECT extract(epoch FROM wait_checkpoint('a', $end) - now())")")
    done
    TPS[none_$clients]=$(median "${none[@]}")
    TPS[async_$clients]=$(median "${async[@]}")
    TPS[paused_$clients]=$(median "${paused[@]}")
done
if [ "$(psql_db b_async -At -c "SELECT (SELECT sum(n) FROM rm) = (SELECT count(*) FROM evstore.events)")" != t ]; then
    echo "the async read model does not count every event" >&2; exit 1
fi

# --- throughput on a backlog: async worker vs inline (rebuild)
tput_async=(); tput_inline=()
for r in $(seq 1 "$BENCH_ROUNDS"); do
    psql_db b_tput -o /dev/null -c "SELECT evstore.pause_projection('a')"
    psql_db b_tput -o /dev/null -c "SELECT count(evstore.append_event('bench-' || (i % 64), 'Happened', '{\"x\": 1}')) FROM generate_series(1, $BACKLOG) i"
    end=$(last_position b_tput)
    secs=$(psql_db b_tput -At <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT evstore.resume_projection('a');
SELECT extract(epoch FROM wait_checkpoint('a', $end) - :'t0'::timestamptz);
SQL
)
    secs=$(echo "$secs" | tail -1)
    tput_async+=("$(awk -v n="$BACKLOG" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')")

    psql_db b_inline -o /dev/null -c "SELECT count(evstore.append_event('bench-' || (i % 64), 'Happened', '{\"x\": 1}')) FROM generate_series(1, $BACKLOG) i"
    total=$(psql_db b_inline -At -c "SELECT count(*) FROM evstore.events")
    secs=$(psql_db b_inline -At <<SQL
SELECT clock_timestamp() AS t0 \gset
SELECT evstore.rebuild_projection('a', 0) AS n \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
SQL
)
    secs=$(echo "$secs" | tail -1)
    tput_inline+=("$(awk -v n="$total" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')")
done

# --- wake-up: one append at a time (at random moments, out of step with the
# worker's idle timer), from its commit to the projection's checkpoint
# passing it (wait_checkpoint polls every 2 ms)
wake=()
for i in $(seq 1 "$WAKE_SAMPLES"); do
    ms=$(psql_db b_async -At <<SQL
SELECT pg_sleep(random() * 0.15);
SELECT evstore.append_event('wake', 'Happened', '{"x": 1}') IS NOT NULL AS ok \gset
SELECT clock_timestamp() AS t0, max(global_position) AS p FROM evstore.events \gset
SELECT round(1000 * extract(epoch FROM wait_checkpoint('a', :p) - :'t0'::timestamptz), 1);
SQL
)
    wake+=("$(echo "$ms" | tail -1)")
done
m_wake=$(median "${wake[@]}"); x_wake=$(printf '%s\n' "${wake[@]}" | sort -g | tail -1)

m_lag_pos=$(median "${lag_pos[@]}"); x_lag_pos=$(printf '%s\n' "${lag_pos[@]}" | sort -g | tail -1)
m_lag_sec=$(median "${lag_sec[@]}"); x_lag_sec=$(printf '%s\n' "${lag_sec[@]}" | sort -g | tail -1)
m_catchup=$(median "${catchup[@]}")
m_async=$(median "${tput_async[@]}"); m_inline=$(median "${tput_inline[@]}")

echo
echo "Async projections ($(postgres --version | sed 's/.* //'), $(nproc) cores, median of $BENCH_ROUNDS rounds of ${BENCH_SECONDS}s)"
printf '%-34s %9s %9s %9s %8s %8s\n' "appends (tps)" none async paused async/none paused/none
for clients in 1 $ASYNC_CLIENTS; do
    printf '%-34s %9.0f %9.0f %9.0f %8s %8s\n' "append_event, $clients client(s)" "${TPS[none_$clients]}" \
        "${TPS[async_$clients]}" "${TPS[paused_$clients]}" \
        "$(ratio "${TPS[async_$clients]}" "${TPS[none_$clients]}")" "$(ratio "${TPS[paused_$clients]}" "${TPS[none_$clients]}")"
done
echo "(async: its worker applies the events meanwhile; paused: the same append path, the worker idle)"
echo
echo "lag of the async projection under $ASYNC_CLIENTS appending clients (${#lag_pos[@]} samples)"
printf '  lag_positions  median %s, max %s\n' "$m_lag_pos" "$x_lag_pos"
printf '  lag_seconds    median %s, max %s\n' "$m_lag_sec" "$x_lag_sec"
printf '  caught up %s s (median) after the appenders stopped\n' "$m_catchup"
echo
printf 'wake-up: single appends, commit to checkpoint, median %s ms, max %s ms (%s samples, evstore.async_idle_wait %s)\n' \
    "$m_wake" "$x_wake" "${#wake[@]}" "$(psql_b -At -c 'SHOW evstore.async_idle_wait')"
echo
printf 'throughput on a backlog of %s events: async %s events/s, inline (rebuild) %s events/s, ratio %s\n' \
    "$BACKLOG" "$m_async" "$m_inline" "$(ratio "$m_async" "$m_inline")"
echo
for clients in 1 $ASYNC_CLIENTS; do
    echo "RESULT,async,append_event-${clients}c,none,${TPS[none_$clients]},tps,"
    echo "RESULT,async,append_event-${clients}c,one-async-projection,${TPS[async_$clients]},tps,"
    echo "RESULT,async,append_event-${clients}c,async-projection-paused,${TPS[paused_$clients]},tps,"
    echo "RATIO,async,append_event-${clients}c,async/none,$(ratio "${TPS[async_$clients]}" "${TPS[none_$clients]}")"
    echo "RATIO,async,append_event-${clients}c,paused/none,$(ratio "${TPS[paused_$clients]}" "${TPS[none_$clients]}")"
done
echo "RESULT,async,lag-${ASYNC_CLIENTS}c,lag_positions,$m_lag_pos,positions,${lag_pos[*]}"
echo "RESULT,async,lag-${ASYNC_CLIENTS}c,lag_seconds,$m_lag_sec,s,${lag_sec[*]}"
echo "RESULT,async,wake-up,commit-to-checkpoint,$m_wake,ms,${wake[*]}"
echo "RESULT,async,backlog-$BACKLOG,async-worker,$m_async,events/s,${tput_async[*]}"
echo "RESULT,async,backlog-$BACKLOG,inline-rebuild,$m_inline,events/s,${tput_inline[*]}"
echo "RATIO,async,backlog-$BACKLOG,async/inline,$(ratio "$m_async" "$m_inline")"
