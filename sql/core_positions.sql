-- The position sequence: an append never stores a position at or below one
-- already stored or covered by a horizon read_all returned; a sequence moved
-- backwards or altered is refused with ES010, and nothing is written.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END $$;
CREATE FUNCTION pg_temp.sqlstate_of(sql text) RETURNS text
LANGUAGE sql AS $$ SELECT code FROM pg_temp.err(sql) $$;
CREATE VIEW pg_temp.pos_events AS
    SELECT global_position, stream_id, stream_version, event_type FROM evstore.events ORDER BY 1;

SELECT global_position FROM evstore.append_event('pos-1', 'A', '{}');
SELECT global_position FROM evstore.append_event('pos-1', 'B', '{}');
SELECT global_position FROM evstore.append_event('pos-1', 'C', '{}');
SELECT evstore.read_all_horizon();

-- setval into the past, below stored positions: refused (it used to leak a
-- 23505 from the primary key), nothing written, the horizon stays
SELECT setval('evstore.global_position_seq', 1);
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('pos-1', 'D', '{}')$$);
SELECT * FROM pg_temp.err($$SELECT evstore.append_events('pos-2', '[{"type": "E", "data": {}}, {"type": "F", "data": {}}]')$$);
SELECT * FROM pg_temp.pos_events;
SELECT evstore.stream_version('pos-1'), evstore.stream_version('pos-2');
SELECT evstore.read_all_horizon();
SELECT count(*) FROM evstore.read_all(0);

-- after setval forward, as the hint says, appends work again
SELECT setval('evstore.global_position_seq', 3);
SELECT global_position, stream_version FROM evstore.append_event('pos-1', 'D', '{}');

-- setval into a gap: above every stored position, but below the horizon
-- read_all already returned (positions 5..7 were rolled back)
BEGIN;
SELECT global_position FROM evstore.append_events('pos-3', '[{"type": "G", "data": {}}, {"type": "G", "data": {}}, {"type": "G", "data": {}}]');
ROLLBACK;
SELECT evstore.read_all_horizon();
SELECT setval('evstore.global_position_seq', 5);
SELECT sqlstate_of AS into_gap FROM pg_temp.sqlstate_of($$SELECT evstore.append_event('pos-3', 'H', '{}')$$);
SELECT evstore.read_all_horizon();
SELECT max(global_position) FROM evstore.events;
SELECT setval('evstore.global_position_seq', 7);
SELECT global_position FROM evstore.append_event('pos-3', 'H', '{}');

-- a savepoint does not hide a position from the check
BEGIN;
SAVEPOINT s;
SELECT setval('evstore.global_position_seq', 2);
SELECT sqlstate_of AS in_savepoint FROM pg_temp.sqlstate_of($$SELECT evstore.append_event('pos-3', 'I', '{}')$$);
ROLLBACK TO SAVEPOINT s;
SELECT setval('evstore.global_position_seq', 8);
SELECT global_position FROM evstore.append_event('pos-3', 'I', '{}');
COMMIT;

-- the sequence's shape changed behind every DDL check (a superuser editing
-- pg_sequence): refused until it is restored
UPDATE pg_catalog.pg_sequence SET seqincrement = -1 WHERE seqrelid = 'evstore.global_position_seq'::regclass;
SELECT * FROM pg_temp.err($$SELECT evstore.append_event('pos-4', 'J', '{}')$$);
UPDATE pg_catalog.pg_sequence SET seqincrement = 1 WHERE seqrelid = 'evstore.global_position_seq'::regclass;
UPDATE pg_catalog.pg_sequence SET seqcycle = true WHERE seqrelid = 'evstore.global_position_seq'::regclass;
SELECT sqlstate_of AS with_cycle FROM pg_temp.sqlstate_of($$SELECT evstore.append_event('pos-4', 'J', '{}')$$);
UPDATE pg_catalog.pg_sequence SET seqcycle = false WHERE seqrelid = 'evstore.global_position_seq'::regclass;
SELECT setval('evstore.global_position_seq', 20);
SELECT global_position, stream_version FROM evstore.append_event('pos-4', 'J', '{}');

-- DDL that moves or reshapes the sequence is either refused by the DDL
-- guard, or, when it gets through, every append after it is refused
SELECT pg_temp.sqlstate_of($$ALTER SEQUENCE evstore.global_position_seq RESTART$$) AS restart \gset
SELECT :'restart' <> 'none' OR pg_temp.sqlstate_of($$SELECT evstore.append_event('pos-4', 'K', '{}')$$) = 'ES010' AS restart_refused;
SELECT setval('evstore.global_position_seq', 30);
SELECT pg_temp.sqlstate_of($$ALTER SEQUENCE evstore.global_position_seq SET UNLOGGED$$) AS unlogged \gset
SELECT :'unlogged' <> 'none' OR pg_temp.sqlstate_of($$SELECT evstore.append_event('pos-4', 'K', '{}')$$) = 'ES010' AS unlogged_refused;
SELECT pg_temp.sqlstate_of($$ALTER SEQUENCE evstore.global_position_seq SET LOGGED$$) IS NOT NULL AS restored;
SELECT pg_temp.sqlstate_of($$ALTER SEQUENCE evstore.global_position_seq INCREMENT BY -1$$) AS decrement \gset
SELECT :'decrement' <> 'none' OR pg_temp.sqlstate_of($$SELECT evstore.append_event('pos-4', 'K', '{}')$$) = 'ES010' AS decrement_refused;
SELECT pg_temp.sqlstate_of($$ALTER SEQUENCE evstore.global_position_seq INCREMENT BY 1$$) IS NOT NULL AS restored;
SELECT setval('evstore.global_position_seq', 40);
SELECT global_position, stream_version FROM evstore.append_event('pos-4', 'K', '{}');

-- nothing refused was written: versions have no holes, positions only grow
SELECT * FROM pg_temp.pos_events;
SELECT stream_id, version FROM evstore.streams ORDER BY 1;
