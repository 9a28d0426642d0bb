-- The raw stored event, reader by reader, as docs/schema-evolution.md
-- lists it: SET LOCAL for one read, a function's SET clause, and inside a
-- projection handler (current shapes always) the stored row by position.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
SELECT evstore.register_upcaster('Raw', 1, 2, '[{"op": "rename", "from": "/a", "to": "/b"}]');
SELECT evstore.append_event('raw-1', 'Raw', '{"a": 1}', '{"schema_version": 1}') IS NOT NULL AS appended;
-- one read
BEGIN;
SET LOCAL evstore.upcast = off;
SELECT data, metadata FROM evstore.read_stream('raw-1');
COMMIT;
SELECT data, metadata FROM evstore.read_stream('raw-1');
-- a function's SET clause
CREATE FUNCTION public.stored_data(s text) RETURNS SETOF jsonb LANGUAGE sql
    SET evstore.upcast = off AS $$ SELECT data FROM evstore.read_stream(s) $$;
SELECT * FROM public.stored_data('raw-1');
SHOW evstore.upcast;
-- a projection sees the current shape whatever the setting; its handler
-- reads the stored row by position, on append and on rebuild
CREATE TABLE public.raw_seen (upcast jsonb, stored jsonb);
CREATE FUNCTION public.raw_handler(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.raw_seen
    SELECT e.data, s.data FROM evstore.events s WHERE s.global_position = e.global_position;
END $$;
SELECT evstore.create_projection('raw_seen', 'public.raw_handler(evstore.events)', event_types => ARRAY['Raw']);
SET evstore.upcast = off;
SELECT evstore.append_event('raw-1', 'Raw', '{"a": 2}', '{"schema_version": 1}') IS NOT NULL AS appended;
SELECT * FROM public.raw_seen;
TRUNCATE public.raw_seen;
SELECT evstore.rebuild_projection('raw_seen', 0);
SELECT * FROM public.raw_seen ORDER BY stored->>'a';
RESET evstore.upcast;
SELECT evstore.drop_projection('raw_seen');
DROP TABLE public.raw_seen;
