-- Append-only enforcement and privileges.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
SELECT evstore.append_event('guard-1', 'Created', '{"v": 1}') IS NOT NULL;

-- no UPDATE, DELETE or TRUNCATE, even for the superuser owner
UPDATE evstore.events SET data = '{}';
UPDATE evstore.events SET data = '{}' WHERE false;
DELETE FROM evstore.events;
TRUNCATE evstore.events;
UPDATE evstore.streams SET version = 100;
DELETE FROM evstore.streams;
TRUNCATE evstore.streams;
TRUNCATE evstore.streams, evstore.events CASCADE;
-- session_replication_role cannot switch the guard off
SET session_replication_role = replica;
DELETE FROM evstore.events;
UPDATE evstore.streams SET version = 100;
RESET session_replication_role;
-- nor can disabling or dropping the trigger, or a rule
ALTER TABLE evstore.events DISABLE TRIGGER events_append_only;
ALTER TABLE evstore.events DISABLE TRIGGER ALL;
ALTER TABLE evstore.events ENABLE TRIGGER events_append_only;
ALTER TABLE evstore.events ENABLE REPLICA TRIGGER events_append_only;
ALTER TABLE evstore.streams DISABLE TRIGGER USER;
DROP TRIGGER events_append_only ON evstore.events;
CREATE RULE no_delete AS ON DELETE TO evstore.events DO INSTEAD NOTHING;
-- the sequence must keep handing out positions one by one
ALTER SEQUENCE evstore.global_position_seq CACHE 10;
ALTER TABLE evstore.events ALTER COLUMN global_position SET DEFAULT 0;
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid IN ('evstore.events'::regclass, 'evstore.streams'::regclass) ORDER BY 1;
SELECT seqcache FROM pg_sequence WHERE seqrelid = 'evstore.global_position_seq'::regclass;
SELECT count(*) FROM evstore.events;

-- an ordinary role has no access at all until granted
CREATE ROLE evstore_app LOGIN;
CREATE ROLE evstore_reader LOGIN;
SET ROLE evstore_app;
SELECT * FROM evstore.events;
SELECT evstore.append_event('guard-2', 'T', '{}');
SELECT * FROM evstore.read_all();
RESET ROLE;
-- the documented grants for a writer and a reader
GRANT USAGE ON SCHEMA evstore TO evstore_app, evstore_reader;
GRANT EXECUTE ON FUNCTION evstore.append_event(text, text, jsonb, jsonb, bigint, uuid),
                          evstore.append_events(text, jsonb, bigint),
                          evstore.read_stream(text, bigint, bigint, boolean),
                          evstore.stream_version(text)
      TO evstore_app;
GRANT EXECUTE ON FUNCTION evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean, interval)
      TO evstore_reader;
GRANT SELECT ON evstore.events, evstore.streams TO evstore_reader;
SET ROLE evstore_app;
SELECT stream_version FROM evstore.append_event('guard-2', 'T', '{}');
SELECT count(*) FROM evstore.read_stream('guard-2');
SELECT * FROM evstore.events;
UPDATE evstore.events SET data = '{}';
SELECT * FROM evstore.read_all();
RESET ROLE;
SET ROLE evstore_reader;
SELECT count(*) FROM evstore.read_all();
SELECT count(*) FROM evstore.events;
DELETE FROM evstore.events;
SELECT evstore.append_event('guard-3', 'T', '{}');
RESET ROLE;
-- search_path tricks do not redirect evstore's functions
CREATE SCHEMA evil;
CREATE FUNCTION evil.category(text) RETURNS text LANGUAGE sql AS $$ SELECT 'evil' $$;
SET search_path = evil, public;
SELECT stream_version FROM evstore.append_event('safe-1', 'T', '{}');
SELECT category FROM evstore.streams WHERE stream_id = 'safe-1';
RESET search_path;
DROP SCHEMA evil CASCADE;
REVOKE ALL ON SCHEMA evstore FROM evstore_app, evstore_reader;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA evstore FROM evstore_app, evstore_reader;
REVOKE ALL ON ALL TABLES IN SCHEMA evstore FROM evstore_app, evstore_reader;
DROP ROLE evstore_app;
DROP ROLE evstore_reader;
