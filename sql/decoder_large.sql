-- evstore output plugin: TOASTed payloads and a transaction of 100,000 events
-- Runs in a database of its own, so that no other test sees these events.
\set regress_db :DBNAME
CREATE DATABASE decoder_large_db;
\c decoder_large_db
CREATE EXTENSION evstore;
\set SHOW_CONTEXT never
SELECT 'init' FROM pg_create_logical_replication_slot('dec_large', 'evstore');

-- ~256 kB of poorly compressible data and ~64 kB of metadata: stored out of line
SELECT stream_version FROM evstore.append_event('decbig-1', 'BlobStored',
    (SELECT jsonb_build_object('blob', string_agg(md5(i::text), ''), 'n', 1)
     FROM generate_series(1, 8000) i),
    (SELECT jsonb_build_object('trace', string_agg(md5((-i)::text), ''))
     FROM generate_series(1, 2000) i));
SELECT pg_column_size(data) > 100000 AS data_toasted,
       pg_column_size(metadata) > 20000 AS metadata_toasted
FROM evstore.events WHERE stream_id = 'decbig-1';
SELECT length(c.data) > 300000 AS long_line,
       (c.data::jsonb)->'data' = e.data AS data_intact,
       (c.data::jsonb)->'metadata' = e.metadata AS metadata_intact
FROM pg_logical_slot_peek_changes('dec_large', NULL, NULL) c
JOIN evstore.events e ON e.stream_id = 'decbig-1';
SELECT (c.data::jsonb)->'data' = e.data AS ce_data_intact,
       ((c.data::jsonb)->>'metadata')::jsonb = e.metadata AS ce_metadata_intact
FROM pg_logical_slot_peek_changes('dec_large', NULL, NULL, 'format', 'cloudevents') c
JOIN evstore.events e ON e.stream_id = 'decbig-1';
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('dec_large', NULL, NULL);

-- 100,000 events in one transaction (100 streams x 1,000), mixed with
-- changes of another table, then one more event in its own transaction
CREATE TABLE dec_noise (i int);
BEGIN;
SELECT sum(r.stream_version + 1) AS appended
FROM generate_series(1, 100) s,
     LATERAL evstore.append_events('decbulk-' || s,
        (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk', 'data', jsonb_build_object('i', i)))
         FROM generate_series(1, 1000) i)) r;
INSERT INTO dec_noise SELECT generate_series(1, 1000);
COMMIT;
SELECT stream_version FROM evstore.append_event('decbulk-after', 'After', '{}');

SELECT count(*) AS events,
       count(DISTINCT d->>'global_position') AS distinct_positions,
       count(DISTINCT d->>'xid') AS transactions,
       count(*) FILTER (WHERE d->>'stream_id' = 'decbulk-after') AS after
FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('dec_large', NULL, NULL)) c;
-- the same with transaction records and a filter that keeps everything
SELECT d->>'kind' AS kind, d->'events' AS events
FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('dec_large', NULL, NULL,
        'include-transaction', 'on', 'categories', 'decbulk')) c
WHERE d ? 'kind';
-- every stored event of the transaction came out exactly once, in order
SELECT count(*) AS matched, bool_and(c.pos = e.global_position) AS in_order
FROM (SELECT row_number() OVER () AS n, (data::jsonb->>'global_position')::bigint AS pos
      FROM pg_logical_slot_get_changes('dec_large', NULL, NULL, 'categories', 'decbulk')) c
JOIN (SELECT row_number() OVER (ORDER BY global_position) AS n, global_position
      FROM evstore.events WHERE category = 'decbulk') e USING (n);

SELECT pg_drop_replication_slot('dec_large');
DROP TABLE dec_noise;

\c :regress_db
DROP DATABASE decoder_large_db;
