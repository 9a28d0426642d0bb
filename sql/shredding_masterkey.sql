-- Crypto-shredding: the master key source.
--
-- evstore.master_key_command and evstore.master_key_file are settable only in
-- the server's configuration (PGC_SIGHUP, as archive_command): the command
-- runs as the server's OS user.  Each case below changes the configuration
-- with ALTER SYSTEM, reloads and reconnects: a session started after
-- pg_reload_conf() returned was forked by a postmaster that has re-read it.
\set VERBOSITY default
CREATE SCHEMA shred_mk;
CREATE FUNCTION shred_mk.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    -- key ids are random: mask them
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM, '-?[0-9]{6,}', '<key id>');
END $$;
SELECT evstore.protect('{"secret": "alice''s secret"}', 'mk-alice', '{secret}')->'secret' AS a \gset

-- not by SET: not even a superuser, not with GRANT SET ON PARAMETER
SELECT shred_mk.err($$SET evstore.master_key_command = 'id > /tmp/evstore-pwned'$$) AS superuser_set;
SELECT shred_mk.err($$SET evstore.master_key_file = '/etc/passwd'$$) AS superuser_set_file;
SELECT shred_mk.err($$SET LOCAL evstore.master_key_command = 'echo 1 00'$$) AS set_local;
SELECT shred_mk.err($$SELECT set_config('evstore.master_key_command', 'echo 1 00', false)$$) AS set_config;
SET evstore.master_key_command = 'id > /tmp/evstore-pwned';
CREATE ROLE regress_shred_alice;
GRANT SET ON PARAMETER evstore.master_key_command, evstore.master_key_file TO regress_shred_alice;
GRANT USAGE ON SCHEMA shred_mk TO regress_shred_alice;
SELECT has_parameter_privilege('regress_shred_alice', 'evstore.master_key_command', 'SET') AS granted;
SET ROLE regress_shred_alice;
SELECT shred_mk.err($$SET evstore.master_key_command = 'id > /tmp/evstore-pwned'$$) AS granted_set;
SELECT shred_mk.err($$SET evstore.master_key_file = '/etc/passwd'$$) AS granted_set_file;
RESET ROLE;
-- nor through a role's or a database's defaults, nor a function's SET clause
SELECT shred_mk.err($$ALTER ROLE regress_shred_alice SET evstore.master_key_command = 'echo 1 00'$$) AS alter_role;
SELECT shred_mk.err(format('ALTER DATABASE %I SET evstore.master_key_file = %L',
                           current_database(), '/etc/passwd')) AS alter_database;
SELECT shred_mk.err($$CREATE FUNCTION shred_mk.f() RETURNS int LANGUAGE sql
    SET evstore.master_key_command = 'echo 1 00' AS 'SELECT 1'$$) AS function_set;
REVOKE SET ON PARAMETER evstore.master_key_command, evstore.master_key_file FROM regress_shred_alice;
REVOKE USAGE ON SCHEMA shred_mk FROM regress_shred_alice;
DROP ROLE regress_shred_alice;
-- the configured key is still in use
SELECT evstore.reveal(:'a') AS configured;

-- master key problems, each set in the server's configuration
ALTER SYSTEM SET evstore.master_key_command = '';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.protect('{"x": 1}', 'mk-carol', '{x}');
SELECT shred_mk.err($$SELECT evstore.reveal('$$ || :'a' || $$')$$) AS reveal_without_master;
-- forgetting needs no master key
SELECT evstore.forget('mk-dave') AS forget_without_master;
ALTER SYSTEM SET evstore.master_key_command = 'exit 3';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.protect('{"x": 1}', 'mk-carol', '{x}');
ALTER SYSTEM SET evstore.master_key_command = 'echo 1 nothex';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.protect('{"x": 1}', 'mk-carol', '{x}');
ALTER SYSTEM SET evstore.master_key_command = 'echo 0 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SELECT pg_reload_conf() \gset
\c
SELECT shred_mk.err($$SELECT evstore.protect('{"x": 1}', 'mk-carol', '{x}')$$);
ALTER SYSTEM SET evstore.master_key_command = 'printf "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"';
SELECT pg_reload_conf() \gset
\c
SELECT shred_mk.err($$SELECT evstore.protect('{"x": 1}', 'mk-carol', '{x}')$$);
ALTER SYSTEM SET evstore.master_key_command = 'echo "# only a comment"';
SELECT pg_reload_conf() \gset
\c
SELECT shred_mk.err($$SELECT evstore.protect('{"x": 1}', 'mk-carol', '{x}')$$);
-- a different key under the same version cannot unwrap alice's key
ALTER SYSTEM SET evstore.master_key_command = 'echo 1 ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff';
SELECT pg_reload_conf() \gset
\c
SELECT shred_mk.err($$SELECT evstore.reveal('$$ || :'a' || $$')$$) AS wrong_master;
-- a source without alice's version
ALTER SYSTEM SET evstore.master_key_command = 'echo 2 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.reveal(:'a');
-- both settings
ALTER SYSTEM SET evstore.master_key_file = 'no-such-file';
SELECT pg_reload_conf() \gset
\c
SELECT shred_mk.err($$SELECT evstore.reveal('$$ || :'a' || $$')$$) AS both;
ALTER SYSTEM SET evstore.master_key_command = '';
SELECT pg_reload_conf() \gset
\c
SELECT shred_mk.err($$SELECT evstore.reveal('$$ || :'a' || $$')$$) AS missing_file;
-- a key file (relative paths are relative to the data directory)
DO $$ BEGIN
    EXECUTE format('COPY (SELECT %L UNION ALL SELECT %L) TO %L', '# evstore test master key',
        '1 000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F',
        current_setting('data_directory') || '/shredding_test.key');
END $$;
ALTER SYSTEM SET evstore.master_key_file = 'shredding_test.key';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.reveal(:'a') AS from_key_file;
DO $$ BEGIN
    EXECUTE format('COPY (SELECT %L) TO %L', '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
        current_setting('data_directory') || '/shredding_test.key');
END $$;
SET evstore.key_cache_size = 0;
SELECT evstore.reveal(:'a') AS bare_key_is_version_1;
RESET evstore.key_cache_size;
-- back to test/evstore.conf's key
ALTER SYSTEM RESET evstore.master_key_file;
ALTER SYSTEM RESET evstore.master_key_command;
SELECT pg_reload_conf() \gset
\c
SELECT evstore.reveal(:'a') AS back_to_configured;

DROP SCHEMA shred_mk CASCADE;
