-- The examples of README.md and docs/projections.md, as written there.
CREATE DATABASE proj_readme;
\c proj_readme
CREATE EXTENSION evstore;
SET datestyle = 'ISO, MDY';

-- README
CREATE TABLE my_page (order_id text PRIMARY KEY, status text DEFAULT 'placed',
                      total numeric(10,2), delivery_eta date, in_stock boolean);
SELECT evstore.create_sync_projection('my_page', 'my_page', 'order_id',
    key_source   => '$.order_id',
    delete_types => ARRAY['OrderCancelled'],
    column_map   => '{"eta": "delivery_eta"}',
    categories   => ARRAY['order', 'delivery', 'stock']);
SELECT stream_version FROM evstore.append_event('order-1001', 'OrderPlaced', '{"order_id": "1001", "total": 59.90}');
SELECT stream_version FROM evstore.append_event('stock-77', 'StockReserved', '{"order_id": "1001", "in_stock": true}');
SELECT stream_version FROM evstore.append_event('delivery-5', 'DeliveryScheduled',
    '{"order_id": "1001", "eta": "2026-12-01", "status": "shipping"}');
SELECT * FROM my_page;
SELECT evstore.drop_projection('my_page');
DROP TABLE my_page;

-- docs/projections.md
CREATE TABLE my_page (
    order_id     text PRIMARY KEY,
    status       text DEFAULT 'placed',
    total        numeric(10,2),
    items        integer,
    delivery_eta date,
    carrier      text,
    in_stock     boolean
);
SELECT evstore.create_sync_projection('my_page',
    target       => 'my_page',
    key_column   => 'order_id',
    key_source   => '$.order_id',
    delete_types => ARRAY['OrderCancelled'],
    column_map   => '{"eta": "delivery_eta"}',
    categories   => ARRAY['order', 'delivery', 'stock']);
SELECT stream_version FROM evstore.append_event('order-1002', 'OrderPlaced',
    '{"order_id": "1001", "total": 59.90, "items": 3}');
SELECT stream_version FROM evstore.append_event('stock-78', 'StockReserved',
    '{"order_id": "1001", "in_stock": true}');
SELECT stream_version FROM evstore.append_event('delivery-6', 'DeliveryScheduled',
    '{"order_id": "1001", "eta": "2026-12-01", "carrier": "DHL", "status": "shipping"}');
SELECT * FROM my_page;

CREATE TABLE order_counts (day date PRIMARY KEY, orders integer NOT NULL);
CREATE FUNCTION count_order(e evstore.events) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO public.order_counts VALUES (e.recorded_at::date, 1)
    ON CONFLICT (day) DO UPDATE SET orders = order_counts.orders + 1
$$;
CREATE FUNCTION reset_order_counts() RETURNS void
LANGUAGE sql AS 'TRUNCATE public.order_counts';
SELECT evstore.create_projection('order_counts', 'count_order(evstore.events)',
    categories     => ARRAY['order'],
    event_types    => ARRAY['OrderPlaced'],
    reset_function => 'reset_order_counts()');
-- history before the projection existed is replayed by a rebuild
SELECT evstore.rebuild_projection('order_counts');
SELECT orders FROM order_counts;
SELECT stream_version FROM evstore.append_event('order-1003', 'OrderPlaced', '{"order_id": "1003"}');
SELECT orders FROM order_counts;
SELECT stream_version FROM evstore.append_event('order-1003', 'OrderCancelled', '{"order_id": "1003"}');
SELECT order_id FROM my_page ORDER BY order_id;

\c contrib_regression
DROP DATABASE proj_readme;
