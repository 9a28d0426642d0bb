-- Crypto-shredding: round trips, paths, forget (docs/shredding.md)
-- The instance's master key comes from test/evstore.conf (master_key_command).
\set VERBOSITY default
-- errors as "SQLSTATE: message", for statements expected to fail
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- strings, numbers, booleans, null, objects, arrays, nested paths
SELECT evstore.protect(
    '{"name": "Kim Minji", "age": 42, "score": 1234567890.123456789, "vip": true,
      "nick": null, "email": "kim@example.com\n\"quoted\" ü 한국",
      "address": {"street": "Main 1", "city": "Seoul", "geo": {"lat": 37.5, "lon": 127.0}},
      "phones": [{"kind": "home", "number": "111"}, {"kind": "work", "number": "222"}],
      "prefs": {"a": 1}, "order": 7}',
    'user-1',
    '{name,age,score,vip,nick,email,address.street,address.geo,phones.*.number,prefs}') AS p \gset
-- encrypted fields are markers; untouched fields stay as they were
SELECT key, CASE WHEN jsonb_typeof(value) = 'object' AND value ? '$evstore_enc' THEN 'protected'
                 WHEN jsonb_typeof(value) IN ('object', 'array') THEN jsonb_typeof(value)
                 ELSE value::text END AS value
FROM jsonb_each(:'p'::jsonb) ORDER BY key;
SELECT (:'p'::jsonb)->'address'->'city' AS city,
       (:'p'::jsonb)->'address'->'street' ? '$evstore_enc' AS street_protected,
       (:'p'::jsonb)->'phones'->0->'kind' AS kind0,
       (:'p'::jsonb)->'phones'->1->'number' ? '$evstore_enc' AS number1_protected;
-- no plaintext left in the protected document (searched with a space or
-- quotes, which base64 ciphertext never holds, so random bytes cannot match)
SELECT position('Kim Minji' IN :'p') = 0 AS no_name, position('Main 1' IN :'p') = 0 AS no_street,
       position('"222"' IN :'p') = 0 AS no_phone;
-- reveal gives back exactly the original
SELECT evstore.reveal(:'p') = '{"name": "Kim Minji", "age": 42, "score": 1234567890.123456789, "vip": true,
      "nick": null, "email": "kim@example.com\n\"quoted\" ü 한국",
      "address": {"street": "Main 1", "city": "Seoul", "geo": {"lat": 37.5, "lon": 127.0}},
      "phones": [{"kind": "home", "number": "111"}, {"kind": "work", "number": "222"}],
      "prefs": {"a": 1}, "order": 7}'::jsonb AS round_trip;
SELECT evstore.reveal(:'p')->'email' AS email, evstore.reveal(:'p')->'score' AS score;

-- the marker's bytes: version 1 | key id (8) | nonce (12) | ciphertext | tag (16)
SELECT get_byte(b, 0) AS version, length(b) - 37 AS ciphertext_len, length('"Main 1"') AS json_len
FROM (SELECT decode((:'p'::jsonb)->'address'->'street'->>'$evstore_enc', 'base64') AS b) s;
-- a fresh nonce each time: the same value never encrypts the same way twice
SELECT evstore.protect('{"a": "x"}', 'user-1', '{a}') <> evstore.protect('{"a": "x"}', 'user-1', '{a}') AS nonces_differ;
-- one key per subject: every marker of user-1 names the same key id
SELECT count(DISTINCT substr(decode(v->>'$evstore_enc', 'base64'), 2, 8)) AS key_ids
FROM (SELECT (:'p'::jsonb)->'name' AS v UNION ALL SELECT (:'p'::jsonb)->'age'
      UNION ALL SELECT evstore.protect('{"a": 1}', 'user-1', '{a}')->'a') s;
SELECT substr(decode(evstore.protect('{"a": 1}', 'user-1', '{a}')->'a'->>'$evstore_enc', 'base64'), 2, 8)
    <> substr(decode(evstore.protect('{"a": 1}', 'user-2', '{a}')->'a'->>'$evstore_enc', 'base64'), 2, 8)
    AS subjects_have_own_keys;

-- paths: array indexes, wildcards, escaped dots, the same path twice
SELECT evstore.reveal(x) = '{"l": [10, 20, 30], "a.b": "dot", "*": "star"}' AS ok,
       x->'l'->0 AS l0, x->'l'->1 ? '$evstore_enc' AS l1_protected, x->'l'->2 AS l2,
       x->'a.b' ? '$evstore_enc' AS dotted_protected, x->'*' ? '$evstore_enc' AS star_protected
FROM (SELECT evstore.protect('{"l": [10, 20, 30], "a.b": "dot", "*": "star"}', 'user-1',
                             ARRAY['l.1', 'a\.b', '\*', 'l.1']) AS x) s;
SELECT evstore.reveal(x) = '{"o": {"k1": 1, "k2": {"z": 2}}}' AS ok,
       x->'o'->'k1' ? '$evstore_enc' AS k1, x->'o'->'k2' ? '$evstore_enc' AS k2
FROM (SELECT evstore.protect('{"o": {"k1": 1, "k2": {"z": 2}}}', 'user-1', '{o.*}') AS x) s;
-- a path and a path below it: the outer one wins (the whole value is encrypted once)
SELECT jsonb_typeof(x->'address') AS t, x->'address' ? '$evstore_enc' AS outer_protected,
       evstore.reveal(x) = '{"address": {"street": "s"}}' AS ok
FROM (SELECT evstore.protect('{"address": {"street": "s"}}', 'user-1', '{address.street,address}') AS x) s;
-- root arrays
SELECT evstore.reveal(x) = '[{"n": "a"}, {"n": "b"}]' AS ok, x->0->'n' ? '$evstore_enc' AS n0
FROM (SELECT evstore.protect('[{"n": "a"}, {"n": "b"}]', 'user-1', '{*.n}') AS x) s;

-- missing paths are left alone (no error, no key created)
SELECT evstore.protect('{"a": 1}', 'user-1', '{b,a.x,c.d.e,"a.0"}') AS missing;
SELECT evstore.protect('{"a": [1]}', 'user-1', '{a.5,a.x}') AS out_of_range;
SELECT evstore.protect('{"a": 1}', 'never-protected', '{zzz}') AS untouched,
       (SELECT count(*) FROM evstore.subject_keys WHERE subject = 'never-protected') AS keys;
SELECT evstore.protect('"scalar"', 'user-1', '{a}') AS scalar_root,
       evstore.protect('{"a": 1}', 'user-1', '{}') AS no_paths,
       evstore.protect(NULL, 'user-1', '{a}') IS NULL AS null_data;
-- protecting twice leaves an already protected value as it is
SELECT evstore.protect(:'p', 'user-2', '{name}')->'name' = (:'p'::jsonb)->'name' AS idempotent;
-- reveal of a document without markers returns it unchanged; reveal(null) is null
SELECT evstore.reveal('{"a": {"b": [1, "x"]}}') AS plain, evstore.reveal(NULL) IS NULL AS null_reveal;
-- a document mixing two subjects
SELECT evstore.reveal(jsonb_build_object('u1', evstore.protect('{"v": "one"}', 'user-1', '{v}'),
                                         'u2', evstore.protect('{"v": "two"}', 'user-2', '{v}'))) AS mixed;
-- a marker as the whole document
SELECT evstore.reveal(evstore.protect('{"v": [1, 2]}', 'user-1', '{v}')->'v') AS whole;

-- forget: the subject's fields read as null; other subjects are untouched
SELECT evstore.protect('{"v": "two", "w": 2}', 'user-2', '{v}') AS p2 \gset
SELECT evstore.is_forgotten('user-1') AS before;
SELECT evstore.forget('user-1') AS had_key;
SELECT evstore.is_forgotten('user-1') AS after;
SELECT evstore.reveal(:'p') AS forgotten_reveal;
SELECT evstore.reveal(:'p', '"[erased]"')->'address' AS placeholder,
       evstore.reveal(:'p', NULL)->'name' AS null_placeholder;
SELECT evstore.reveal(:'p2') AS other_subject;
-- forgetting again, or forgetting an unknown subject: false
SELECT evstore.forget('user-1') AS again, evstore.forget('nobody') AS unknown;
-- an unknown subject is recorded as forgotten all the same
SELECT evstore.is_forgotten('nobody') AS nobody_forgotten, evstore.is_forgotten('user-2') AS user2_forgotten;
-- protect after forget is refused ...
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 'user-1', '{a}')$$);
SELECT pg_temp.err($$SELECT evstore.protect('{"a": 1}', 'nobody', '{a}')$$);
\set VERBOSITY default
SELECT evstore.protect('{"a": 1}', 'user-1', '{a}');
-- ... unless explicitly allowed: a new key, the old data stays unreadable
SELECT evstore.protect('{"a": "new"}', 'user-1', '{a}', true) AS p3 \gset
SELECT evstore.reveal(:'p3') AS new_data, evstore.reveal(:'p')->'name' AS old_data,
       evstore.is_forgotten('user-1') AS forgotten_now;
-- allow_forgotten does not make a new key while a live one exists
SELECT substr(decode((:'p3'::jsonb)->'a'->>'$evstore_enc', 'base64'), 2, 8)
     = substr(decode(evstore.protect('{"a": 1}', 'user-1', '{a}', true)->'a'->>'$evstore_enc', 'base64'), 2, 8)
     AS same_key;
-- a forgotten key and a live key of the same subject
SELECT subject, count(*) AS keys, count(wrapped_key) AS live
FROM evstore.subject_keys WHERE subject IN ('user-1', 'user-2', 'nobody')
GROUP BY subject ORDER BY subject;
-- forget() inside a transaction that rolls back forgets nothing
BEGIN;
SELECT evstore.forget('user-2');
SELECT evstore.reveal(:'p2') AS inside;
ROLLBACK;
SELECT evstore.reveal(:'p2') AS after_rollback, evstore.is_forgotten('user-2') AS forgotten;
BEGIN;
SAVEPOINT before_forget;
SELECT evstore.forget('user-2');
SELECT evstore.reveal(:'p2') AS inside_savepoint;
ROLLBACK TO SAVEPOINT before_forget;
SELECT evstore.reveal(:'p2') AS after_savepoint_rollback;
COMMIT;

-- protected fields inside a protected object are revealed too
SELECT evstore.protect(jsonb_build_object('outer', evstore.protect('{"inner": "deep", "k": 1}', 'user-2', '{inner}')),
                       'user-3', '{outer}') AS nested \gset
SELECT (:'nested'::jsonb)->'outer' ? '$evstore_enc' AS outer_protected, evstore.reveal(:'nested') AS nested,
       evstore.reveal((:'nested'::jsonb)->'outer') AS nested_root;
SELECT evstore.forget('user-3');
SELECT evstore.reveal(:'nested') AS outer_forgotten;

-- a cache smaller than the working set still gives the right keys
SET evstore.key_cache_size = 1;
SELECT evstore.reveal(evstore.protect(jsonb_build_object('v', 'a-' || i, 'w', i), 'small-cache-' || (i % 3), '{v}')) AS v
FROM generate_series(1, 6) i;
SELECT evstore.reveal(jsonb_build_array(evstore.protect('{"v": 1}', 'small-cache-0', '{v}'),
                                        evstore.protect('{"v": 2}', 'small-cache-1', '{v}'),
                                        evstore.protect('{"v": 3}', 'small-cache-2', '{v}'))) AS three_subjects;
CREATE TEMP TABLE small_cache AS
    SELECT i, evstore.protect(jsonb_build_object('v', i), 'small-cache-' || (i % 3), '{v}') AS d
    FROM generate_series(1, 6) i;
-- ... and what a small cache encrypted decrypts with a large one, and back
RESET evstore.key_cache_size;
SELECT count(*) FILTER (WHERE evstore.reveal(d) = jsonb_build_object('v', i)) AS ok_with_large_cache
FROM small_cache;
INSERT INTO small_cache
    SELECT i, evstore.protect(jsonb_build_object('v', i), 'small-cache-' || (i % 3), '{v}')
    FROM generate_series(7, 12) i;
SET evstore.key_cache_size = 1;
SELECT count(*) FILTER (WHERE evstore.reveal(d) = jsonb_build_object('v', i)) AS ok_with_small_cache
FROM small_cache;
RESET evstore.key_cache_size;
SELECT count(*) AS small_cache_keys FROM evstore.subject_keys WHERE subject LIKE 'small-cache-%';

-- round trips over assorted documents and wildcard depths
CREATE TEMP TABLE prop_docs AS
SELECT i, d FROM (VALUES
 (1, '{"a": 1, "b": [1, {"c": "x", "d": [true, false, null]}], "e": {"f": {"g": "h"}}}'::jsonb),
 (2, '[1, "two", [3, [4, {"five": 5}]], {"six": {"seven": [7]}}]'),
 (3, '{"": "empty key", "k.": 1}'),
 (4, '{"big": 123456789012345678901234567890.123456789, "neg": -0.0, "exp": 1e300}'),
 (5, '{"s": "quote \" backslash \\ tab \t nl \n uni \u00e9 \ud83d\ude00"}'),
 (6, '{"deep": [[[[[[[[[[{"x": 1}]]]]]]]]]]}'),
 (7, '{}'), (8, '[]'), (9, '{"a": {}, "b": []}'),
 (10, '{"$evstore_enc_not": 1, "x": "$evstore_enc"}')
) v(i, d);
SELECT count(*) FILTER (WHERE evstore.reveal(evstore.protect(d, 'prop-' || i, ARRAY[p])) = d) AS round_trips,
       count(*) AS cases
FROM prop_docs, unnest(ARRAY['*', '*.*', '*.*.*', '*.*.*.*', '1.1', '0', 'b.1.d.2', 'deep.0.0.0']) p;
