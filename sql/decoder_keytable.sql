-- The output plugin never emits the key table (or any table but
-- evstore.events), even in a transaction that creates and destroys keys.
CREATE DATABASE decoder_keytable_db TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
\set regress_db :DBNAME
\c decoder_keytable_db
CREATE EXTENSION evstore;
SELECT 'init' FROM pg_create_logical_replication_slot('dec_keys', 'evstore');

BEGIN;
SELECT stream_version FROM evstore.append_event('user-1', 'UserRegistered',
    evstore.protect('{"email": "kim@example.com", "plan": "pro"}', 'user-1', ARRAY['email']));
SELECT stream_version FROM evstore.append_event('user-2', 'UserRegistered',
    evstore.protect('{"email": "lee@example.com"}', 'user-2', ARRAY['email']));
COMMIT;
SELECT count(*) AS stored_keys FROM evstore.subject_keys;
SELECT evstore.forget('user-1');
SELECT evstore.rotate_master_key() IS NOT NULL AS rotated;

-- what the slot emits: two events and nothing else, ciphertext only
SELECT count(*) AS records,
       count(*) FILTER (WHERE data::jsonb ? 'stream_id') AS event_records,
       bool_and(data NOT LIKE '%subject_keys%' AND data NOT LIKE '%wrapped%') AS no_key_table,
       bool_and(data NOT LIKE '%example.com%') AS no_plaintext,
       bool_and(data::jsonb #> '{data,email}' ? '$evstore_enc') AS ciphertext
FROM pg_logical_slot_get_changes('dec_keys', NULL, NULL, 'include-transaction', 'false');
-- with transaction records: only the appending transaction shows up
SELECT evstore.forget('user-2');
SELECT count(*) AS records FROM pg_logical_slot_get_changes('dec_keys', NULL, NULL, 'include-transaction', 'true');
SELECT pg_drop_replication_slot('dec_keys');
\c :regress_db
DROP DATABASE decoder_keytable_db;
