-- The output plugin applies declarative upcasters as of the decoded point
-- of history: an upcaster applies to the events committed after it.  The
-- "upcast" option turns it off; CloudEvents carry dataschema.
\set regress_db :DBNAME
CREATE DATABASE schema_decoder_db TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
\c schema_decoder_db
CREATE EXTENSION evstore;
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.changes(slot name, VARIADIC opts text[] DEFAULT '{}')
RETURNS TABLE (d jsonb)
LANGUAGE sql AS $$
  SELECT data::jsonb - '{global_position,event_id,recorded_at,commit_lsn,confirm_lsn,xid,commit_time,id,time}'::text[]
  FROM pg_catalog.pg_logical_slot_peek_changes(slot, NULL, NULL, VARIADIC opts) $$;

SELECT 'init' FROM pg_create_logical_replication_slot('schema_dec', 'evstore');
-- written before the upcaster exists
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"name": "Ada Lovelace"}');
SELECT evstore.register_upcaster('LeadCreated', 1, 2, '[{"op": "split", "from": "/name", "to": ["/first", "/last"]}]');
-- written after it (an old writer: explicit version 1), and a current one
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"name": "Grace Hopper"}', '{"schema_version": 1}');
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"first": "Alan", "last": "Turing"}');
-- a function upcaster does not apply in the plugin
CREATE FUNCTION public.fn_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{"fn": true}' $$;
SELECT evstore.register_upcaster('LeadCreated', 2, 3, function => 'public.fn_up(jsonb)');
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"name": "Edsger Dijkstra"}', '{"schema_version": 1}');
SELECT * FROM pg_temp.changes('schema_dec');
SELECT * FROM pg_temp.changes('schema_dec', 'upcast', 'off');
-- SQL reads apply the upcasters registered now, to every event
SELECT data, metadata FROM evstore.read_stream('lead-1');
-- CloudEvents: dataschema when a schema is registered for the type and version
SELECT evstore.register_event_schema('OrderPlaced', 1, '{"type": "object"}');
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPlaced', '{"total": 1}');
SELECT stream_version FROM evstore.append_event('order-1', 'Order Shipped', '{}');
SELECT evstore.register_event_schema('Order Shipped', 1, '{"type": "object"}');
SELECT stream_version FROM evstore.append_event('order-1', 'Order Shipped', '{}');
SELECT d->>'type' AS type, d->>'dataschema' AS dataschema FROM pg_temp.changes('schema_dec', 'format', 'cloudevents') WHERE d->>'subject' = 'order-1';
SELECT * FROM pg_temp.changes('schema_dec', 'upcast', 'maybe');
SELECT 'drop' FROM pg_drop_replication_slot('schema_dec');
\c :regress_db
DROP DATABASE schema_decoder_db;
