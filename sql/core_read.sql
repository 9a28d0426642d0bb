-- Reading: read_stream windows, read_all filters and consumer groups.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
SELECT count(*) FROM (
    SELECT evstore.append_event(s, t, jsonb_build_object('i', i))
    FROM (SELECT i,
                 (ARRAY['order-1', 'order-2', 'payment-1', 'shipment-9', 'inventory'])[1 + i % 5] AS s,
                 (ARRAY['Created', 'Updated', 'Closed'])[1 + i % 3] AS t
          FROM generate_series(0, 59) i) x
    ORDER BY i) y;

-- forwards, from a version, limited; backwards from the end and from a version
SELECT stream_version, data->>'i' AS i FROM evstore.read_stream('order-1');
SELECT stream_version FROM evstore.read_stream('order-1', 5);
SELECT stream_version FROM evstore.read_stream('order-1', 5, 3);
SELECT stream_version FROM evstore.read_stream('order-1', NULL, 2);
SELECT stream_version FROM evstore.read_stream('order-1', backwards => true);
SELECT stream_version FROM evstore.read_stream('order-1', 4, 3, true);
SELECT stream_version FROM evstore.read_stream('order-1', 100);
SELECT stream_version FROM evstore.read_stream('order-1', 100, 2, true);
SELECT stream_version FROM evstore.read_stream('order-1', 0, 0);
SELECT count(*) FROM evstore.read_stream('missing-1');
-- time travel: the state as of version n is read_stream(s, 0, n + 1)
SELECT max(stream_version) FROM evstore.read_stream('order-1', 0, 3 + 1);
-- read_stream returns whole evstore.events rows
SELECT (r).stream_id, (r).event_type FROM (SELECT r FROM evstore.read_stream('payment-1', 0, 1) r) s;

-- stream ids are exact (no pattern matching), bytes compared exactly
SELECT evstore.append_event('order-1%', 'Odd', '{}') IS NOT NULL;
SELECT count(*) FROM evstore.read_stream('order-1%');
SELECT evstore.stream_version('order-1'), evstore.stream_version('order-1%'), evstore.stream_version('ORDER-1');

-- read_all: global order, paging by position, max_count
SELECT count(*), min(global_position), max(global_position) FROM evstore.read_all();
SELECT global_position FROM evstore.read_all(0, 5);
SELECT global_position FROM evstore.read_all(5, 5);
SELECT count(*) FROM evstore.read_all(61);
SELECT count(*) FROM evstore.read_all(1000000);
SELECT evstore.read_all_horizon();
-- paging through everything gives every event once, in order
WITH RECURSIVE pages(after, n) AS (
    SELECT 0::bigint, 0
    UNION ALL
    SELECT (SELECT max(global_position) FROM evstore.read_all(after, 7)), n + 1
    FROM pages WHERE EXISTS (SELECT 1 FROM evstore.read_all(after, 1))
)
SELECT max(n) AS pages, max(after) AS last FROM pages;

-- filters: categories, event types, both
SELECT DISTINCT category FROM evstore.read_all(0, 1000, categories => ARRAY['order']) ORDER BY 1;
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order']);
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order', 'payment', 'order']);
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['inventory']);
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['nothing']);
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY[]::text[]);
SELECT count(*) FROM evstore.read_all(0, 1000, event_types => ARRAY['Closed']);
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order'], event_types => ARRAY['Closed', 'Created']);
SELECT count(*) FROM evstore.read_all(0, 1000, event_types => ARRAY[]::text[]);
-- merged category scans come back in global order and honour max_count
SELECT array_agg(global_position) = array_agg(global_position ORDER BY global_position) AS ordered
FROM evstore.read_all(0, 1000, categories => ARRAY['order', 'payment', 'shipment']);
SELECT count(*) FROM evstore.read_all(0, 4, categories => ARRAY['order', 'payment']);

-- consumer groups: every event goes to exactly one member, whole streams per member
SELECT g.size,
       (SELECT count(*) FROM evstore.events) AS total,
       sum(c.n) AS delivered
FROM (VALUES (1), (2), (3), (7)) g(size),
LATERAL (SELECT m, (SELECT count(*) FROM evstore.read_all(0, 1000, group_member => m, group_size => g.size)) n
         FROM generate_series(0, g.size - 1) m) c
GROUP BY g.size ORDER BY g.size;
SELECT count(DISTINCT m) AS members_per_stream
FROM (SELECT m, stream_id FROM generate_series(0, 2) m,
      LATERAL evstore.read_all(0, 1000, group_member => m, group_size => 3)) s
GROUP BY stream_id ORDER BY 1 DESC LIMIT 1;
SELECT stream_id, evstore.stream_hash(stream_id) % 256 % 3 AS member
FROM evstore.streams ORDER BY stream_id;
SELECT DISTINCT stream_id FROM evstore.read_all(0, 1000, group_member => 1, group_size => 3) ORDER BY 1;
SELECT array_agg(global_position) = array_agg(global_position ORDER BY global_position) AS ordered
FROM evstore.read_all(0, 1000, group_member => 0, group_size => 2);
SELECT (SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order', 'payment'], group_member => 0, group_size => 2))
     + (SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order', 'payment'], group_member => 1, group_size => 2))
     = (SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order', 'payment'])) AS split_filtered;
-- stream_hash is stable (FNV-1a): these values must never change
SELECT evstore.stream_hash('order-1'), evstore.stream_hash(''), evstore.stream_hash('한글-1');

-- consumer groups and categories are served by their indexes, not a filter over every row
SET stats_fetch_consistency = none;
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS bucket_scans FROM pg_stat_user_indexes WHERE indexrelname = 'events_bucket_position_idx' \gset
SELECT idx_scan AS category_scans FROM pg_stat_user_indexes WHERE indexrelname = 'events_category_position_idx' \gset
SELECT count(*) FROM evstore.read_all(0, 1000, group_member => 0, group_size => 4);
SELECT count(*) FROM evstore.read_all(0, 1000, categories => ARRAY['order', 'payment']);
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :bucket_scans AS bucket_index_scans FROM pg_stat_user_indexes WHERE indexrelname = 'events_bucket_position_idx';
SELECT idx_scan - :category_scans AS category_index_scans FROM pg_stat_user_indexes WHERE indexrelname = 'events_category_position_idx';
RESET stats_fetch_consistency;

-- an appending transaction holds read_all back only from its own positions on
BEGIN;
SELECT evstore.read_all_horizon() AS h0 \gset
SELECT global_position AS mine FROM evstore.append_event('order-1', 'Pending', '{}') \gset
SELECT evstore.read_all_horizon() = :mine - 1 AS held_below_mine;
SELECT count(*) = 1 AS listed FROM evstore.appenders() WHERE pid = pg_backend_pid() AND min_position = :mine;
COMMIT;
SELECT evstore.read_all_horizon() = :mine AS released;
SELECT count(*) FROM evstore.appenders();

-- a transaction that never appends holds nothing back
BEGIN;
SELECT txid_current() > 0 AS has_xid;
SELECT evstore.read_all_horizon() = :mine AS not_held;
COMMIT;
