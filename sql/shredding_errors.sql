-- Crypto-shredding: bad input, tampering, master key problems, privileges
\set VERBOSITY default
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    -- key ids are random: mask them
    RETURN regexp_replace(SQLSTATE || ': ' || SQLERRM, '-?[0-9]{6,}', '<key id>');
END $$;
-- a marker from raw bytes
CREATE FUNCTION pg_temp.marker(b bytea) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('$evstore_enc', translate(encode(b, 'base64'), E'\n', ''))
$$;
CREATE FUNCTION pg_temp.bytes(m jsonb) RETURNS bytea LANGUAGE sql AS $$
    SELECT decode(m->>'$evstore_enc', 'base64')
$$;

SELECT evstore.protect('{"secret": "alice''s secret"}', 'err-alice', '{secret}')->'secret' AS a \gset
SELECT evstore.protect('{"secret": "bob''s secret!"}', 'err-bob', '{secret}')->'secret' AS b \gset
SELECT evstore.reveal(:'a') AS alice, evstore.reveal(:'b') AS bob;

-- arguments
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', NULL, '{a}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', '', '{a}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', repeat('x', 1025), '{a}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', NULL)$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', ARRAY['a', NULL])$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', '{{a},{b}}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', '{""}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', '{a..b}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', '{.a}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 's', ARRAY['a\'])$$);
SELECT pg_temp.err($$SELECT evstore.forget(NULL)$$) AS strict_null, evstore.forget(NULL) IS NULL AS is_null;
SELECT pg_temp.err($$SELECT evstore.forget('')$$);
SELECT pg_temp.err($$SELECT evstore.is_forgotten('')$$);
\set VERBOSITY default
SELECT evstore.protect('{"a": 1}', 's', '{a..b}');

-- malformed markers
SELECT pg_temp.err($$SELECT evstore.reveal('{"x": {"$evstore_enc": 42}}')$$);
SELECT pg_temp.err($$SELECT evstore.reveal('{"x": {"$evstore_enc": "AQ==", "other": 1}}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"x": {"$evstore_enc": "AQ==", "other": 1}}', 's', '{x}')$$);
-- bad base64
SELECT pg_temp.err($$SELECT evstore.reveal('{"x": {"$evstore_enc": "not base64!"}}')$$);
SELECT pg_temp.err($$SELECT evstore.reveal('{"x": {"$evstore_enc": "AQID="}}')$$);
-- truncated
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)', pg_temp.marker(substr(pg_temp.bytes(:'a'), 1, 20))));
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)', pg_temp.marker(substr(pg_temp.bytes(:'a'), 1, 36))));
SELECT pg_temp.err($$SELECT evstore.reveal('{"x": {"$evstore_enc": ""}}')$$);
SELECT evstore.reveal(pg_temp.marker(substr(pg_temp.bytes(:'a'), 1, 20)));
-- unsupported version
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)', pg_temp.marker(set_byte(pg_temp.bytes(:'a'), 0, 2))));
-- tampered: a flipped bit in the ciphertext, the tag, the nonce
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)', pg_temp.marker(set_byte(b, 25, get_byte(b, 25) # 1))))
FROM pg_temp.bytes(:'a') b;
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)', pg_temp.marker(set_byte(b, length(b) - 1, get_byte(b, length(b) - 1) # 128))))
FROM pg_temp.bytes(:'a') b;
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)', pg_temp.marker(set_byte(b, 9, get_byte(b, 9) # 1))))
FROM pg_temp.bytes(:'a') b;
\set VERBOSITY default
SELECT evstore.reveal(pg_temp.marker(set_byte(b, 25, get_byte(b, 25) # 1))) FROM pg_temp.bytes(:'a') b;
-- swapped between subjects: alice's ciphertext under bob's key id
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)',
    pg_temp.marker(substr(pg_temp.bytes(:'b'), 1, 9) || substr(pg_temp.bytes(:'a'), 10))));
-- the marker moved as a whole still belongs to alice and decrypts as alice's
SELECT evstore.reveal(jsonb_build_object('bob', :'a'::jsonb)) AS moved;
-- a key id that does not exist
SELECT pg_temp.err(format('SELECT evstore.reveal(%L)',
    pg_temp.marker('\x01'::bytea || '\x0000000000000001'::bytea || substr(pg_temp.bytes(:'a'), 10))));
\set VERBOSITY default
SELECT evstore.reveal(pg_temp.marker('\x01'::bytea || '\x0000000000000001'::bytea || substr(pg_temp.bytes(:'a'), 10)));
-- a forgotten subject's tampered ciphertext reads as null: without the key
-- nothing can be checked, and nothing can be learnt either
SELECT evstore.forget('err-bob');
SELECT evstore.reveal(pg_temp.marker(set_byte(b, 25, get_byte(b, 25) # 1))) AS forgotten_tampered
FROM pg_temp.bytes(:'b') b;

-- master key problems: sql/shredding_masterkey.sql (they change the server's
-- configuration); forgetting needs no master key
SELECT evstore.forget('err-dave') AS forget_never_protected;

-- privileges: the key table belongs to the extension's C functions only
CREATE ROLE regress_shred_app;
GRANT USAGE ON SCHEMA evstore TO regress_shred_app;
SET ROLE regress_shred_app;
SELECT pg_temp.err('SELECT * FROM evstore.subject_keys');
SELECT pg_temp.err('SELECT count(*) FROM evstore.subject_keys');
SELECT pg_temp.err($$UPDATE evstore.subject_keys SET wrapped_key = NULL$$);
SELECT pg_temp.err($$DELETE FROM evstore.subject_keys$$);
SELECT pg_temp.err($$SELECT evstore.reveal('$$ || :'a' || $$')$$) AS reveal_not_granted;
SELECT pg_temp.err($$SELECT evstore.forget('err-alice')$$) AS forget_not_granted;
-- the master key settings are invisible to ordinary roles
-- (SQLSTATE only: the message names pg_read_all_settings up to 15 only)
SELECT split_part(pg_temp.err('SHOW evstore.master_key_command'), ':', 1) AS show_command;
SELECT split_part(pg_temp.err('SHOW evstore.master_key_file'), ':', 1) AS show_file;
SELECT count(*) AS visible_settings FROM pg_settings WHERE name LIKE 'evstore.master_key%';
SELECT pg_temp.err($$SET evstore.master_key_command = 'echo 1 00'$$);
SELECT pg_temp.err($$SET evstore.master_key_file = '/etc/passwd'$$);
RESET ROLE;
-- with EXECUTE granted the role uses the functions, still without reading the table
GRANT EXECUTE ON FUNCTION evstore.protect(jsonb, text, text[]), evstore.reveal(jsonb)
    TO regress_shred_app;
SET ROLE regress_shred_app;
SELECT evstore.reveal(:'a') AS granted_reveal;
SELECT evstore.reveal(evstore.protect('{"k": "v"}', 'err-erin', '{k}')) AS granted_round_trip;
SELECT pg_temp.err('SELECT * FROM evstore.subject_keys') AS still_unreadable;
RESET ROLE;
REVOKE ALL ON FUNCTION evstore.protect(jsonb, text, text[]), evstore.reveal(jsonb) FROM regress_shred_app;
REVOKE ALL ON SCHEMA evstore FROM regress_shred_app;
DROP ROLE regress_shred_app;
-- and the table is kept by pg_dump
SELECT extconfig::regclass[] @> ARRAY['evstore.subject_keys'::regclass] AS dumped
FROM pg_extension WHERE extname = 'evstore';

-- keys created by a rolled-back transaction are gone, also from the cache
BEGIN;
SELECT evstore.protect('{"x": "tx"}', 'err-frank', '{x}') AS f \gset
ROLLBACK;
SELECT pg_temp.err($$SELECT evstore.reveal('$$ || :'f' || $$')$$) AS rolled_back_key;
SELECT evstore.reveal(evstore.protect('{"x": "again"}', 'err-frank', '{x}')) AS new_key;
BEGIN;
SAVEPOINT s;
SELECT evstore.protect('{"x": "sp"}', 'err-gina', '{x}') AS g \gset
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.err($$SELECT evstore.reveal('$$ || :'g' || $$')$$) AS rolled_back_savepoint;
SELECT evstore.reveal(evstore.protect('{"x": "again"}', 'err-gina', '{x}')) AS new_key_in_tx;
COMMIT;
SELECT count(*) AS gina_keys FROM evstore.subject_keys WHERE subject = 'err-gina';
-- without a cache, a key created in this very statement is found
SET evstore.key_cache_size = 0;
SELECT evstore.reveal(evstore.protect('{"x": "nocache"}', 'err-hank', '{x}')) AS no_cache;
SELECT count(*) AS hank_keys FROM evstore.subject_keys WHERE subject = 'err-hank';
SELECT evstore.reveal(evstore.protect(jsonb_build_object('x', i), 'err-ivy', '{x}'))->'x' AS x
FROM generate_series(1, 3) i;
SELECT count(*) AS ivy_keys FROM evstore.subject_keys WHERE subject = 'err-ivy';
RESET evstore.key_cache_size;
