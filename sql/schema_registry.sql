-- Event schema registry: versions recorded on append, validation of every
-- supported keyword with good and bad events, modes, errors.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text, OUT detail text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL;
END $$;

-- nothing registered: events are stored as given, no version recorded
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', '{"anything": 1}');
SELECT metadata FROM evstore.events;

SELECT evstore.register_event_schema('OrderPlaced', 1, $${
  "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "order placed",
  "type": "object",
  "required": ["order_id", "amount", "currency", "placed_at"],
  "properties": {
    "order_id": {"type": "string", "format": "uuid"},
    "amount": {"type": "number", "minimum": 0, "maximum": 100000},
    "qty": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 1000},
    "currency": {"enum": ["EUR", "USD"]},
    "kind": {"const": "retail"},
    "sku": {"type": "string", "minLength": 3, "maxLength": 8, "pattern": "^[A-Z]+-[0-9]+$"},
    "placed_at": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    "note": {"type": ["string", "null"]},
    "gift": {"type": "boolean"},
    "address": {"type": "object", "properties": {"zip": {"type": "string"}},
                "required": ["zip"], "additionalProperties": {"type": "string"}}
  },
  "additionalProperties": false
}$$);
\set good '{"order_id": "0190b0b0-0000-7000-8000-000000000001", "amount": 10.5, "qty": 2, "currency": "EUR", "kind": "retail", "sku": "AB-12", "placed_at": "2026-01-31T12:00:00.5+01:00", "tags": ["a"], "note": null, "gift": true, "address": {"zip": "10115", "city": "Berlin"}}'
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', :'good');
-- the version was recorded
SELECT metadata FROM evstore.events WHERE stream_version = 1;
SELECT evstore.validate_event('OrderPlaced', :'good');

-- every keyword broken once: the rule and the JSON pointer of the value
CREATE TEMP TABLE bad (n serial, patch jsonb);
INSERT INTO bad (patch) VALUES
  ('{"order_id": "not-a-uuid"}'), ('{"order_id": 7}'),
  ('{"amount": -1}'), ('{"amount": 100001}'), ('{"amount": "10"}'),
  ('{"qty": 1.5}'), ('{"qty": 0}'), ('{"qty": 1000}'),
  ('{"currency": "GBP"}'), ('{"kind": "wholesale"}'),
  ('{"sku": "AB"}'), ('{"sku": "ABCDE-123"}'), ('{"sku": "ab-12"}'),
  ('{"placed_at": "2026-02-30T12:00:00Z"}'), ('{"placed_at": "2026-01-31 noon"}'), ('{"placed_at": "2026-01-31T12:00:00"}'),
  ('{"tags": []}'), ('{"tags": ["a", "b", "c", "d"]}'), ('{"tags": ["a", 2]}'),
  ('{"note": 1}'), ('{"gift": "yes"}'),
  ('{"address": {"city": "Berlin"}}'), ('{"address": {"zip": "1", "floor": 3}}'),
  ('{"extra": 1}');
SELECT n, patch, evstore.validate_event('OrderPlaced', :'good'::jsonb || patch) FROM bad ORDER BY n;
SELECT evstore.validate_event('OrderPlaced', (:'good'::jsonb) - 'currency');
SELECT evstore.validate_event('OrderPlaced', '[1]');
-- an append of a bad event fails with ES901, names the event (its index in
-- the batch), the pointer and the rule; nothing of the batch is written
SELECT * FROM pg_temp.err(format($$SELECT evstore.append_events('o-1', '[{"type": "OrderPlaced", "data": %s}, {"type": "Other", "data": {}}, {"type": "OrderPlaced", "data": %s}]')$$,
    :'good', (:'good'::jsonb || '{"tags": ["a", 2]}')::text));
SELECT * FROM pg_temp.err(format($$SELECT evstore.append_event('o-1', 'OrderPlaced', %L)$$, (:'good'::jsonb || '{"amount": -5}')::text));
SELECT count(*) FROM evstore.events;

-- explicit versions: checked, and validated against that version
SELECT evstore.register_event_schema('OrderPlaced', 2, '{"type": "object", "required": ["total"]}');
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', '{"total": 1}');
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', :'good', '{"schema_version": 1, "correlation_id": "c"}');
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('o-1', 'OrderPlaced', '{}', '{"schema_version": 1}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('o-1', 'OrderPlaced', '{"total": 1}', '{"schema_version": 9}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('o-1', 'OrderPlaced', '{"total": 1}', '{"schema_version": "2"}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('o-1', 'OrderPlaced', '{"total": 1}', '{"schema_version": 1.5}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('o-1', 'OrderPlaced', '{"total": 1}', '{"schema_version": 0}')$$);
SELECT stream_version, data, metadata FROM evstore.read_stream('o-1');

-- modes: per type, and store-wide
SELECT evstore.set_schema_validation('OrderPlaced', 'warn');
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', '{"no_total": 1}');
SELECT evstore.set_schema_validation('OrderPlaced', 'off');
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', '{"no_total": 2}');
SELECT event_type, version, is_current, validation FROM evstore.event_schemas ORDER BY 1, 2;
SELECT evstore.set_schema_validation('OrderPlaced', NULL);
SET evstore.schema_validation = warn;
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', '{"no_total": 3}');
RESET evstore.schema_validation;
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('o-1', 'OrderPlaced', '{"no_total": 4}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.set_schema_validation('OrderPlaced', 'strict')$$);
-- unregistering: the highest remaining version is the current one again
SELECT evstore.unregister_event_schema('OrderPlaced', 2), evstore.unregister_event_schema('OrderPlaced', 2);
SELECT stream_version FROM evstore.append_event('o-1', 'OrderPlaced', :'good');
SELECT metadata FROM evstore.read_stream('o-1', 7);

-- bad schemas are refused at registration
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"type": "text"}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"oneOf": []}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"properties": {"a": 1}}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"pattern": "("}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"format": "email"}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"minLength": -1}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '{"required": [1]}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 0, '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('', 1, '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.register_event_schema('T', 1, '[]')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.validate_event('Unknown', '{}')$$);
-- boolean schemas
SELECT evstore.register_event_schema('Anything', 1, 'true');
SELECT evstore.register_event_schema('Nothing', 1, 'false');
SELECT evstore.validate_event('Anything', '[1, 2]'), evstore.validate_event('Nothing', '{}');
