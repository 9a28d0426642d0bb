-- Projections: handler and attribute-sync forms, filters, rollback,
-- failures and drop.  A database of its own keeps global positions (shown
-- in error contexts) independent of the other tests.
CREATE DATABASE proj_basic;
\c proj_basic
CREATE EXTENSION evstore;
\set VERBOSITY default

-- a handler projection that logs order events
CREATE TABLE order_log (stream_id text, version bigint, type text, data jsonb, who text);
CREATE FUNCTION log_event(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.order_log VALUES (e.stream_id, e.stream_version, e.event_type, e.data, current_user);
END $$;
SELECT evstore.create_projection('order_log', 'log_event(evstore.events)', categories => ARRAY['order']);

-- only paid orders, by event type
CREATE TABLE paid (stream_id text PRIMARY KEY, n int NOT NULL DEFAULT 1);
CREATE FUNCTION count_paid(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.paid VALUES (e.stream_id) ON CONFLICT (stream_id) DO UPDATE SET n = paid.n + 1;
END $$;
SELECT evstore.create_projection('paid', 'count_paid(evstore.events)', event_types => ARRAY['OrderPaid']);

SELECT stream_version FROM evstore.append_events('order-1',
    '[{"type": "OrderPlaced", "data": {"total": 10}}, {"type": "OrderPaid", "data": {}}, {"type": "OrderShipped", "data": {}}]');
SELECT stream_version FROM evstore.append_event('customer-1', 'OrderPaid', '{}');
SELECT stream_version FROM evstore.append_event('customer-1', 'CustomerRegistered', '{}');
-- in version order within the batch, only category "order"
SELECT stream_id, version, type, data FROM order_log ORDER BY stream_id, version;
SELECT * FROM paid ORDER BY stream_id;

-- rollback takes the read model with it
BEGIN;
SELECT stream_version FROM evstore.append_event('order-2', 'OrderPlaced', '{}');
SELECT count(*) FROM order_log WHERE stream_id = 'order-2';
ROLLBACK;
SELECT count(*) FROM order_log WHERE stream_id = 'order-2';

-- a failing handler aborts the append; nothing is half-applied
CREATE FUNCTION picky(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'bad' THEN
        RAISE EXCEPTION 'picky does not like %', e.data->>'bad' USING ERRCODE = 'P0001';
    END IF;
END $$;
SELECT evstore.create_projection('picky', 'picky(evstore.events)', categories => ARRAY['order']);
\set SHOW_CONTEXT always
SELECT evstore.append_events('order-3', '[{"type": "OrderPlaced", "data": {}}, {"type": "OrderPlaced", "data": {"bad": "this"}}]');
\set SHOW_CONTEXT errors
SELECT evstore.stream_version('order-3');
SELECT count(*) FROM order_log WHERE stream_id = 'order-3';
SELECT name, last_error, last_error_position IS NOT NULL AS has_pos FROM evstore.projections WHERE name = 'picky';
SELECT evstore.drop_projection('picky');

-- a projection cannot append
CREATE FUNCTION appender(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evstore.append_event('echo-1', 'Echo', '{}');
END $$;
SELECT evstore.create_projection('appender', 'appender(evstore.events)', categories => ARRAY['ping']);
SELECT evstore.append_event('ping-1', 'Ping', '{}');
SELECT evstore.drop_projection('appender');

-- ==== attribute sync: the "my page" read model ====
CREATE TABLE my_page (
    order_id     text PRIMARY KEY,
    status       text DEFAULT 'new',
    total        numeric(10,2),
    items        integer,
    delivery_eta date,
    in_stock     boolean,
    extra        jsonb,
    secret       text,
    created_by   text DEFAULT current_user,
    line         integer GENERATED ALWAYS AS (items * 2) STORED
);
SELECT evstore.create_sync_projection('my_page', 'my_page', 'order_id', '$.order_id',
    delete_types => ARRAY['OrderCancelled'],
    column_map => '{"eta": "delivery_eta", "secret": null}',
    categories => ARRAY['order', 'delivery', 'stock']);

SELECT stream_version FROM evstore.append_event('order-10', 'OrderPlaced',
    '{"order_id": "o10", "total": 12.5, "items": 3, "secret": "s3cr3t", "unknown": 1}');
SELECT order_id, status, total, items, delivery_eta, in_stock, extra, secret, created_by, line FROM my_page;
SELECT stream_version FROM evstore.append_event('delivery-7', 'DeliveryScheduled',
    '{"order_id": "o10", "eta": "2026-12-01", "status": "scheduled"}');
SELECT stream_version FROM evstore.append_event('stock-3', 'StockReserved',
    '{"order_id": "o10", "in_stock": true, "extra": {"warehouse": "A"}}');
-- an attribute set to null clears the column; absent attributes stay
SELECT stream_version FROM evstore.append_event('order-10', 'OrderEdited', '{"order_id": "o10", "total": null, "items": 4}');
SELECT order_id, status, total, items, delivery_eta, in_stock, extra, secret, created_by, line FROM my_page;
-- other categories are ignored
SELECT stream_version FROM evstore.append_event('audit-1', 'OrderPlaced', '{"order_id": "o99"}');
SELECT count(*) FROM my_page WHERE order_id = 'o99';

-- values that do not fit: clear errors, nothing written
\set SHOW_CONTEXT always
SELECT evstore.append_event('order-11', 'OrderPlaced', '{"order_id": "o11", "items": "many"}');
SELECT evstore.append_event('order-11', 'OrderPlaced', '{"order_id": "o11", "total": 123456789012}');
SELECT evstore.append_event('order-11', 'OrderPlaced', '{"total": 1}');
\set SHOW_CONTEXT errors
SELECT evstore.stream_version('order-11');
SELECT count(*) FROM my_page WHERE order_id = 'o11';

-- the sqlstate of a conversion failure is the input function's
DO $$
BEGIN
    PERFORM evstore.append_event('order-12', 'OrderPlaced', '{"order_id": "o12", "delivery_eta": "2026-12-01", "eta": "soon"}');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'sqlstate %', SQLSTATE;
END $$;

-- delete types remove the row
SELECT stream_version FROM evstore.append_event('order-13', 'OrderPlaced', '{"order_id": "o13"}');
SELECT order_id, status FROM my_page ORDER BY order_id;
SELECT stream_version FROM evstore.append_event('order-13', 'OrderCancelled', '{"order_id": "o13"}');
SELECT order_id FROM my_page ORDER BY order_id;

-- the key from the stream id, into a non-text key column; upsert types
CREATE TABLE counters (stream_id varchar(20) PRIMARY KEY, n integer);
SELECT evstore.create_sync_projection('counters', 'counters', 'stream_id', 'stream_id',
    upsert_types => ARRAY['Counted'], categories => ARRAY['counter']);
SELECT stream_version FROM evstore.append_event('counter-a', 'Counted', '{"n": 1}');
SELECT stream_version FROM evstore.append_event('counter-a', 'Ignored', '{"n": 99}');
SELECT stream_version FROM evstore.append_event('counter-a', 'Counted', '{"n": 2}');
SELECT stream_version FROM evstore.append_event('counter-b', 'Counted', '[1, 2]');
SELECT * FROM counters ORDER BY stream_id;

-- the target table changes: the cached plan follows
ALTER TABLE counters ADD COLUMN label text;
SELECT stream_version FROM evstore.append_event('counter-a', 'Counted', '{"n": 3, "label": "three"}');
SELECT * FROM counters ORDER BY stream_id;

-- the catalog view
SELECT name, kind, owner = current_user::regrole AS mine, target, key_column, key_source,
       categories, event_types, upsert_types, delete_types, events_processed,
       last_position IS NOT NULL AS has_position, last_error
  FROM evstore.projections ORDER BY name;

-- bad definitions
SELECT evstore.create_projection('paid', 'count_paid(evstore.events)');
SELECT evstore.create_projection('', 'count_paid(evstore.events)');
SELECT evstore.create_projection(repeat('x', 64), 'count_paid(evstore.events)');
SELECT evstore.create_projection('bad', 'evstore.category(text)');
SELECT evstore.create_projection('bad', 'count_paid(evstore.events)', event_types => ARRAY[]::text[]);
SELECT evstore.create_projection('bad', 'count_paid(evstore.events)', categories => ARRAY['a', NULL]);
SELECT evstore.create_projection('bad', NULL);
SELECT evstore.create_sync_projection('bad', 'my_page', 'nope', '$.order_id');
SELECT evstore.create_sync_projection('bad', 'my_page', 'status', '$.order_id');
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', 'order_id');
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', '$.a..b');
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', upsert_types => ARRAY['A'], delete_types => ARRAY['A']);
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', column_map => '{"a": "nope"}');
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', column_map => '{"a": 1}');
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', column_map => '[1]');
SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', column_map => '{"x": "order_id"}');
SELECT evstore.create_sync_projection('bad', 'evstore.streams', 'stream_id');
SELECT evstore.create_sync_projection('bad', 'evstore.projections', 'name');
CREATE TEMP TABLE temp_model (k text PRIMARY KEY);
SELECT evstore.create_sync_projection('bad', 'temp_model', 'k');
SELECT count(*) FROM evstore.projections WHERE name = 'bad';
-- their SQLSTATEs
CREATE FUNCTION sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT cmd, sqlstate_of(cmd) FROM (VALUES
    ($q$SELECT evstore.create_projection('paid', 'count_paid(evstore.events)')$q$),
    ($q$SELECT evstore.create_projection(repeat('x', 64), 'count_paid(evstore.events)')$q$),
    ($q$SELECT evstore.create_projection('bad', 'evstore.category(text)')$q$),
    ($q$SELECT evstore.create_projection('bad', 'count_paid(evstore.events)', categories => ARRAY['a', NULL])$q$),
    ($q$SELECT evstore.create_sync_projection('bad', 'my_page', 'nope', '$.order_id')$q$),
    ($q$SELECT evstore.create_sync_projection('bad', 'my_page', 'status', '$.order_id')$q$),
    ($q$SELECT evstore.create_sync_projection('bad', 'my_page', 'order_id', 'order_id')$q$),
    ($q$SELECT evstore.create_sync_projection('bad', 'evstore.streams', 'stream_id')$q$),
    ($q$SELECT evstore.create_sync_projection('bad', 'evstore.projections', 'name')$q$),
    ($q$SELECT evstore.append_event('order-11', 'OrderPlaced', '{"total": 1}')$q$),
    ($q$SELECT evstore.drop_projection('nope')$q$),
    ($q$SELECT evstore.rebuild_projection('paid', -1)$q$)
) AS t(cmd);

-- a dropped handler breaks only events that reach its projection
CREATE FUNCTION temp_handler(e evstore.events) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT evstore.create_projection('fragile', 'temp_handler(evstore.events)', categories => ARRAY['fragile']);
DROP FUNCTION temp_handler(evstore.events);
SELECT stream_version FROM evstore.append_event('sturdy-1', 'E', '{}');
SELECT evstore.append_event('fragile-1', 'E', '{}');
SELECT evstore.drop_projection('fragile');
SELECT stream_version FROM evstore.append_event('fragile-1', 'E', '{}');

-- definitions edited by hand are noticed at once; incomplete ones cannot run
INSERT INTO evstore.projections_catalog (name, kind, owner, categories)
VALUES ('manual_sync', 'sync', current_user::regrole, ARRAY['manual']),
       ('manual_handler', 'handler', current_user::regrole, ARRAY['manual']);
SELECT stream_version FROM evstore.append_event('elsewhere-1', 'E', '{}');
SELECT evstore.append_event('manual-1', 'E', '{}');
DELETE FROM evstore.projections_catalog WHERE name = 'manual_handler';
SELECT evstore.append_event('manual-1', 'E', '{}');
DELETE FROM evstore.projections_catalog WHERE name = 'manual_sync';
SELECT stream_version FROM evstore.append_event('manual-1', 'E', '{}');

-- drop
SELECT evstore.drop_projection('order_log');
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPlaced', '{"order_id": "o1"}');
SELECT count(*) FROM order_log WHERE stream_id = 'order-1';
SELECT evstore.drop_projection('order_log');
SELECT evstore.drop_projection('order_log', if_exists => true);
SELECT evstore.drop_projection(NULL);
SELECT evstore.drop_projection('paid'), evstore.drop_projection('my_page'), evstore.drop_projection('counters');
SELECT count(*) FROM evstore.projections;

\c contrib_regression
DROP DATABASE proj_basic;
