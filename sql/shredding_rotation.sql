-- Crypto-shredding: master key versions and rotation.  Runs in a database of
-- its own so that re-wrapped keys do not outlive the test.  The master key
-- source is set only in the server's configuration: each change is ALTER
-- SYSTEM, a reload and a new session (see shredding_masterkey.sql).
\set VERBOSITY default
SELECT current_database() AS regress_db \gset
CREATE DATABASE regress_shredding_rotation;
\c regress_shredding_rotation
CREATE EXTENSION evstore;

\set k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
\set k2 2222222222222222222222222222222222222222222222222222222222222222
\set k3 3333333333333333333333333333333333333333333333333333333333333333
SELECT format('echo 1 %s', :'k1') AS v1,
       format('printf "1 %s\n2:%s\n"', :'k1', :'k2') AS v12,
       format('echo 2 %s', :'k2') AS v2,
       format('printf "# retired: 1\n3 %s\n2\t%s\n"', :'k3', :'k2') AS v23 \gset

ALTER SYSTEM SET evstore.master_key_command = :'v1';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.protect('{"n": "ann"}', 'rot-ann', '{n}') AS ann \gset
SELECT evstore.protect('{"n": "ben"}', 'rot-ben', '{n}') AS ben \gset
SELECT evstore.forget('rot-ben');
SELECT subject, master_version FROM evstore.subject_keys ORDER BY subject;
-- nothing to do while version 1 is the newest
SELECT evstore.rotate_master_key() AS rewrapped;

-- version 2 added: new keys are wrapped under it, old ones still unwrap
ALTER SYSTEM SET evstore.master_key_command = :'v12';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.protect('{"n": "cat"}', 'rot-cat', '{n}') AS cat \gset
SELECT subject, master_version FROM evstore.subject_keys ORDER BY subject;
SELECT wrapped_key AS ann_wrapped_v1 FROM evstore.subject_keys WHERE subject = 'rot-ann' \gset
-- rotation re-wraps the live keys under version 2; forgotten ones stay empty
SELECT evstore.rotate_master_key() AS rewrapped;
SELECT subject, master_version, wrapped_key IS NOT NULL AS live FROM evstore.subject_keys ORDER BY subject;
SELECT wrapped_key <> :'ann_wrapped_v1'::bytea AS ann_rewrapped FROM evstore.subject_keys WHERE subject = 'rot-ann';
SELECT evstore.rotate_master_key() AS rewrapped_again;

-- version 1 retired: everything still reads; events were not touched
ALTER SYSTEM SET evstore.master_key_command = :'v2';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.reveal(:'ann') AS ann, evstore.reveal(:'ben') AS ben, evstore.reveal(:'cat') AS cat;
-- going back to a source without version 2 fails clearly
ALTER SYSTEM SET evstore.master_key_command = :'v1';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.reveal(:'ann');
-- the next rotation: comments, "version<TAB>key", versions in any order
ALTER SYSTEM SET evstore.master_key_command = :'v23';
SELECT pg_reload_conf() \gset
\c
SELECT evstore.rotate_master_key() AS rewrapped;
SELECT subject, master_version FROM evstore.subject_keys WHERE wrapped_key IS NOT NULL ORDER BY subject;
SET evstore.key_cache_size = 0;
SELECT evstore.reveal(:'ann') AS ann, evstore.reveal(:'cat') AS cat;
-- rotation needs the old version as long as a key is wrapped under it
UPDATE evstore.subject_keys SET master_version = 1 WHERE subject = 'rot-cat';
SELECT evstore.rotate_master_key();
SELECT evstore.reveal(:'cat');

ALTER SYSTEM RESET evstore.master_key_command;
SELECT pg_reload_conf() \gset
\c :regress_db
DROP DATABASE regress_shredding_rotation;
