-- Distributed mode without Citus (docs/distributed.md): evstore.distribute()
-- refuses with a clear error and changes nothing; evstore.shards is empty;
-- the node-local preparation is for superusers only, and the fence still
-- refuses a sequence with INCREMENT > 1 on a store that is not distributed.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY terse
SELECT stream_version FROM evstore.append_event('dist-1', 'Created', '{}');
SELECT evstore.distribute();
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM evstore.shards;
SELECT pg_get_indexdef('evstore.events_pkey'::regclass);
-- bad arguments of the node-local step
SELECT evstore._distribute_node(64, 64, 0);
\echo :LAST_ERROR_SQLSTATE
CREATE ROLE dist_nobody;
GRANT USAGE ON SCHEMA evstore TO dist_nobody;
SET ROLE dist_nobody;
SELECT evstore._distribute_node(64, 1, 0);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- prepared by hand without Citus: the store is not distributed, so the
-- fence refuses the strided sequence (ES010) and nothing is appended
BEGIN;
SELECT evstore._distribute_node(64, 1, 0);
SELECT pg_get_indexdef('evstore.events_pkey'::regclass);
SELECT pg_get_indexdef('evstore.events_event_id_key'::regclass);
SELECT evstore.append_event('dist-1', 'Changed', '{}');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- outside it, the guard is in force again
ALTER SEQUENCE evstore.global_position_seq INCREMENT BY 64;
\echo :LAST_ERROR_SQLSTATE
SELECT stream_version, global_position FROM evstore.append_event('dist-1', 'Changed', '{}');
REVOKE USAGE ON SCHEMA evstore FROM dist_nobody;
DROP ROLE dist_nobody;
