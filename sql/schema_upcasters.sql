-- Upcasters: every declarative operation, chains, function upcasters, raw
-- reads, and every reader (read_stream, read_all, subscription_fetch,
-- projections: dispatch and rebuild).  Stored events never change.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

-- events written before any upcaster exists (version 1: no schema_version)
SELECT stream_version FROM evstore.append_event('op-1', 'Renamed', '{"a": 1, "keep": true}');
SELECT stream_version FROM evstore.append_event('op-1', 'Moved', '{"a": {"b": 2}, "c": 3}');
SELECT stream_version FROM evstore.append_event('op-1', 'Copied', '{"a": "x"}');
SELECT stream_version FROM evstore.append_event('op-1', 'Dropped', '{"a": 1, "secret": "s"}');
SELECT stream_version FROM evstore.append_event('op-1', 'Added', '{"a": 1}');
SELECT stream_version FROM evstore.append_event('op-1', 'Added', '{"a": 1, "source": "api"}');
SELECT stream_version FROM evstore.append_event('op-1', 'Computed', '{"active": true}');
SELECT stream_version FROM evstore.append_event('op-1', 'Computed', '{"active": false}');
SELECT stream_version FROM evstore.append_event('op-1', 'Computed', '{}');
SELECT stream_version FROM evstore.append_event('op-1', 'Split', '{"name": "Ada King Lovelace"}');
SELECT stream_version FROM evstore.append_event('op-1', 'Split', '{"name": 42}');
SELECT stream_version FROM evstore.append_event('op-1', 'Merged', '{"street": "Main St", "no": 5}');
SELECT stream_version FROM evstore.append_event('op-1', 'TypeRenamed', '{"a": 1}', '{"correlation_id": "c1"}');
SELECT stream_version FROM evstore.append_event('op-1', 'Untouched', '{"a": 1}');

SELECT evstore.register_upcaster('Renamed', 1, 2, '[{"op": "rename", "from": "/a", "to": "/alpha"}]');
SELECT evstore.register_upcaster('Moved', 1, 2, '[{"op": "move", "from": "/a/b", "to": "/x/y/z"}, {"op": "rename", "from": "/missing", "to": "/nothing"}]');
SELECT evstore.register_upcaster('Copied', 1, 2, '[{"op": "copy", "from": "/a", "to": "/b"}]');
SELECT evstore.register_upcaster('Dropped', 1, 2, '[{"op": "drop", "path": "/secret"}]');
SELECT evstore.register_upcaster('Added', 1, 2, '[{"op": "add", "path": "/source", "value": "web"}, {"op": "add", "path": "/meta/tags", "value": ["t1"]}]');
SELECT evstore.register_upcaster('Computed', 1, 2, '[{"op": "add", "path": "/status", "from": "/active", "map": {"true": "active", "false": "inactive"}, "value": "unknown"}, {"op": "add", "path": "/was_active", "from": "/active"}]');
SELECT evstore.register_upcaster('Split', 1, 2, '[{"op": "split", "from": "/name", "to": ["/first", "/last"], "separator": " "}]');
SELECT evstore.register_upcaster('Merged', 1, 2, '[{"op": "merge", "from": ["/street", "/no"], "to": "/address", "separator": " "}]');
SELECT evstore.register_upcaster('TypeRenamed', 1, 2, to_event_type => 'TypeRenamedV2');

SELECT stream_version, event_type, data, metadata FROM evstore.read_stream('op-1');
-- raw reads: the stored events, as written
SET evstore.upcast = off;
SELECT stream_version, event_type, data, metadata FROM evstore.read_stream('op-1');
RESET evstore.upcast;
-- evstore.events itself is never changed
SELECT count(*) FILTER (WHERE metadata ? 'schema_version') AS stamped FROM evstore.events;

-- chains: v1 -> v2 -> v3, with a type rename in the middle
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"name": "Ada Lovelace", "mail": "ada@example.com"}');
SELECT evstore.register_upcaster('LeadCreated', 1, 2, '[{"op": "split", "from": "/name", "to": ["/first_name", "/last_name"]}]');
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"first_name": "Grace", "last_name": "Hopper", "mail": "g@example.com"}');
SELECT evstore.register_upcaster('LeadCreated', 2, 3, '[{"op": "rename", "from": "/mail", "to": "/contact/email"}]', 'LeadOpened');
SELECT evstore.register_upcaster('LeadOpened', 3, 4, '[{"op": "add", "path": "/channel", "value": "web"}]');
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadOpened', '{"first_name": "Alan", "last_name": "Turing", "contact": {"email": "a@example.com"}, "channel": "phone"}');
-- an explicit older version is upcast too
SELECT stream_version FROM evstore.append_event('lead-1', 'LeadCreated', '{"first_name": "Edsger", "last_name": "Dijkstra", "mail": "e@example.com"}', '{"schema_version": 2}');
SELECT stream_version, event_type, data, metadata FROM evstore.read_stream('lead-1');
SET evstore.upcast = off;
SELECT stream_version, event_type, data, metadata FROM evstore.read_stream('lead-1');
RESET evstore.upcast;
SELECT event_type, from_version, to_version, to_event_type, kind FROM evstore.upcasters ORDER BY 1, 2;

-- function upcasters: f(jsonb) -> jsonb and f(evstore.events) -> evstore.events
CREATE FUNCTION public.price_cents(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS
$$ SELECT (d - 'price') || jsonb_build_object('price_cents', round((d->>'price')::numeric * 100)) $$;
CREATE FUNCTION public.order_v2(e evstore.events) RETURNS evstore.events LANGUAGE plpgsql IMMUTABLE AS
$$ BEGIN e.event_type := 'OrderSubmitted'; e.data := e.data || '{"channel": "legacy"}'; RETURN e; END $$;
SELECT stream_version FROM evstore.append_event('order-1', 'PriceSet', '{"price": 12.34}');
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPlaced', '{"total": 5}');
SELECT evstore.register_upcaster('PriceSet', 1, 2, function => 'public.price_cents(jsonb)');
SELECT evstore.register_upcaster('OrderPlaced', 1, 2, function => 'public.order_v2(evstore.events)');
-- a declarative step after a function step
SELECT evstore.register_upcaster('OrderSubmitted', 2, 3, '[{"op": "rename", "from": "/total", "to": "/amount"}]');
SELECT stream_version, event_type, data, metadata FROM evstore.read_stream('order-1');
SELECT (evstore.upcast(e)).data FROM evstore.events e WHERE stream_id = 'order-1' ORDER BY stream_version;

-- every reader: read_all, subscription_fetch (takes read_all's shapes)
SELECT stream_id, stream_version, event_type, data FROM evstore.read_all(0) WHERE stream_id <> 'op-1';
SELECT evstore.create_subscription('sub-1');
SELECT stream_id, event_type, data FROM evstore.subscription_fetch('sub-1', 0, 100) WHERE stream_id = 'order-1';
SET evstore.upcast = off;
SELECT stream_id, event_type, data FROM evstore.subscription_fetch('sub-1', 0, 100) WHERE stream_id = 'order-1';
SELECT stream_id, event_type, data FROM evstore.read_all(0) WHERE stream_id = 'order-1';
RESET evstore.upcast;

-- projections see current shapes, on append and on rebuild (even with
-- evstore.upcast off in the session)
CREATE TABLE public.leads (stream_id text PRIMARY KEY, kind text, first_name text, email text, channel text);
CREATE FUNCTION public.lead_handler(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.leads VALUES (e.stream_id || '/' || e.stream_version, e.event_type,
        e.data->>'first_name', e.data->'contact'->>'email', e.data->>'channel');
END $$;
CREATE FUNCTION public.lead_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM public.leads $$;
SELECT evstore.create_projection('leads', 'public.lead_handler(evstore.events)', event_types => '{LeadOpened}', reset_function => 'public.lead_reset()');
SET evstore.upcast = off;
SELECT stream_version FROM evstore.append_event('lead-2', 'LeadCreated', '{"name": "Barbara Liskov", "mail": "b@example.com"}', '{"schema_version": 1}');
RESET evstore.upcast;
SELECT * FROM public.leads ORDER BY 1;
SELECT evstore.rebuild_projection('leads', 0);
SELECT * FROM public.leads ORDER BY 1;

-- replacing and dropping an upcaster takes effect for the next read
SELECT evstore.register_upcaster('Renamed', 1, 2, '[{"op": "rename", "from": "/a", "to": "/A"}]');
SELECT data FROM evstore.read_stream('op-1', 0, 1);
SELECT evstore.drop_upcaster('Renamed', 1), evstore.drop_upcaster('Renamed', 1);
SELECT data, metadata FROM evstore.read_stream('op-1', 0, 1);
-- transactional: a rolled-back registration never applies
BEGIN;
SELECT evstore.register_upcaster('Untouched', 1, 2, '[{"op": "drop", "path": "/a"}]');
SELECT data FROM evstore.read_stream('op-1', 13, 1);
ROLLBACK;
SELECT data FROM evstore.read_stream('op-1', 13, 1);

-- errors
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 1, '[]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 0, 2, '[]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('', 1, 2, '[]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[]', function => 'public.price_cents(jsonb)')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '{"op": "drop"}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[{"op": "explode"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[{"op": "drop", "path": "a"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[{"op": "rename", "from": "/a"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[{"op": "add", "path": "/a"}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[{"op": "split", "from": "/a", "to": []}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, '[{"op": "merge", "from": ["/a"], "to": "/b", "separator": ""}]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_upcaster('X', 1, 2, function => 'pg_catalog.lower(text)')$$);
CREATE FUNCTION public.null_upcaster(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
SELECT stream_version FROM evstore.append_event('bad-1', 'Nulled', '{}');
SELECT evstore.register_upcaster('Nulled', 1, 2, function => 'public.null_upcaster(jsonb)');
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('bad-1')$$);
SET evstore.upcast = off;
SELECT count(*) FROM evstore.read_stream('bad-1');
RESET evstore.upcast;
-- a dropped function
SELECT evstore.drop_upcaster('Nulled', 1);
SELECT evstore.register_upcaster('Nulled', 1, 2, function => 'public.price_cents(jsonb)');
DROP FUNCTION public.price_cents(jsonb);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('bad-1')$$);
SELECT evstore.drop_upcaster('Nulled', 1);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_stream('order-1')$$);
SELECT evstore.drop_upcaster('PriceSet', 1);
SELECT count(*) FROM evstore.read_stream('order-1');

-- a role allowed to write the catalog cannot make someone else the owner
-- of a function upcaster (it would run with that role's privileges)
CREATE ROLE regress_schema_admin;
GRANT USAGE ON SCHEMA evstore TO regress_schema_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON evstore.upcasters_catalog TO regress_schema_admin;
GRANT EXECUTE ON FUNCTION evstore.register_upcaster(text, integer, integer, jsonb, text, regprocedure),
    evstore._check_upcaster_steps(jsonb) TO regress_schema_admin;
SET ROLE regress_schema_admin;
SELECT code FROM pg_temp.err($$INSERT INTO evstore.upcasters_catalog (event_type, from_version, to_version, function, owner)
    VALUES ('Evil', 1, 2, 'public.order_v2(evstore.events)', (SELECT u.owner FROM evstore.upcasters_catalog u LIMIT 1))$$);
SELECT evstore.register_upcaster('Own', 1, 2, '[{"op": "drop", "path": "/x"}]');
SELECT owner FROM evstore.upcasters_catalog WHERE event_type = 'Own';
RESET ROLE;
SELECT evstore.drop_upcaster('Own', 1);
REVOKE ALL ON evstore.upcasters_catalog FROM regress_schema_admin;
REVOKE ALL ON FUNCTION evstore.register_upcaster(text, integer, integer, jsonb, text, regprocedure),
    evstore._check_upcaster_steps(jsonb) FROM regress_schema_admin;
REVOKE ALL ON SCHEMA evstore FROM regress_schema_admin;
DROP ROLE regress_schema_admin;

-- a function upcaster runs someone else's code in the reader's session:
-- every setting it changes is rolled back when it returns
CREATE FUNCTION public.leaky_upcaster(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('statement_timeout', '4711', false);
    PERFORM pg_catalog.set_config('search_path', 'public', false);
    RETURN d || '{"v": 2}';
END $$;
SELECT evstore.register_upcaster('Leaky', 1, 2, function => 'public.leaky_upcaster(jsonb)');
SELECT evstore.append_event('leaky-1', 'Leaky', '{}', '{"schema_version": 1}') IS NOT NULL AS appended;
SHOW statement_timeout;
SELECT data FROM evstore.read_stream('leaky-1');
SHOW statement_timeout;
SHOW search_path;
