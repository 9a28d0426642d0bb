-- evstore.stats: counters per database in shared memory (deltas after known
-- operations), horizon lag and the oldest open appender, projection and
-- subscription lag, evstore.track_stats, evstore.stats_reset, privileges.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'none';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- counters now, and what changed since the last call
CREATE TEMP TABLE last_counts AS
SELECT appends, events, conflicts, idempotent_retries, read_all_calls, read_all_events
FROM evstore.stats;
CREATE FUNCTION pg_temp.delta(OUT appends bigint, OUT events bigint, OUT conflicts bigint,
    OUT idempotent_retries bigint, OUT read_all_calls bigint, OUT read_all_events bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n record;
BEGIN
    SELECT s.appends, s.events, s.conflicts, s.idempotent_retries, s.read_all_calls, s.read_all_events
      INTO n FROM evstore.stats s;
    SELECT n.appends - l.appends, n.events - l.events, n.conflicts - l.conflicts,
           n.idempotent_retries - l.idempotent_retries, n.read_all_calls - l.read_all_calls,
           n.read_all_events - l.read_all_events
      INTO appends, events, conflicts, idempotent_retries, read_all_calls, read_all_events
      FROM last_counts l;
    UPDATE last_counts SET appends = n.appends, events = n.events, conflicts = n.conflicts,
        idempotent_retries = n.idempotent_retries, read_all_calls = n.read_all_calls,
        read_all_events = n.read_all_events;
END $$;

-- one row; nothing open, nothing behind
SELECT count(*) FROM evstore.stats;
SELECT last_position, horizon, horizon_lag_positions, horizon_lag_seconds, appenders,
       oldest_appender_pid, projections, subscriptions, subscription_max_lag,
       stats_reset <= clock_timestamp() AS reset_known
FROM evstore.stats;

-- appends and events
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPlaced', '{}');
SELECT * FROM pg_temp.delta();
SELECT stream_version FROM evstore.append_events('order-1',
    '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]');
SELECT * FROM pg_temp.delta();
-- an append_multi of two streams counts two appends
SELECT stream_id FROM evstore.append_multi('[
  {"stream_id": "order-2", "events": [{"type": "OrderPlaced", "data": {}}]},
  {"stream_id": "stock-1", "events": [{"type": "Reserved", "data": {}}]}]');
SELECT * FROM pg_temp.delta();
-- ES001, from append_event, append_multi and delete_stream
SELECT pg_temp.err($$SELECT evstore.append_event('order-1', 'X', '{}', NULL, 0)$$);
SELECT pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "order-2", "expected_version": -1, "events": [{"type": "X", "data": {}}]}]')$$);
SELECT pg_temp.err($$SELECT evstore.delete_stream('nothing-1', 3)$$);
SELECT * FROM pg_temp.delta();
-- an idempotent retry writes nothing and counts as a retry, not an append
SELECT stream_version FROM evstore.append_event('order-3', 'OrderPlaced', '{}', NULL, -1,
    '00000000-0000-7000-8000-000000000001');
SELECT stream_version FROM evstore.append_event('order-3', 'OrderPlaced', '{}', NULL, -1,
    '00000000-0000-7000-8000-000000000001');
SELECT * FROM pg_temp.delta();
-- a soft delete appends its marker
SELECT stream_version FROM evstore.delete_stream('order-3');
SELECT * FROM pg_temp.delta();
-- read_all calls and the events they returned (subscription_fetch too)
SELECT count(*) FROM evstore.read_all();
SELECT count(*) FROM evstore.read_all(0, 2);
SELECT count(*) FROM evstore.read_all(categories => '{stock}');
SELECT * FROM pg_temp.delta();
SELECT evstore.create_subscription('billing', ARRAY['order']);
SELECT count(*) FROM evstore.subscription_fetch('billing', 0, 100);
SELECT * FROM pg_temp.delta();
-- a rolled-back append stays counted (like pg_stat_database's counters)
BEGIN;
SELECT stream_version FROM evstore.append_event('order-9', 'OrderPlaced', '{}');
ROLLBACK;
SELECT * FROM pg_temp.delta();

-- evstore.track_stats = off: nothing is counted
SET evstore.track_stats = off;
SELECT stream_version FROM evstore.append_event('order-1', 'D', '{}');
SELECT pg_temp.err($$SELECT evstore.append_event('order-1', 'X', '{}', NULL, 0)$$);
SELECT count(*) FROM evstore.read_all();
SELECT * FROM pg_temp.delta();
RESET evstore.track_stats;

-- subscription lag: the horizon minus the acknowledged position
SELECT name, member, acked_position, horizon, lag_positions, consumer
FROM evstore.subscription_lag;
SELECT evstore.subscription_ack('billing', 0, 5);
SELECT evstore.create_subscription('groups', group_size => 2, start_position => evstore.read_all_horizon());
SELECT name, member, group_size, acked_position, lag_positions,
       seconds_since_ack >= 0 AS has_age
FROM evstore.subscription_lag;
SELECT subscriptions, subscription_max_lag = horizon - 5 AS max_lag_is_billing
FROM evstore.stats;

-- an appender in flight: this very transaction holds the horizon back
BEGIN;
SELECT stream_version FROM evstore.append_event('order-4', 'OrderPlaced', '{}');
SELECT horizon_lag_positions, horizon_lag_seconds >= 0 AS seconds_known, appenders,
       oldest_appender_pid = pg_backend_pid() AS oldest_is_me,
       oldest_appender_since = now() AS since_xact_start
FROM evstore.stats;
COMMIT;
SELECT horizon_lag_positions, horizon_lag_seconds, appenders FROM evstore.stats;

-- projections: how many, how many failed
CREATE TABLE public.order_count (n int);
INSERT INTO public.order_count VALUES (0);
CREATE FUNCTION public.count_orders(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type = 'Bad' THEN
        RAISE EXCEPTION 'bad event';
    END IF;
    UPDATE public.order_count SET n = n + 1;
END $$;
SELECT evstore.create_projection('order_count', 'public.count_orders(evstore.events)', ARRAY['order']);
SELECT projections, projections_failed, projection_last_error_at IS NULL AS no_error,
       projection_rebuild_lag FROM evstore.stats;
SELECT pg_temp.err($$SELECT evstore.append_event('order-5', 'Bad', '{}')$$);
SELECT projections, projections_failed, projection_last_error_at IS NOT NULL AS has_error
FROM evstore.stats;
SELECT evstore.drop_projection('order_count');

-- reset: counters of this database go back to zero
SELECT stats_reset AS before_reset FROM evstore.stats \gset
SELECT evstore.stats_reset();
SELECT appends, events, conflicts, idempotent_retries, read_all_calls, read_all_events,
       stats_reset > :'before_reset' AS reset_moved
FROM evstore.stats;

-- privileges: nothing for PUBLIC; pg_monitor may read the views
CREATE ROLE stats_nobody;
CREATE ROLE stats_monitor IN ROLE pg_monitor;
GRANT USAGE ON SCHEMA evstore TO stats_nobody, stats_monitor;
SET ROLE stats_nobody;
SELECT pg_temp.err($$SELECT * FROM evstore.stats$$);
SELECT pg_temp.err($$SELECT * FROM evstore.subscription_lag$$);
SELECT pg_temp.err($$SELECT evstore.stats_reset()$$);
RESET ROLE;
SET ROLE stats_monitor;
SELECT appends, subscriptions FROM evstore.stats;
SELECT count(*) FROM evstore.subscription_lag;
SELECT pg_temp.err($$SELECT evstore.stats_reset()$$);
SELECT pg_temp.err($$SELECT * FROM evstore._stats_counters()$$);
RESET ROLE;
SELECT pg_temp.err($$SET evstore.track_stats = off$$);
RESET evstore.track_stats;
SET ROLE stats_monitor;
SELECT pg_temp.err($$SET evstore.track_stats = off$$);
RESET ROLE;
DROP OWNED BY stats_nobody, stats_monitor;
DROP ROLE stats_nobody, stats_monitor;
DROP FUNCTION public.count_orders(evstore.events);
DROP TABLE public.order_count;
