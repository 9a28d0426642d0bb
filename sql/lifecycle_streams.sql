-- Stream lifecycle: delete_stream, tombstone_stream and their markers
\set VERBOSITY default
\set SHOW_CONTEXT never
-- report the SQLSTATE of a failing statement in a stable way
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT stream_version FROM evstore.append_events('lcdel-1',
  '[{"type": "A", "data": {"n": 0}}, {"type": "B", "data": {"n": 1}}, {"type": "C", "data": {"n": 2}}]');

-- wrong expected version: ES001, nothing changes
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-1', 1)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-1', -1)$$);
SELECT evstore.stream_version('lcdel-1');

-- soft delete with the right expected version: the marker is version 3
SELECT stream_version FROM evstore.delete_stream('lcdel-1', 2);
SELECT evstore.stream_version('lcdel-1');
SELECT count(*) FROM evstore.read_stream('lcdel-1');
SELECT count(*) FROM evstore.read_stream('lcdel-1', NULL, NULL, true);
SELECT version, first_version, deleted_at IS NOT NULL AS deleted, tombstoned
  FROM evstore.streams WHERE stream_id = 'lcdel-1';
-- the marker is in the log, after the stream's last event
SELECT stream_version, event_type, data FROM evstore.events
  WHERE stream_id = 'lcdel-1' ORDER BY global_position;
SELECT e.event_type FROM evstore.read_all(
    (SELECT min(global_position) - 1 FROM evstore.events WHERE stream_id = 'lcdel-1'),
    10, ARRAY['lcdel']) e;

-- deleting again is a no-op (NULL result) unless a version is expected
SELECT evstore.delete_stream('lcdel-1') IS NULL AS noop;
SELECT evstore.delete_stream('lcdel-1', -1) IS NULL AS noop;
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-1', 3)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-1', -4)$$);
-- a stream that never existed
SELECT evstore.delete_stream('lcdel-none') IS NULL AS noop;
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-none', 0)$$);
SELECT count(*) FROM evstore.streams WHERE stream_id = 'lcdel-none';

-- appends to a soft-deleted stream continue after the marker
SELECT pg_temp.sqlstate_of($$SELECT evstore.append_event('lcdel-1', 'D', '{}', NULL, 3)$$);
SELECT stream_version FROM evstore.append_event('lcdel-1', 'D', '{"n": 4}', NULL, -1);
SELECT evstore.stream_version('lcdel-1');
SELECT stream_version, event_type FROM evstore.read_stream('lcdel-1');
SELECT stream_version, event_type FROM evstore.read_stream('lcdel-1', NULL, NULL, true);
SELECT version, first_version, deleted_at IS NOT NULL AS deleted
  FROM evstore.streams WHERE stream_id = 'lcdel-1';

-- delete with "stream exists" and with metadata on the marker
SELECT stream_version FROM evstore.delete_stream('lcdel-1', -4, '{"correlation_id": "lc-corr-del"}');
SELECT event_type, metadata FROM evstore.events
  WHERE stream_id = 'lcdel-1' ORDER BY global_position DESC LIMIT 1;

-- tombstone: permanent
SELECT stream_version FROM evstore.append_event('lcdel-2', 'A', '{}');
SELECT pg_temp.sqlstate_of($$SELECT evstore.tombstone_stream('lcdel-2', 5)$$);
SELECT stream_version FROM evstore.tombstone_stream('lcdel-2', 0);
SELECT evstore.stream_version('lcdel-2');
SELECT count(*) FROM evstore.read_stream('lcdel-2');
SELECT version, deleted_at IS NOT NULL AS deleted, tombstoned
  FROM evstore.streams WHERE stream_id = 'lcdel-2';
SELECT pg_temp.sqlstate_of($$SELECT evstore.append_event('lcdel-2', 'B', '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.append_event('lcdel-2', 'B', '{}', NULL, -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-2')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.tombstone_stream('lcdel-2')$$);
SELECT stream_version, event_type, data FROM evstore.events
  WHERE stream_id = 'lcdel-2' ORDER BY global_position;

-- tombstoning a stream that never existed reserves the name for good
SELECT stream_version FROM evstore.tombstone_stream('lcdel-3');
SELECT pg_temp.sqlstate_of($$SELECT evstore.append_event('lcdel-3', 'A', '{}')$$);
-- tombstoning a soft-deleted stream
SELECT stream_version FROM evstore.append_event('lcdel-4', 'A', '{}');
SELECT stream_version FROM evstore.delete_stream('lcdel-4');
SELECT pg_temp.sqlstate_of($$SELECT evstore.tombstone_stream('lcdel-4', 0)$$);
SELECT stream_version FROM evstore.tombstone_stream('lcdel-4', -1);
SELECT pg_temp.sqlstate_of($$SELECT evstore.append_event('lcdel-4', 'A', '{}')$$);

-- a rolled-back delete leaves the stream as it was
BEGIN;
SELECT stream_version FROM evstore.append_event('lcdel-5', 'A', '{}');
COMMIT;
BEGIN;
SELECT stream_version FROM evstore.delete_stream('lcdel-5');
SELECT evstore.stream_version('lcdel-5');
ROLLBACK;
SELECT evstore.stream_version('lcdel-5');
SELECT count(*) FROM evstore.events WHERE stream_id = 'lcdel-5';

-- bad input
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream(NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream(repeat('x', 2000))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-5', -3)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.tombstone_stream('lcdel-5', -7)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-5', NULL, '[1]')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.tombstone_stream(NULL)$$);
-- a read-only transaction cannot delete
BEGIN READ ONLY;
SELECT pg_temp.sqlstate_of($$SELECT evstore.delete_stream('lcdel-5')$$);
ROLLBACK;
-- the guard still refuses SQL updates of evstore.streams
SELECT pg_temp.sqlstate_of($$UPDATE evstore.streams SET deleted_at = now() WHERE stream_id = 'lcdel-5'$$);
