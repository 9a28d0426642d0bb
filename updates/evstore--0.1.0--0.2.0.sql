-- evstore 0.1.0 -> 0.2.0
-- Every object added to src/evstore.sql after 0.1.0 must be created here
-- too (t/010_upgrade.pl checks that an upgraded database has exactly the
-- schema of a fresh install).

\echo Use "ALTER EXTENSION evstore UPDATE TO '0.2.0'" to load this file. \quit

-- ==== crypto-shredding (0.2.0) ====
-- Forgettable payloads (docs/shredding.md): one data key per subject, kept
-- only wrapped under a master key from outside SQL.  The key table is for
-- the extension's C functions only: no privilege for anyone else.

CREATE TABLE evstore.subject_keys (
    key_id         bigint      NOT NULL,
    subject        text        NOT NULL,
    master_version integer,
    wrapped_key    bytea,
    created_at     timestamptz NOT NULL,
    forgotten_at   timestamptz,
    CONSTRAINT subject_keys_pkey PRIMARY KEY (key_id),
    CONSTRAINT subject_keys_state_check CHECK (
        (wrapped_key IS NULL) = (forgotten_at IS NOT NULL)
        AND (wrapped_key IS NULL) = (master_version IS NULL))
);
CREATE INDEX subject_keys_subject_idx ON evstore.subject_keys (subject);
COMMENT ON TABLE evstore.subject_keys IS
    'Data keys of crypto-shredding, wrapped under the master key; a forgotten key keeps its row without key';
REVOKE ALL ON evstore.subject_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('evstore.subject_keys', '');

-- evstore.protect(data jsonb, subject text, paths text[]) -> jsonb
CREATE FUNCTION evstore.protect(data jsonb, subject text, paths text[])
RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_protect';
COMMENT ON FUNCTION evstore.protect(jsonb, text, text[]) IS
    'data with the fields at paths (dotted, e.g. address.street) encrypted under the subject''s key';

-- evstore.protect(data jsonb, subject text, paths text[], allow_forgotten boolean) -> jsonb
CREATE FUNCTION evstore.protect(data jsonb, subject text, paths text[], allow_forgotten boolean)
RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_protect_allow';
COMMENT ON FUNCTION evstore.protect(jsonb, text, text[], boolean) IS
    'protect(); with allow_forgotten a forgotten subject gets a new key instead of an error';

-- evstore.reveal(data jsonb) -> jsonb
CREATE FUNCTION evstore.reveal(data jsonb) RETURNS jsonb
    LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'evstore_reveal';
COMMENT ON FUNCTION evstore.reveal(jsonb) IS
    'data with every protected field decrypted; fields of forgotten subjects become JSON null';

-- evstore.reveal(data jsonb, placeholder jsonb) -> jsonb
CREATE FUNCTION evstore.reveal(data jsonb, placeholder jsonb) RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'evstore_reveal_placeholder';
COMMENT ON FUNCTION evstore.reveal(jsonb, jsonb) IS
    'reveal(); fields of forgotten subjects become placeholder';

-- evstore.forget(subject text) -> boolean
CREATE FUNCTION evstore.forget(subject text) RETURNS boolean
    LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_forget';
COMMENT ON FUNCTION evstore.forget(text) IS
    'Destroys the subject''s data key (true when it had one) and records the subject as forgotten';

-- evstore.is_forgotten(subject text) -> boolean
CREATE FUNCTION evstore.is_forgotten(subject text) RETURNS boolean
    LANGUAGE c VOLATILE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'evstore_is_forgotten';
COMMENT ON FUNCTION evstore.is_forgotten(text) IS
    'Whether the subject was forgotten and has no live key';

-- evstore.rotate_master_key() -> bigint
CREATE FUNCTION evstore.rotate_master_key() RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_rotate_master_key';
COMMENT ON FUNCTION evstore.rotate_master_key() IS
    'Re-wraps every live data key under the newest master key version; returns how many it re-wrapped';

REVOKE ALL ON FUNCTION
    evstore.protect(jsonb, text, text[]),
    evstore.protect(jsonb, text, text[], boolean),
    evstore.reveal(jsonb),
    evstore.reveal(jsonb, jsonb),
    evstore.forget(text),
    evstore.is_forgotten(text),
    evstore.rotate_master_key()
FROM PUBLIC;
