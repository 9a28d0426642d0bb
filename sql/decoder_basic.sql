-- evstore output plugin: JSON format, filters, transaction records
-- Volatile fields (positions, ids, LSNs, xids, times) are checked with
-- predicates and removed from the printed JSON.
-- Runs in a database of its own, so that no other test sees these events.
\set regress_db :DBNAME
CREATE DATABASE decoder_basic_db TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
\c decoder_basic_db
CREATE EXTENSION evstore;
\set SHOW_CONTEXT never
SELECT now() AS t0 \gset

-- every change of a slot as jsonb, with the lsn and xid of the row
CREATE FUNCTION pg_temp.changes(slot name, VARIADIC opts text[] DEFAULT '{}')
RETURNS TABLE (n bigint, lsn pg_lsn, xid xid, d jsonb)
LANGUAGE sql AS $$
  SELECT row_number() OVER (), lsn, xid, data::jsonb
  FROM pg_catalog.pg_logical_slot_peek_changes(slot, NULL, NULL, VARIADIC opts) $$;
-- the same, with the volatile fields removed
CREATE FUNCTION pg_temp.stable(d jsonb) RETURNS jsonb
LANGUAGE sql AS $$ SELECT d - '{global_position,event_id,recorded_at,commit_lsn,confirm_lsn,xid,commit_time}'::text[] $$;

SELECT 'init' FROM pg_create_logical_replication_slot('dec_basic', 'evstore');
CREATE TABLE dec_other (id int PRIMARY KEY, note text);

-- one event, with characters JSON must escape and a fixed event id
SELECT stream_version FROM evstore.append_event('decorder-1', 'OrderPlaced',
    '{"total": 12.5, "note": "quote \" backslash \\ newline \n tab \t ü €"}',
    '{"correlation_id": "c-1", "causation_id": "k-1"}', NULL,
    '00000000-0000-7000-8000-000000000001');
-- a transaction mixing another table with a batch
BEGIN;
INSERT INTO dec_other VALUES (1, 'before');
SELECT stream_version FROM evstore.append_events('decinvoice-1',
    '[{"type": "InvoiceIssued", "data": {"n": 1}}, {"type": "InvoicePaid", "data": {"n": 2}}]');
INSERT INTO dec_other VALUES (2, 'after');
COMMIT;
-- only another table: nothing
INSERT INTO dec_other VALUES (3, 'alone');
-- rolled back: nothing
BEGIN;
SELECT stream_version FROM evstore.append_event('decorder-9', 'RolledBack', '{}');
ROLLBACK;
-- a rolled back subtransaction inside a committed transaction
BEGIN;
SELECT stream_version FROM evstore.append_event('decorder-2', 'A', '{}');
SAVEPOINT sp;
SELECT stream_version FROM evstore.append_event('decorder-2', 'B', '{"lost": true}');
ROLLBACK TO SAVEPOINT sp;
SELECT stream_version FROM evstore.append_event('decorder-2', 'C', '{}');
SAVEPOINT sp2;
SELECT stream_version FROM evstore.append_event('decorder-3', 'X', '"kept"');
RELEASE SAVEPOINT sp2;
COMMIT;
-- a stream id with a comma in its category
SELECT stream_version FROM evstore.append_event('dec,comma-1', 'Commaed', 'null');

-- everything, in commit order, volatile fields removed
SELECT n, pg_temp.stable(d) FROM pg_temp.changes('dec_basic') ORDER BY n;

-- the raw text of the first event (key order and layout), volatile values masked
SELECT regexp_replace(data,
         '"(global_position|event_id|recorded_at|commit_lsn|xid|commit_time)":("[^"]*"|[0-9]+)',
         '"\1":_', 'g') AS raw
FROM pg_logical_slot_peek_changes('dec_basic', NULL, NULL) LIMIT 1;

-- every event equals its row in evstore.events (all columns), and carries
-- the xid of its transaction, a commit LSN after its change and a commit time
SELECT count(*) AS events,
       count(*) FILTER (WHERE e.global_position IS NULL) AS unmatched,
       bool_and((c.d - '{commit_lsn,xid,commit_time,recorded_at}'::text[])
                = (to_jsonb(e) - 'recorded_at')) AS columns_match,
       bool_and((c.d->>'recorded_at')::timestamptz = e.recorded_at) AS recorded_at_matches,
       bool_and((c.d->>'xid')::xid = c.xid) AS xid_matches,
       bool_and((c.d->>'commit_lsn')::pg_lsn > c.lsn) AS commit_lsn_after_change,
       bool_and((c.d->>'commit_time')::timestamptz BETWEEN :'t0' AND clock_timestamp()) AS commit_time_ok,
       bool_and(c.d->>'event_id' = e.event_id::text) AS event_id_ok
FROM pg_temp.changes('dec_basic') c
LEFT JOIN evstore.events e ON e.global_position = (c.d->>'global_position')::bigint;

-- events of one transaction share its commit fields; positions increase
SELECT d->>'stream_id' AS stream_id, count(*) AS events,
       count(DISTINCT d->>'commit_lsn') AS commit_lsns,
       count(DISTINCT d->>'commit_time') AS commit_times
FROM pg_temp.changes('dec_basic') GROUP BY d->>'xid', d->>'stream_id' ORDER BY min(n);
SELECT bool_and(pos > prev) AS positions_increase
FROM (SELECT (d->>'global_position')::bigint AS pos,
             lag((d->>'global_position')::bigint, 1, 0::bigint) OVER (ORDER BY n) AS prev
      FROM pg_temp.changes('dec_basic')) s;

-- filters
SELECT n, d->>'stream_id' AS stream_id, d->>'event_type' AS event_type
FROM pg_temp.changes('dec_basic', 'categories', 'decinvoice') ORDER BY n;
SELECT n, d->>'stream_id' AS stream_id, d->>'event_type' AS event_type
FROM pg_temp.changes('dec_basic', 'categories', ' decorder , decinvoice ') ORDER BY n;
SELECT n, d->>'stream_id' AS stream_id, d->>'event_type' AS event_type
FROM pg_temp.changes('dec_basic', 'event-types', 'X,InvoicePaid,A') ORDER BY n;
SELECT n, d->>'stream_id' AS stream_id, d->>'event_type' AS event_type
FROM pg_temp.changes('dec_basic', 'categories', 'decorder', 'event-types', 'C,InvoicePaid') ORDER BY n;
SELECT n, d->>'stream_id' AS stream_id
FROM pg_temp.changes('dec_basic', 'categories', 'dec\,comma') ORDER BY n;
SELECT count(*) AS nothing FROM pg_temp.changes('dec_basic', 'categories', 'nosuchcategory');
SELECT count(*) AS nothing FROM pg_temp.changes('dec_basic', 'event-types', 'orderplaced');

-- include-metadata
SELECT n, d ? 'metadata' AS has_metadata, d->'metadata' AS metadata
FROM pg_temp.changes('dec_basic', 'include-metadata', 'false') ORDER BY n LIMIT 2;
SELECT n, d ? 'metadata' AS has_metadata, d->'metadata' AS metadata
FROM pg_temp.changes('dec_basic', 'include-metadata', 'on') ORDER BY n LIMIT 2;

-- include-transaction: begin and commit records around each transaction
-- with events (and only those that have events passing the filters)
SELECT n, coalesce(d->>'kind', 'event') AS kind, d->>'stream_id' AS stream_id,
       d->'events' AS events
FROM pg_temp.changes('dec_basic', 'include-transaction', 'true') ORDER BY n;
SELECT n, coalesce(d->>'kind', 'event') AS kind, d->>'stream_id' AS stream_id
FROM pg_temp.changes('dec_basic', 'include-transaction', 'on', 'categories', 'decinvoice') ORDER BY n;
-- records of one transaction agree; confirm_lsn is the end of the commit
SELECT count(*) AS commits,
       bool_and(c.d->>'commit_lsn' = b.d->>'commit_lsn') AS same_commit_lsn,
       bool_and(c.d->>'xid' = b.d->>'xid' AND (c.d->>'xid')::xid = c.xid) AS same_xid,
       bool_and(c.d->>'commit_time' = b.d->>'commit_time') AS same_commit_time,
       bool_and((c.d->>'confirm_lsn')::pg_lsn > (c.d->>'commit_lsn')::pg_lsn) AS confirm_after_commit,
       bool_and((c.d->>'confirm_lsn')::pg_lsn = c.lsn) AS confirm_is_row_lsn
FROM pg_temp.changes('dec_basic', 'include-transaction', 'yes') c
JOIN pg_temp.changes('dec_basic', 'include-transaction', 'yes') b
  ON b.d->>'kind' = 'begin' AND b.d->>'xid' = c.d->>'xid'
WHERE c.d->>'kind' = 'commit';
SELECT count(*) AS no_records FROM pg_temp.changes('dec_basic', 'include-transaction', 'false')
WHERE d ? 'kind';

-- get_changes consumes; nothing is left afterwards
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('dec_basic', NULL, NULL);
SELECT count(*) AS left_over FROM pg_logical_slot_get_changes('dec_basic', NULL, NULL);
-- transactions without events move the slot on
SELECT pg_current_wal_lsn() AS before_insert \gset
INSERT INTO dec_other VALUES (4, 'later');
SELECT count(*) AS nothing FROM pg_logical_slot_get_changes('dec_basic', NULL, NULL);
SELECT confirmed_flush_lsn > :'before_insert' AS slot_advanced
FROM pg_replication_slots WHERE slot_name = 'dec_basic';

-- text columns are escaped for JSON: quotes, backslashes, control
-- characters and non-ASCII survive the round trip
SELECT stream_version FROM evstore.append_event(E'dec"odd\\-\n\t\u0001ü€😀', E'Type "q" \\ \r', '{}');
SELECT (data::jsonb->>'subject') = E'dec"odd\\-\n\t\u0001ü€😀' AS ce_subject_round_trips
FROM pg_logical_slot_peek_changes('dec_basic', NULL, NULL, 'format', 'cloudevents');
SELECT (data::jsonb->>'stream_id') = E'dec"odd\\-\n\t\u0001ü€😀' AS stream_id_round_trips,
       (data::jsonb->>'event_type') = E'Type "q" \\ \r' AS event_type_round_trips,
       (data::jsonb->>'category') = E'dec"odd\\' AS category_round_trips,
       data ~ '[\n\r\t\x01]' AS raw_control_characters
FROM pg_logical_slot_get_changes('dec_basic', NULL, NULL);

SELECT pg_drop_replication_slot('dec_basic');
DROP TABLE dec_other;

\c :regress_db
DROP DATABASE decoder_basic_db;
