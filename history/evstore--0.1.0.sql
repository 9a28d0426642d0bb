-- Frozen install script of evstore 0.1.0 (the core). Never edit: upgrades go in updates/.
-- evstore: PostgreSQL as an event store.
-- This is the single source of the install script; `make` turns it into
-- evstore--<version>.sql.  Every object is schema-qualified.

\echo Use "CREATE EXTENSION evstore" to load this file. \quit

-- Refuse to install when the library is not preloaded: the subscription
-- fence (see docs/read_all.md) lives in shared memory.
CREATE FUNCTION evstore._require_preload() RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'evstore_require_preload_sql';
SELECT evstore._require_preload();
DROP FUNCTION evstore._require_preload();

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------

-- evstore.category(stream_id text) -> text
CREATE FUNCTION evstore.category(stream_id text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'evstore_category';
COMMENT ON FUNCTION evstore.category(text) IS
    'The part of a stream id before its first "-" (the whole id when it has none)';

-- evstore.stream_hash(stream_id text) -> integer (stable FNV-1a, 0..2^31-1)
CREATE FUNCTION evstore.stream_hash(stream_id text) RETURNS integer
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'evstore_stream_hash_sql';
COMMENT ON FUNCTION evstore.stream_hash(text) IS
    'Stable hash of a stream id; stream_hash(s) % 256 is the stream''s consumer-group bucket';

-- evstore.uuid_generate_v7() -> uuid
CREATE FUNCTION evstore.uuid_generate_v7() RETURNS uuid
    LANGUAGE c VOLATILE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'evstore_uuid_generate_v7';
COMMENT ON FUNCTION evstore.uuid_generate_v7() IS
    'A time-ordered (version 7) UUID';

------------------------------------------------------------------------------
-- Storage
------------------------------------------------------------------------------

CREATE SEQUENCE evstore.global_position_seq AS bigint START 1 CACHE 1 NO CYCLE;

CREATE TABLE evstore.events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    recorded_at     timestamptz NOT NULL,
    category        text        NOT NULL,
    stream_bucket   smallint    NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (global_position),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
CREATE INDEX events_category_position_idx
    ON evstore.events (category, global_position);
CREATE INDEX events_bucket_position_idx
    ON evstore.events (stream_bucket, global_position);
ALTER SEQUENCE evstore.global_position_seq OWNED BY evstore.events.global_position;

COMMENT ON TABLE evstore.events IS
    'Append-only event log; write it only through evstore.append_event/append_events';

CREATE TABLE evstore.streams (
    stream_id     text        NOT NULL,
    category      text        NOT NULL,
    version       bigint      NOT NULL,
    first_version bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz,
    tombstoned    boolean     NOT NULL DEFAULT false,
    CONSTRAINT streams_pkey PRIMARY KEY (stream_id)
);
CREATE INDEX streams_category_idx ON evstore.streams (category);

COMMENT ON TABLE evstore.streams IS
    'One row per stream: its version (last event''s stream_version, -1 when empty) and lifecycle state';

SELECT pg_catalog.pg_extension_config_dump('evstore.events', '');
SELECT pg_catalog.pg_extension_config_dump('evstore.streams', '');
SELECT pg_catalog.pg_extension_config_dump('evstore.global_position_seq', '');

CREATE TYPE evstore.append_result AS (
    stream_version  bigint,
    global_position bigint
);

------------------------------------------------------------------------------
-- Append-only guard
------------------------------------------------------------------------------

-- evstore.guard_append_only() -> trigger
CREATE FUNCTION evstore.guard_append_only() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'evstore_guard_append_only';

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON evstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION evstore.guard_append_only();
ALTER TABLE evstore.events ENABLE ALWAYS TRIGGER events_append_only;

CREATE TRIGGER streams_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON evstore.streams
    FOR EACH STATEMENT EXECUTE FUNCTION evstore.guard_append_only();
ALTER TABLE evstore.streams ENABLE ALWAYS TRIGGER streams_append_only;

-- evstore.guard_ddl() -> event_trigger
CREATE FUNCTION evstore.guard_ddl() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'evstore_guard_ddl';

CREATE EVENT TRIGGER evstore_guard_ddl ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'DROP TRIGGER', 'CREATE RULE', 'ALTER SEQUENCE')
    EXECUTE FUNCTION evstore.guard_ddl();
ALTER EVENT TRIGGER evstore_guard_ddl ENABLE ALWAYS;

------------------------------------------------------------------------------
-- Appending
------------------------------------------------------------------------------

-- evstore.append_event(stream_id text, event_type text, data jsonb,
--     metadata jsonb, expected_version bigint, event_id uuid) -> append_result
CREATE FUNCTION evstore.append_event(
    stream_id text,
    event_type text,
    data jsonb,
    metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL,
    event_id uuid DEFAULT NULL)
RETURNS evstore.append_result
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_append_event';

-- evstore.append_events(stream_id text, events jsonb,
--     expected_version bigint) -> append_result
CREATE FUNCTION evstore.append_events(
    stream_id text,
    events jsonb,
    expected_version bigint DEFAULT NULL)
RETURNS evstore.append_result
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_append_events';

------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------

-- evstore.read_stream(stream_id text, from_version bigint, max_count bigint,
--     backwards boolean) -> SETOF evstore.events
CREATE FUNCTION evstore.read_stream(
    stream_id text,
    from_version bigint DEFAULT NULL,
    max_count bigint DEFAULT NULL,
    backwards boolean DEFAULT false)
RETURNS SETOF evstore.events
    LANGUAGE c STABLE PARALLEL SAFE ROWS 20
    AS 'MODULE_PATHNAME', 'evstore_read_stream';

-- evstore.stream_version(stream_id text) -> bigint
CREATE FUNCTION evstore.stream_version(stream_id text) RETURNS bigint
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'evstore_stream_version';

-- evstore.read_all(after_position bigint, max_count integer, categories text[],
--     event_types text[], group_member integer, group_size integer)
--     -> SETOF evstore.events
CREATE FUNCTION evstore.read_all(
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_member integer DEFAULT NULL,
    group_size integer DEFAULT NULL)
RETURNS SETOF evstore.events
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'evstore_read_all';

-- evstore.read_all_horizon() -> bigint
CREATE FUNCTION evstore.read_all_horizon() RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_read_all_horizon';
COMMENT ON FUNCTION evstore.read_all_horizon() IS
    'Highest global position read_all may return now: every event at or below it is committed or will never be';

-- evstore.appenders() -> SETOF (pid integer, low_position bigint)
CREATE FUNCTION evstore.appenders(OUT pid integer, OUT min_position bigint)
RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_appenders';
COMMENT ON FUNCTION evstore.appenders() IS
    'Backends with an appending transaction in flight and the position below which they hold read_all back';

------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; grant explicitly (see docs/reference.md).
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA evstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA evstore FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore.append_event(text, text, jsonb, jsonb, bigint, uuid),
    evstore.append_events(text, jsonb, bigint),
    evstore.read_stream(text, bigint, bigint, boolean),
    evstore.stream_version(text),
    evstore.read_all(bigint, integer, text[], text[], integer, integer),
    evstore.read_all_horizon(),
    evstore.appenders(),
    evstore.guard_append_only(),
    evstore.guard_ddl()
FROM PUBLIC;
