-- evstore output plugin: bad options and an altered events table are clear
-- errors (the SQLSTATE is echoed after each error)
-- Runs in a database of its own, so that no other test sees these events.
\set regress_db :DBNAME
CREATE DATABASE decoder_errors_db;
\c decoder_errors_db
CREATE EXTENSION evstore;
\set SHOW_CONTEXT never
SELECT 'init' FROM pg_create_logical_replication_slot('dec_err', 'evstore');
SELECT stream_version FROM evstore.append_event('decerr-1', 'Happened', '{}');

SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'bogus', '1');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'include_transaction', 'true');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'format', 'xml');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'format', 'JSON');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'include-transaction', 'maybe');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'include-metadata', '');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'categories', '');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'categories', 'order,,invoice');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'event-types', 'A, ');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'categories', 'a', 'categories', 'b');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'format', 'json', 'format', 'cloudevents');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('dec_err', NULL, NULL, 'cloudevents-source', '');
\echo :LAST_ERROR_SQLSTATE
-- options are checked even when there is nothing to decode
SELECT 'init' FROM pg_create_logical_replication_slot('dec_err2', 'evstore');
SELECT data FROM pg_logical_slot_get_changes('dec_err2', NULL, NULL, 'format', 'yaml');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_drop_replication_slot('dec_err2');
-- the slot still works after all these
SELECT data::jsonb->>'stream_id' AS stream_id FROM pg_logical_slot_get_changes('dec_err', NULL, NULL);
SELECT pg_drop_replication_slot('dec_err');

-- An event written while a column is renamed: decoding it is an error that
-- names the column (attributes are resolved by name, never by position).
-- DDL on evstore.events is refused (core_ddl_guard) and evstore refuses to
-- append to a table of another shape, so the change is made here the only
-- way left, by a superuser editing the catalog, and the event is written
-- with COPY (allowed into an empty table, as by a restore).
DROP EXTENSION evstore;
CREATE EXTENSION evstore;
SELECT 'init' FROM pg_create_logical_replication_slot('dec_alter', 'evstore');
SET allow_system_table_mods = on;
UPDATE pg_attribute SET attname = 'event_kind'
 WHERE attrelid = 'evstore.events'::regclass AND attname = 'event_type';
COPY evstore.events FROM stdin;
1	decalter-1	0	0190d2c7-3e1a-7000-8000-000000000001	Renamed	{}	\N	2020-01-01 00:00:00+00	decalter	1
\.
UPDATE pg_attribute SET attname = 'event_type'
 WHERE attrelid = 'evstore.events'::regclass AND attname = 'event_kind';
RESET allow_system_table_mods;
SELECT data FROM pg_logical_slot_peek_changes('dec_alter', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_drop_replication_slot('dec_alter');

-- A column whose type changed: an error, not a misread datum.
DROP EXTENSION evstore;
CREATE EXTENSION evstore;
SELECT 'init' FROM pg_create_logical_replication_slot('dec_retype', 'evstore');
SET allow_system_table_mods = on;
UPDATE pg_attribute SET atttypid = 'timestamp'::regtype
 WHERE attrelid = 'evstore.events'::regclass AND attname = 'recorded_at';
COPY evstore.events FROM stdin;
1	decretype-1	0	0190d2c7-3e1a-7000-8000-000000000002	Retyped	{}	\N	2020-01-01 00:00:00	decretype	1
\.
UPDATE pg_attribute SET atttypid = 'timestamptz'::regtype
 WHERE attrelid = 'evstore.events'::regclass AND attname = 'recorded_at';
RESET allow_system_table_mods;
SELECT data FROM pg_logical_slot_peek_changes('dec_retype', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_drop_replication_slot('dec_retype');
DROP EXTENSION evstore;
CREATE EXTENSION evstore;

-- a fresh slot after the change decodes again
SELECT 'init' FROM pg_create_logical_replication_slot('dec_after', 'evstore');
SELECT stream_version FROM evstore.append_event('decalter-2', 'Fine', '{}');
SELECT data::jsonb->>'event_type' AS event_type FROM pg_logical_slot_get_changes('dec_after', NULL, NULL);
SELECT pg_drop_replication_slot('dec_after');

-- The extension dropped while a slot is behind: events from before the drop
-- still decode, other tables never do, and the re-created table is found
-- again (the cached OID is invalidated).
SELECT 'init' FROM pg_create_logical_replication_slot('dec_drop', 'evstore');
SELECT stream_version FROM evstore.append_event('decdrop-1', 'BeforeDrop', '{}');
DROP EXTENSION evstore;
CREATE TABLE dec_plain (i int);
INSERT INTO dec_plain VALUES (1);
SELECT data::jsonb->>'event_type' AS event_type FROM pg_logical_slot_get_changes('dec_drop', NULL, NULL);
CREATE EXTENSION evstore;
SELECT stream_version FROM evstore.append_event('decdrop-1', 'AfterRecreate', '{}');
INSERT INTO dec_plain VALUES (2);
SELECT data::jsonb->>'event_type' AS event_type FROM pg_logical_slot_get_changes('dec_drop', NULL, NULL);
SELECT pg_drop_replication_slot('dec_drop');

\c :regress_db
DROP DATABASE decoder_errors_db;
