-- Snapshots: save_snapshot, load_snapshot, delete_snapshot
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

SELECT stream_version FROM evstore.append_events('lcsnap-1',
  '[{"type": "Deposited", "data": {"amount": 10}},
    {"type": "Deposited", "data": {"amount": 5}},
    {"type": "Withdrawn", "data": {"amount": 3}}]');

-- no snapshot yet
SELECT count(*) FROM evstore.load_snapshot('lcsnap-1');

-- save the state after version 1, then load = snapshot + the rest of the stream
SELECT evstore.save_snapshot('lcsnap-1', 1, '{"balance": 15}');
SELECT * FROM evstore.load_snapshot('lcsnap-1');
WITH snap AS (SELECT * FROM evstore.load_snapshot('lcsnap-1'))
SELECT (SELECT (state->>'balance')::int FROM snap)
     + coalesce(sum(CASE e.event_type WHEN 'Deposited' THEN 1 ELSE -1 END
                    * (e.data->>'amount')::int), 0) AS balance
FROM evstore.read_stream('lcsnap-1', (SELECT stream_version + 1 FROM snap)) e;

-- a newer snapshot replaces it; an older one does not
SELECT evstore.save_snapshot('lcsnap-1', 2, '{"balance": 12}');
SELECT evstore.save_snapshot('lcsnap-1', 0, '{"balance": 10}');
SELECT * FROM evstore.load_snapshot('lcsnap-1');
-- the same version again overwrites (e.g. a corrected state)
SELECT evstore.save_snapshot('lcsnap-1', 2, '{"balance": 12, "v": 2}');
SELECT * FROM evstore.load_snapshot('lcsnap-1');
SELECT count(*) FROM evstore.snapshots WHERE stream_id = 'lcsnap-1';

-- a snapshot beyond the stream's version is refused
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-1', 3, '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-none', 0, '{}')$$);
-- bad input
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-1', -1, '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-1', NULL, '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-1', 1, NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot(NULL, 1, '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('', 1, '{}')$$);
SELECT count(*) FROM evstore.load_snapshot(NULL);

-- deleting the stream hides its snapshot; after a restart the old one stays hidden
SELECT stream_version FROM evstore.delete_stream('lcsnap-1');
SELECT count(*) FROM evstore.load_snapshot('lcsnap-1');
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-1', 2, '{}')$$);
SELECT stream_version FROM evstore.append_event('lcsnap-1', 'Deposited', '{"amount": 1}');
SELECT count(*) FROM evstore.load_snapshot('lcsnap-1');
-- versions of the deleted incarnation are refused
SELECT pg_temp.sqlstate_of($$SELECT evstore.save_snapshot('lcsnap-1', 2, '{}')$$);
SELECT evstore.save_snapshot('lcsnap-1', 4, '{"balance": 1}');
SELECT * FROM evstore.load_snapshot('lcsnap-1');

-- delete_snapshot
SELECT evstore.delete_snapshot('lcsnap-1');
SELECT evstore.delete_snapshot('lcsnap-1');
SELECT count(*) FROM evstore.load_snapshot('lcsnap-1');
