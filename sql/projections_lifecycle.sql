-- Projections and the lifecycle markers ($StreamDeleted, $StreamTombstoned)
-- that evstore.delete_stream and tombstone_stream append.
CREATE DATABASE proj_lifecycle;
\c proj_lifecycle
CREATE EXTENSION evstore;
\set VERBOSITY default

-- keyed by stream id: the marker named in delete_types removes the row
CREATE TABLE carts (stream_id text PRIMARY KEY, items integer);
SELECT evstore.create_sync_projection('carts', 'carts', 'stream_id',
    delete_types => ARRAY['$StreamDeleted', '$StreamTombstoned'], categories => ARRAY['cart']);
-- keyed by a data attribute, no filter on types: markers are not upserts
CREATE TABLE cart_items (cart text PRIMARY KEY, items integer);
SELECT evstore.create_sync_projection('cart_items', 'cart_items', 'cart', '$.cart',
    categories => ARRAY['cart']);
-- a handler without a type filter sees every event, markers included
CREATE TABLE seen (stream_id text, event_type text);
CREATE FUNCTION see(e evstore.events) RETURNS void LANGUAGE sql
    AS 'INSERT INTO public.seen VALUES (e.stream_id, e.event_type)';
SELECT evstore.create_projection('seen', 'see(evstore.events)', categories => ARRAY['cart']);

SELECT stream_version FROM evstore.append_event('cart-1', 'ItemAdded', '{"cart": "c1", "items": 1}');
SELECT stream_version FROM evstore.append_event('cart-2', 'ItemAdded', '{"cart": "c2", "items": 5}');
SELECT * FROM carts ORDER BY stream_id;
SELECT stream_version FROM evstore.delete_stream('cart-1');
SELECT stream_version FROM evstore.tombstone_stream('cart-2');
SELECT * FROM carts ORDER BY stream_id;
SELECT * FROM cart_items ORDER BY cart;
SELECT * FROM seen ORDER BY stream_id, event_type;
-- a marker named as an upsert type without its key is skipped too
SELECT evstore.drop_projection('cart_items');
SELECT evstore.create_sync_projection('cart_items', 'cart_items', 'cart', '$.cart',
    upsert_types => ARRAY['ItemAdded', '$StreamDeleted'], categories => ARRAY['cart']);
SELECT stream_version FROM evstore.append_event('cart-3', 'ItemAdded', '{"cart": "c3", "items": 2}');
SELECT stream_version FROM evstore.delete_stream('cart-3');
SELECT * FROM cart_items ORDER BY cart;
-- a rebuild replays the markers the same way
SELECT evstore.rebuild_projection('carts', 0), evstore.rebuild_projection('cart_items', 0);
SELECT * FROM carts ORDER BY stream_id;
SELECT * FROM cart_items ORDER BY cart;

\c contrib_regression
DROP DATABASE proj_lifecycle;
