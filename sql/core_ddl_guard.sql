-- Stored history cannot be rewritten or dropped by DDL, direct writes or a
-- mistaken DROP EXTENSION, for every role, the superuser owner included.
-- every test file starts from an empty store
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
SELECT stream_version FROM evstore.append_event('ddl-1', 'Created', '{"v": 1}');
SELECT stream_version FROM evstore.append_event('ddl-1', 'Changed', '{"v": 2}', '{"m": 1}');
CREATE TEMP TABLE before AS
  SELECT (SELECT string_agg(e::text, '|' ORDER BY global_position) FROM evstore.events e) AS events,
         (SELECT string_agg(s::text, '|' ORDER BY stream_id) FROM evstore.streams s) AS streams;
-- the catalog description of both tables (a function: no dependency on them)
CREATE FUNCTION shape() RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(concat_ws(' ', c.relname, c.relpersistence, c.relrowsecurity, c.relhastriggers,
         (SELECT string_agg(attname || ':' || atttypid::regtype || ':' || attnotnull, ',' ORDER BY attnum)
            FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0),
         (SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = c.oid),
         (SELECT count(*) FROM pg_policy WHERE polrelid = c.oid),
         (SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = c.oid),
         (SELECT count(*) FROM pg_rewrite WHERE ev_class = c.oid)), '; ' ORDER BY c.relname)
  FROM pg_class c WHERE c.oid IN ('evstore.events'::regclass, 'evstore.streams'::regclass) $$;
CREATE TEMP TABLE shape_before AS SELECT shape() AS shape;
CREATE FUNCTION forge() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.data := '{"forged": true}'; RETURN NEW; END $$;

\set VERBOSITY default
-- each of these is refused before it runs (42501), the superuser included
ALTER TABLE evstore.events ALTER COLUMN data TYPE jsonb USING '{"forged":true}';
\set VERBOSITY terse
ALTER TABLE evstore.events ALTER COLUMN stream_version TYPE bigint USING 7;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE evstore.events DROP COLUMN metadata;
ALTER TABLE evstore.events ADD COLUMN extra int;
ALTER TABLE evstore.streams ALTER COLUMN version TYPE bigint USING 99;
ALTER TABLE evstore.events SET UNLOGGED;
ALTER TABLE evstore.streams SET UNLOGGED;
ALTER TABLE evstore.events ALTER COLUMN metadata SET NOT NULL;
ALTER TABLE evstore.events ALTER COLUMN data DROP NOT NULL;
ALTER TABLE evstore.events ADD CONSTRAINT small CHECK (stream_version < 10);
ALTER TABLE evstore.events DROP CONSTRAINT events_event_id_key;
ALTER TABLE evstore.events RENAME COLUMN data TO payload;
ALTER TABLE evstore.events RENAME TO events_old;
ALTER TABLE evstore.events SET SCHEMA public;
ALTER TABLE evstore.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE evstore.events FORCE ROW LEVEL SECURITY;
ALTER TABLE evstore.events SET ACCESS METHOD heap;
CREATE POLICY hide ON evstore.events USING (false);
CREATE TRIGGER forge BEFORE INSERT ON evstore.events FOR EACH ROW EXECUTE FUNCTION forge();
CREATE TRIGGER forge BEFORE INSERT ON evstore.streams FOR EACH ROW EXECUTE FUNCTION forge();
CREATE RULE r AS ON INSERT TO evstore.events DO INSTEAD NOTHING;
CREATE INDEX ON evstore.events ((data->>'v'));
CREATE UNIQUE INDEX ON evstore.streams (category);
DROP INDEX evstore.events_category_position_idx;
ALTER INDEX evstore.events_pkey RENAME TO p;
-- DEPENDS ON EXTENSION would let dropping that extension drop the object
CREATE EXTENSION pg_freespacemap;
ALTER INDEX evstore.events_pkey DEPENDS ON EXTENSION pg_freespacemap;
ALTER TRIGGER events_append_only ON evstore.events DEPENDS ON EXTENSION pg_freespacemap;
ALTER FUNCTION evstore.guard_append_only() DEPENDS ON EXTENSION pg_freespacemap;
DROP EXTENSION pg_freespacemap;
DROP TRIGGER events_append_only ON evstore.events;
ALTER TABLE evstore.events DISABLE TRIGGER events_append_only;
CREATE TABLE child () INHERITS (evstore.events);
CREATE TABLE other (LIKE evstore.events);
ALTER TABLE other INHERIT evstore.events;
DROP TABLE other;
-- the position sequence cannot be moved or changed by DDL
ALTER SEQUENCE evstore.global_position_seq RESTART;
ALTER SEQUENCE evstore.global_position_seq INCREMENT BY -1;
ALTER SEQUENCE evstore.global_position_seq CACHE 10;
ALTER SEQUENCE evstore.global_position_seq CYCLE;
ALTER SEQUENCE evstore.global_position_seq AS integer;
ALTER SEQUENCE evstore.global_position_seq OWNED BY NONE;
ALTER SEQUENCE evstore.global_position_seq SET UNLOGGED;
ALTER SEQUENCE evstore.global_position_seq RENAME TO s;
-- nor evstore's functions, event trigger or membership
CREATE OR REPLACE FUNCTION evstore.guard_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION evstore.helper() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION evstore.stream_hash(text) RENAME TO h;
ALTER FUNCTION evstore.category(text) SECURITY DEFINER;
ALTER EVENT TRIGGER evstore_guard_ddl DISABLE;
ALTER EXTENSION evstore DROP TABLE evstore.events;
ALTER SCHEMA evstore RENAME TO evstore_old;
CREATE OR REPLACE VIEW evstore.subscriptions AS SELECT 1 AS x;
ALTER TYPE evstore.append_result ADD ATTRIBUTE x int;
-- nothing was changed
SELECT (SELECT events FROM before) = (SELECT string_agg(e::text, '|' ORDER BY global_position) FROM evstore.events e) AS events_unchanged,
       (SELECT streams FROM before) = (SELECT string_agg(s::text, '|' ORDER BY stream_id) FROM evstore.streams s) AS streams_unchanged;
SELECT shape() = (SELECT shape FROM shape_before) AS shape_unchanged;
SELECT seqincrement, seqcache, seqcycle, seqtypid::regtype FROM pg_sequence WHERE seqrelid = 'evstore.global_position_seq'::regclass;

-- what operations need is allowed
ALTER TABLE evstore.events SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01);
ALTER TABLE evstore.events RESET (fillfactor);
ALTER INDEX evstore.events_pkey SET (fillfactor = 80);
ALTER TABLE evstore.events ALTER COLUMN event_type SET STATISTICS 500;
ALTER TABLE evstore.events ALTER COLUMN category SET (n_distinct = 100);
ALTER TABLE evstore.events ALTER COLUMN data SET COMPRESSION pglz;
ALTER TABLE evstore.events SET TABLESPACE pg_default;
ALTER TABLE evstore.events REPLICA IDENTITY DEFAULT;
ALTER TABLE evstore.events CLUSTER ON events_pkey;
CLUSTER evstore.events;
ALTER TABLE evstore.events SET WITHOUT CLUSTER;
REINDEX TABLE evstore.events;
REINDEX INDEX CONCURRENTLY evstore.events_stream_version_key;
VACUUM (ANALYZE) evstore.events;
ANALYZE evstore.streams;
COMMENT ON TABLE evstore.streams IS 'streams';
GRANT SELECT ON evstore.events TO PUBLIC;
REVOKE SELECT ON evstore.events FROM PUBLIC;
CREATE STATISTICS events_stats ON stream_id, category FROM evstore.events;
DROP STATISTICS events_stats;
SELECT reloptions FROM pg_class WHERE oid = 'evstore.events'::regclass;
-- and evstore works on
SELECT stream_version FROM evstore.append_event('ddl-1', 'After', '{}');
SELECT count(*) FROM evstore.read_all();

-- independently of the DDL guard, evstore refuses to work on tables whose
-- shape is not the one it expects (here changed by editing the catalog)
SET allow_system_table_mods = on;
UPDATE pg_attribute SET attname = 'payload' WHERE attrelid = 'evstore.events'::regclass AND attname = 'data';
\set VERBOSITY default
SELECT evstore.append_event('ddl-1', 'Refused', '{}');
\set VERBOSITY terse
SELECT count(*) FROM evstore.read_stream('ddl-1');
UPDATE pg_attribute SET attname = 'data' WHERE attrelid = 'evstore.events'::regclass AND attname = 'payload';
UPDATE pg_attribute SET attnotnull = false WHERE attrelid = 'evstore.streams'::regclass AND attname = 'version';
SELECT evstore.append_event('ddl-1', 'Refused', '{}');
UPDATE pg_attribute SET attnotnull = true WHERE attrelid = 'evstore.streams'::regclass AND attname = 'version';
UPDATE pg_class SET relpersistence = 'u' WHERE oid = 'evstore.global_position_seq'::regclass;
SELECT evstore.append_event('ddl-1', 'Refused', '{}');
UPDATE pg_class SET relpersistence = 'p' WHERE oid = 'evstore.global_position_seq'::regclass;
RESET allow_system_table_mods;
SELECT stream_version FROM evstore.append_event('ddl-1', 'Accepted', '{}');

-- direct writes are refused; COPY only restores into an empty table
INSERT INTO evstore.events SELECT global_position + 100, stream_id, stream_version + 100,
  gen_random_uuid(), event_type, data, metadata, recorded_at, category, stream_bucket FROM evstore.events;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
INSERT INTO evstore.streams VALUES ('forged-1', 'forged', 5, 0, now(), now(), NULL, false);
\set VERBOSITY terse
WITH x AS (INSERT INTO evstore.events SELECT * FROM evstore.events LIMIT 1 RETURNING 1) SELECT count(*) FROM x;
MERGE INTO evstore.streams s USING (SELECT 'forged-2' AS id) v ON s.stream_id = v.id
  WHEN NOT MATCHED THEN INSERT VALUES ('forged-2', 'forged', 5, 0, now(), now(), NULL, false);
PREPARE ins AS INSERT INTO evstore.streams VALUES ('forged-3', 'forged', 5, 0, now(), now(), NULL, false);
EXECUTE ins;
DO $$ BEGIN INSERT INTO evstore.streams VALUES ('forged-4', 'forged', 5, 0, now(), now(), NULL, false); END $$;
SET session_replication_role = replica;
INSERT INTO evstore.streams VALUES ('forged-5', 'forged', 5, 0, now(), now(), NULL, false);
RESET session_replication_role;
UPDATE evstore.events SET data = '{}';
EXPLAIN (COSTS OFF) INSERT INTO evstore.streams VALUES ('x', 'x', 1, 0, now(), now(), NULL, false);
-- (FROM PROGRAM, not FROM stdin: a COPY refused before it starts leaves
-- stdin's data lines to psql, which 15 and 16+ treat differently)
COPY evstore.streams FROM PROGRAM $$printf 'forged-6\tforged\t5\t0\t2020-01-01\t2020-01-01\t\\N\tf\n'$$;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS forged FROM evstore.streams WHERE category = 'forged';
SELECT count(*) FROM evstore.events;
-- inserting into other tables is not affected
CREATE TEMP TABLE copy_of_events (LIKE evstore.events);
INSERT INTO copy_of_events SELECT * FROM evstore.events;
SELECT count(*) FROM copy_of_events;

-- dropping a store that holds events needs an explicit setting
SELECT boot_val FROM pg_settings WHERE name = 'evstore.allow_drop_with_events';
SET evstore.allow_drop_with_events = off;
\set VERBOSITY default
DROP EXTENSION evstore;
\set VERBOSITY terse
\echo :LAST_ERROR_SQLSTATE
DROP EXTENSION evstore CASCADE;
DROP SCHEMA evstore CASCADE;
CREATE ROLE ddl_owner;
ALTER SCHEMA evstore OWNER TO ddl_owner;
DROP OWNED BY ddl_owner CASCADE;
\echo :LAST_ERROR_SQLSTATE
ALTER SCHEMA evstore OWNER TO CURRENT_USER;
DROP ROLE ddl_owner;
SELECT count(*) FROM evstore.events;
-- a restore into an empty store: COPY works while the table is empty
SET evstore.allow_drop_with_events = on;
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
RESET client_min_messages;
SET evstore.allow_drop_with_events = off;
CREATE EXTENSION evstore;
COPY evstore.events FROM stdin;
1	order-1	0	0190d2c7-3e1a-7000-8000-000000000001	Placed	{}	\N	2020-01-01 00:00:00+00	order	7
\.
COPY evstore.streams FROM stdin;
order-1	order	0	0	2020-01-01 00:00:00+00	2020-01-01 00:00:00+00	\N	f
\.
SELECT count(*) FROM evstore.events;
-- a second COPY into a table that now holds rows is refused
COPY evstore.events FROM PROGRAM $$printf '2\torder-1\t1\t0190d2c7-3e1a-7000-8000-000000000002\tForged\t{}\t\\N\t2020-01-01 00:00:00+00\torder\t7\n'$$;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM evstore.events;
-- an empty store drops simply
SET evstore.allow_drop_with_events = on;
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
RESET client_min_messages;
SET evstore.allow_drop_with_events = off;
CREATE EXTENSION evstore;
DROP EXTENSION evstore;
CREATE EXTENSION evstore;
RESET evstore.allow_drop_with_events;
DROP FUNCTION shape();
DROP FUNCTION forge();
