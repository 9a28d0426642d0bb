-- Async projections (docs/projections.md): the SQL surface.  This server
-- runs no async worker (evstore.async_databases is empty), so async
-- projections stay at their checkpoint: what inline dispatch and the view
-- do with them, their subscriptions, pause/resume and the errors.
CREATE DATABASE proj_async;
\c proj_async
CREATE EXTENSION evstore;
\set VERBOSITY default

CREATE TABLE counts (stream_id text PRIMARY KEY, n integer NOT NULL);
CREATE FUNCTION count_event(e evstore.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.counts VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = counts.n + 1
$$;
CREATE TABLE inline_counts (LIKE counts INCLUDING ALL);
CREATE FUNCTION count_inline(e evstore.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.inline_counts VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = inline_counts.n + 1
$$;
CREATE TABLE orders (order_id text PRIMARY KEY, status text);

SELECT stream_version FROM evstore.append_event('order-1', 'OrderPlaced', '{"order_id": "o1", "status": "new"}');

-- created async: a subscription named after it, from the start of history,
-- with the projection's filters (a sync projection's upsert and delete types)
SELECT evstore.create_projection('counter', 'count_event(evstore.events)',
    categories => ARRAY['order'], async => true);
SELECT evstore.create_projection('inline_counter', 'count_inline(evstore.events)',
    categories => ARRAY['order']);
SELECT evstore.create_sync_projection('orders', 'orders', 'order_id', '$.order_id',
    upsert_types => ARRAY['OrderPlaced'], delete_types => ARRAY['OrderDeleted'], async => true);
SELECT name, async, paused FROM evstore.projections_catalog ORDER BY name;
SELECT name, member, categories, event_types, acked_position FROM evstore.subscriptions ORDER BY name;

-- inline dispatch skips them: only the inline projection ran
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPaid', '{"order_id": "o1", "status": "paid"}');
SELECT stream_version FROM evstore.append_event('order-2', 'OrderPlaced', '{"order_id": "o2", "status": "new"}');
SELECT * FROM inline_counts ORDER BY stream_id;
SELECT count(*) FROM counts;
SELECT count(*) FROM orders;

-- the view: no worker serves this database, so they are stopped and lag
SELECT name, async, state, checkpoint, lag_positions, lag_seconds > 0 AS lags,
       worker_pid, failing_attempts, events_processed
  FROM evstore.projections ORDER BY name;
SELECT name, worker_pid, state, attempts FROM evstore.projection_async_status() ORDER BY name;

-- pause and resume: true when the state changed
SELECT evstore.pause_projection('counter');
SELECT evstore.pause_projection('counter');
SELECT name, paused, state FROM evstore.projections WHERE name = 'counter';
SELECT evstore.resume_projection('counter');
SELECT evstore.resume_projection('counter');
SELECT name, paused, state FROM evstore.projections WHERE name = 'counter';

-- errors
SELECT evstore.pause_projection('inline_counter');
SELECT evstore.resume_projection('nope');
SELECT evstore.pause_projection(NULL);
-- the subscription name is taken: the projection is not created
SELECT evstore.create_subscription('projection:taken');
SELECT evstore.create_projection('taken', 'count_event(evstore.events)', async => true);
SELECT count(*) FROM evstore.projections_catalog WHERE name = 'taken';
-- the worker's settings are server settings
SET evstore.async_workers = 4;
SET evstore.async_databases = 'proj_async';
ALTER SYSTEM SET evstore.async_batch_size = 0;
SELECT name, setting, unit, context FROM pg_settings
 WHERE name LIKE 'evstore.async%' ORDER BY name;

-- only the owner may pause and resume
CREATE ROLE regress_async_other;
GRANT USAGE ON SCHEMA evstore TO regress_async_other;
GRANT EXECUTE ON FUNCTION evstore.pause_projection(text) TO regress_async_other;
SET ROLE regress_async_other;
SELECT evstore.pause_projection('counter');
RESET ROLE;

CREATE FUNCTION sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT cmd, sqlstate_of(cmd) FROM (VALUES
    ($q$SELECT evstore.pause_projection('inline_counter')$q$),
    ($q$SELECT evstore.resume_projection('nope')$q$),
    ($q$SELECT evstore.pause_projection(NULL)$q$),
    ($q$SELECT evstore.create_projection('taken', 'count_event(evstore.events)', async => true)$q$),
    ($q$SET evstore.async_workers = 4$q$)
) AS t(cmd);

-- rebuild_projection of an async projection: it replays history up to the
-- read_all horizon, in its transaction, and sets the projection's
-- checkpoint there, so the worker goes on after it (nothing applied twice);
-- the subscription's holds go, a parked or waiting event included: the
-- replay applied it
SELECT global_position FROM evstore.subscription_fetch('projection:counter', 0, 1);
SELECT evstore.subscription_nack('projection:counter', 0, 1, 'boom', interval '1 hour');
SELECT stream_id, global_position, state FROM evstore.subscription_held WHERE subscription = 'projection:counter';
SELECT acked_position FROM evstore.subscriptions WHERE name = 'projection:counter';
SELECT evstore.rebuild_projection('counter', 0);
SELECT * FROM counts ORDER BY stream_id;
SELECT s.acked_position, s.acked_position = evstore.read_all_horizon() AS at_horizon
  FROM evstore.subscriptions s WHERE s.name = 'projection:counter';
SELECT count(*) FROM evstore.subscription_held WHERE subscription = 'projection:counter';
SELECT name, checkpoint, lag_positions FROM evstore.projections WHERE name = 'counter';
-- the worker's next batch starts after the checkpoint
SELECT count(*) FROM evstore.subscription_fetch('projection:counter', 0, 10);
-- the sync projection too
SELECT evstore.rebuild_projection('orders', 0);
SELECT * FROM orders ORDER BY order_id;
SELECT acked_position FROM evstore.subscriptions WHERE name = 'projection:orders';

-- dropping an async projection drops its subscription
SELECT evstore.drop_projection('counter');
SELECT evstore.drop_projection('orders');
SELECT name FROM evstore.subscriptions ORDER BY name;

\c contrib_regression
DROP DATABASE proj_async;
DROP ROLE regress_async_other;
