-- Projections run with the rights of the role that created them, never of
-- whoever appends.
CREATE DATABASE proj_priv;
\c proj_priv
CREATE EXTENSION evstore;
\set VERBOSITY default

CREATE ROLE regress_proj_owner;
CREATE ROLE regress_proj_appender;
CREATE ROLE regress_proj_blind;
GRANT USAGE ON SCHEMA evstore TO regress_proj_owner, regress_proj_appender, regress_proj_blind;
GRANT SELECT ON evstore.events TO regress_proj_owner;
GRANT SELECT ON evstore.projections TO regress_proj_owner;
GRANT EXECUTE ON FUNCTION evstore.projection_stats(), evstore.projection_async_status() TO regress_proj_owner;
GRANT EXECUTE ON FUNCTION
    evstore.create_projection(text, regprocedure, text[], text[], regprocedure, boolean),
    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean),
    evstore.drop_projection(text, boolean),
    evstore.rebuild_projection(text, integer)
TO regress_proj_owner, regress_proj_blind;
GRANT EXECUTE ON FUNCTION evstore.append_event(text, text, jsonb, jsonb, bigint, uuid)
    TO regress_proj_appender;

-- the owner may write owner_model and owner_log; nobody else may
CREATE TABLE owner_model (account text PRIMARY KEY, balance integer,
                          written_by text DEFAULT current_user);
GRANT SELECT, INSERT, UPDATE ON owner_model TO regress_proj_owner;
CREATE TABLE owner_log (stream_id text, current_role_name text, session_role_name text);
GRANT INSERT ON owner_log TO regress_proj_owner;
CREATE TABLE secret_model (account text PRIMARY KEY, balance integer);
CREATE FUNCTION owner_handler(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.owner_log VALUES (e.stream_id, current_user, session_user);
END $$;
ALTER FUNCTION owner_handler(evstore.events) OWNER TO regress_proj_owner;
CREATE FUNCTION private_handler(e evstore.events) RETURNS void LANGUAGE sql AS 'SELECT';
REVOKE EXECUTE ON FUNCTION private_handler(evstore.events) FROM PUBLIC;

SET ROLE regress_proj_owner;
-- no rights on the target, no projection
SELECT evstore.create_sync_projection('steal', 'secret_model', 'account', 'stream_id');
-- no DELETE right, no delete types
SELECT evstore.create_sync_projection('acct', 'owner_model', 'account', 'stream_id',
    delete_types => ARRAY['Closed'], categories => ARRAY['acct']);
-- no EXECUTE right on the handler
SELECT evstore.create_projection('private', 'private_handler(evstore.events)');
SELECT evstore.create_sync_projection('acct', 'owner_model', 'account', 'stream_id',
    categories => ARRAY['acct']);
SELECT evstore.create_projection('acct_log', 'owner_handler(evstore.events)',
    categories => ARRAY['acct']);
RESET ROLE;

-- a role that cannot read the events cannot project them
SET ROLE regress_proj_blind;
SELECT evstore.create_projection('blind', 'owner_handler(evstore.events)');
RESET ROLE;

-- the appender writes the read models through the projections only
SET ROLE regress_proj_appender;
SELECT stream_version FROM evstore.append_event('acct-1', 'Opened', '{"balance": 5}');
SELECT * FROM owner_model;
SELECT evstore.create_projection('mine', 'owner_handler(evstore.events)');
SELECT evstore.drop_projection('acct');
RESET ROLE;
SELECT account, balance, written_by FROM owner_model;
SELECT * FROM owner_log;

-- only the owner may drop or rebuild
GRANT EXECUTE ON FUNCTION evstore.drop_projection(text, boolean),
    evstore.rebuild_projection(text, integer) TO regress_proj_appender;
SET ROLE regress_proj_appender;
SELECT evstore.drop_projection('acct');
SELECT evstore.rebuild_projection('acct');
RESET ROLE;

-- the owner loses a right: appends that reach the projection fail, as the owner
REVOKE UPDATE ON owner_model FROM regress_proj_owner;
SET ROLE regress_proj_appender;
\set SHOW_CONTEXT always
SELECT evstore.append_event('acct-1', 'Deposited', '{"balance": 7}');
\set SHOW_CONTEXT errors
DO $$
BEGIN
    PERFORM evstore.append_event('acct-1', 'Deposited', '{"balance": 7}');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'sqlstate %', SQLSTATE;
END $$;
SELECT stream_version FROM evstore.append_event('other-1', 'Unrelated', '{}');
RESET ROLE;
GRANT UPDATE ON owner_model TO regress_proj_owner;
SET ROLE regress_proj_appender;
SELECT stream_version FROM evstore.append_event('acct-1', 'Deposited', '{"balance": 7}');
RESET ROLE;
SELECT account, balance, written_by FROM owner_model;

-- a superuser's append runs the projection as its owner too
SELECT stream_version FROM evstore.append_event('acct-2', 'Opened', '{"balance": 1}');
SELECT * FROM owner_log ORDER BY stream_id, session_role_name;

-- the owner rebuilds (it needs TRUNCATE or DELETE) and drops
SET ROLE regress_proj_owner;
SELECT evstore.rebuild_projection('acct', 0);
RESET ROLE;
GRANT TRUNCATE ON owner_model TO regress_proj_owner;
UPDATE owner_model SET balance = -1;
SET ROLE regress_proj_owner;
SELECT evstore.rebuild_projection('acct', 0);
SELECT account, balance, written_by FROM owner_model ORDER BY account;
SELECT name, owner, events_processed FROM evstore.projections ORDER BY name;
SELECT evstore.drop_projection('acct'), evstore.drop_projection('acct_log');
RESET ROLE;

\c contrib_regression
DROP DATABASE proj_priv;
DROP ROLE regress_proj_owner, regress_proj_appender, regress_proj_blind;
