-- evstore output plugin: CloudEvents 1.0 JSON envelope
-- Runs in a database of its own, so that no other test sees these events.
\set regress_db :DBNAME
CREATE DATABASE decoder_cloudevents_db;
\c decoder_cloudevents_db
CREATE EXTENSION evstore;
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.changes(slot name, VARIADIC opts text[] DEFAULT '{}')
RETURNS TABLE (n bigint, lsn pg_lsn, xid xid, d jsonb)
LANGUAGE sql AS $$
  SELECT row_number() OVER (), lsn, xid, data::jsonb
  FROM pg_catalog.pg_logical_slot_peek_changes(slot, NULL, NULL, VARIADIC opts) $$;

SELECT 'init' FROM pg_create_logical_replication_slot('dec_ce', 'evstore');
SELECT stream_version FROM evstore.append_event('decship-7', 'ShipmentSent',
    '{"carrier": "DHL", "weight": 2.5}',
    '{"correlation_id": "corr-1", "causation_id": "cause-1", "user": {"id": 5}}', NULL,
    '00000000-0000-7000-8000-0000000000c1');
SELECT stream_version FROM evstore.append_event('decship-7', 'ShipmentLost', '[1, "two"]', NULL, NULL,
    '00000000-0000-7000-8000-0000000000c2');
SELECT stream_version FROM evstore.append_event('decship-8', 'ShipmentSent', '{}',
    '{"correlation_id": 42}', NULL, '00000000-0000-7000-8000-0000000000c3');

-- the envelope, volatile attributes removed
SELECT n, d - '{time,globalposition,streambucket,commitlsn,xid,committime}'::text[] AS cloudevent
FROM pg_temp.changes('dec_ce', 'format', 'cloudevents') ORDER BY n;

-- raw text: attribute order and layout
SELECT regexp_replace(data,
         '"(time|globalposition|streambucket|commitlsn|xid|committime)":("[^"]*"|[0-9]+)',
         '"\1":_', 'g') AS raw
FROM pg_logical_slot_peek_changes('dec_ce', NULL, NULL, 'format', 'cloudevents') LIMIT 1;

-- required attributes present; values agree with the stored rows;
-- every attribute name is lower-case alphanumeric (CloudEvents 1.0)
SELECT count(*) AS events,
       bool_and(c.d->>'specversion' = '1.0') AS specversion,
       bool_and((c.d->>'id')::uuid = e.event_id) AS id,
       bool_and(c.d->>'type' = e.event_type) AS type,
       bool_and(c.d->>'subject' = e.stream_id AND c.d->>'streamid' = e.stream_id) AS subject,
       bool_and((c.d->>'time')::timestamptz = e.recorded_at) AS time,
       bool_and(c.d->'data' = e.data) AS data,
       bool_and((c.d->>'streamversion')::bigint = e.stream_version) AS streamversion,
       bool_and(jsonb_typeof(c.d->'globalposition') = 'string') AS positions_are_strings,
       bool_and((c.d->>'streambucket')::int = e.stream_bucket) AS streambucket,
       bool_and((c.d->>'xid')::xid = c.xid) AS xid,
       bool_and((c.d->>'commitlsn')::pg_lsn > c.lsn) AS commitlsn,
       bool_and((c.d->>'time') ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$') AS rfc3339_utc,
       bool_and(c.d->>'metadata' IS NULL OR (c.d->>'metadata')::jsonb = e.metadata) AS metadata,
       bool_and(NOT EXISTS (SELECT 1 FROM jsonb_object_keys(c.d) k WHERE k !~ '^[a-z0-9]+$')) AS names_ok
FROM pg_temp.changes('dec_ce', 'format', 'cloudevents') c
JOIN evstore.events e ON e.global_position = (c.d->>'globalposition')::bigint;

-- options combine: source, filters, no metadata, transaction records
SELECT n, d->>'kind' AS kind, d->>'source' AS source, d->>'id' AS id,
       d ? 'metadata' AS has_metadata, d ? 'correlationid' AS has_correlationid
FROM pg_temp.changes('dec_ce', 'format', 'cloudevents', 'cloudevents-source', 'https://shop.example/"orders"',
                     'event-types', 'ShipmentSent', 'include-metadata', 'false',
                     'include-transaction', 'true') ORDER BY n;
SELECT n, d->>'id' AS id, d->>'source' AS default_source
FROM pg_temp.changes('dec_ce', 'format', 'cloudevents', 'categories', 'decship') ORDER BY n;

SELECT pg_drop_replication_slot('dec_ce');

\c :regress_db
DROP DATABASE decoder_cloudevents_db;
