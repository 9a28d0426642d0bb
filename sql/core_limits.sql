-- Limits on identifiers: every name or id evstore keeps in a btree index is
-- at most 1024 bytes, and a longer one fails with a clear evstore error
-- (54000, the limit in DETAIL) instead of a raw "index row size exceeds
-- btree maximum".  Also: evstore.* is a reserved setting prefix.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
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
-- only the SQLSTATE (for errors whose message repeats a long argument)
CREATE FUNCTION pg_temp.code(sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'none';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
-- an incompressible text of n * 32 bytes (hex digits of md5 sums)
CREATE FUNCTION pg_temp.noise(n integer) RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(md5(g::text), '' ORDER BY g) FROM generate_series(1, n) g
$$;

-- metadata correlation_id / causation_id (indexed by events_correlation_idx
-- and events_causation_idx): up to 1024 bytes, whatever their JSON type
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('correlation_id', pg_temp.noise(200)))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('causation_id', pg_temp.noise(200)))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('correlation_id', repeat('c', 1025)))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('causation_id', jsonb_build_array(pg_temp.noise(40))))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('correlation_id', repeat('9', 1100)::numeric))$$);
-- in a batch, the error names the event
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('lim-1', jsonb_build_array(
    jsonb_build_object('type', 'T', 'data', '{}'),
    jsonb_build_object('type', 'T', 'data', '{}',
                       'metadata', jsonb_build_object('correlation_id', pg_temp.noise(200)))))$$);
\set SHOW_CONTEXT errors
SELECT evstore.append_events('lim-1', jsonb_build_array(
    jsonb_build_object('type', 'T', 'data', '{}'),
    jsonb_build_object('type', 'T', 'data', '{}',
                       'metadata', jsonb_build_object('correlation_id', repeat('c', 2000)))));
\set SHOW_CONTEXT never
-- nothing was written
SELECT count(*) FROM evstore.events;
-- 1024 bytes are accepted, incompressible or not; so are other JSON types
SELECT stream_version FROM evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('correlation_id', pg_temp.noise(32), 'causation_id', pg_temp.noise(32)));
SELECT stream_version FROM evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('correlation_id', repeat('c', 1024)));
SELECT stream_version FROM evstore.append_event('lim-1', 'T', '{}',
    '{"correlation_id": 42, "causation_id": null}');
SELECT stream_version FROM evstore.append_event('lim-1', 'T', '{}',
    '{"correlation_id": true, "causation_id": {"a": 1}}');
-- other metadata keys are not limited (only by evstore.max_event_size)
SELECT stream_version FROM evstore.append_event('lim-1', 'T', '{}',
    jsonb_build_object('note', pg_temp.noise(200)));
-- the marker of delete_stream / tombstone_stream is checked too
SELECT * FROM pg_temp.err($$SELECT evstore.delete_stream('lim-1', NULL,
    jsonb_build_object('correlation_id', pg_temp.noise(200)))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.tombstone_stream('lim-1', NULL,
    jsonb_build_object('causation_id', pg_temp.noise(200)))$$);
SELECT evstore.stream_version('lim-1'), count(*) FROM evstore.events;
-- and the lookups still find them
SELECT count(*) FROM evstore.read_correlated(pg_temp.noise(32));
SELECT count(*) FROM evstore.read_correlated(repeat('c', 1024));
SELECT count(*) FROM evstore.read_correlated(pg_temp.noise(200));
SELECT count(*) FROM evstore.events
  WHERE metadata ? 'causation_id' AND metadata ->> 'causation_id' = pg_temp.noise(32);

-- stream ids and event types (events_stream_version_key, streams_pkey,
-- events_category_position_idx): checked by the append (also in core_errors)
SELECT * FROM pg_temp.err($$SELECT evstore.append_event(pg_temp.noise(200), 'T', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('lim-2', pg_temp.noise(200), '{}')$$);
SELECT stream_version FROM evstore.append_event(pg_temp.noise(32), pg_temp.noise(32), '{}');

-- subscription names (subscription_checkpoints_pkey)
SELECT * FROM pg_temp.err($$SELECT evstore.create_subscription(pg_temp.noise(200))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.create_subscription(repeat('s', 1025))$$);
SELECT evstore.create_subscription(pg_temp.noise(32));
-- looking up an overlong name is not an error: there is no such subscription
SELECT pg_temp.code($$SELECT evstore.drop_subscription(pg_temp.noise(200))$$);
SELECT evstore.drop_subscription(pg_temp.noise(200), true);
-- consumer names: the same limit for subscription leases ...
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.subscription_fetch(pg_temp.noise(32), 0, 10,
    pg_temp.noise(200))$$);
SELECT * FROM pg_temp.err($$SELECT evstore.subscription_ack(pg_temp.noise(32), 0, 0,
    repeat('c', 1025))$$);
SELECT count(*) FROM evstore.subscription_fetch(pg_temp.noise(32), 0, 10, pg_temp.noise(32));
SELECT evstore.subscription_ack(pg_temp.noise(32), 0, 1, pg_temp.noise(32));
SELECT evstore.subscription_release(pg_temp.noise(32), 0, pg_temp.noise(200));
-- ... and for processed-message records (processed_messages_pkey)
SELECT * FROM pg_temp.err($$SELECT evstore.mark_processed(pg_temp.noise(200),
    '018f0000-0000-7000-8000-000000000001')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.mark_processed(repeat('c', 1025),
    '018f0000-0000-7000-8000-000000000001')$$);
SELECT evstore.mark_processed(pg_temp.noise(32), '018f0000-0000-7000-8000-000000000001');
SELECT evstore.is_processed(pg_temp.noise(32), '018f0000-0000-7000-8000-000000000001'),
       evstore.is_processed(pg_temp.noise(200), '018f0000-0000-7000-8000-000000000001');
SELECT evstore.prune_processed(pg_temp.noise(200), now());

-- snapshots (snapshots_pkey): only of an existing stream, so of a valid stream id
SELECT pg_temp.code($$SELECT evstore.save_snapshot(pg_temp.noise(200), 0, '{}')$$);
SELECT count(*) FROM evstore.load_snapshot(pg_temp.noise(200));

-- projection names (projections_catalog_pkey) and shredding subjects
-- (subject_keys_subject_idx) have their own checks
SELECT * FROM pg_temp.err($$SELECT evstore.create_projection(repeat('p', 64),
    'pg_catalog.now()'::regprocedure)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.protect('{"a": 1}', pg_temp.noise(200), '{a}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.forget(pg_temp.noise(200))$$);

-- evstore.* is a reserved prefix: a mistyped setting is an error, not a
-- silently ignored placeholder
SELECT * FROM pg_temp.err($$SET evstore.no_such_setting = 1$$);
SELECT * FROM pg_temp.err($$SET evstore.max_batch_event = 10$$);
SELECT * FROM pg_temp.err($$SELECT set_config('evstore.no_such_setting', '1', false)$$);
SELECT * FROM pg_temp.err($$ALTER ROLE CURRENT_USER SET evstore.no_such_setting = 1$$);
SELECT * FROM pg_temp.err(format('ALTER DATABASE %I SET evstore.no_such_setting = 1',
                                 current_database()));
SELECT * FROM pg_temp.err($$SHOW evstore.no_such_setting$$);
SELECT current_setting('evstore.no_such_setting', true) IS NULL AS unknown;
-- the real settings are unaffected
SET evstore.max_batch_events = 10;
SHOW evstore.max_batch_events;
RESET evstore.max_batch_events;
