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

-- DDL on evstore's objects is refused before it runs by a ProcessUtility
-- hook (src/ddl_guard.c); this event trigger is the second line for a
-- backend that had not loaded evstore yet, and checks that the guard
-- triggers stay enabled ALWAYS, that there are no rules and that the
-- sequence has CACHE 1 NO CYCLE.
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
--     event_types text[], group_member integer, group_size integer,
--     category_prefixes text[], include_system boolean, timeout interval)
--     -> SETOF evstore.events
CREATE FUNCTION evstore.read_all(
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_member integer DEFAULT NULL,
    group_size integer DEFAULT NULL,
    category_prefixes text[] DEFAULT NULL,
    include_system boolean DEFAULT true,
    timeout interval DEFAULT NULL)
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
    evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean, interval),
    evstore.read_all_horizon(),
    evstore.appenders(),
    evstore.guard_append_only(),
    evstore.guard_ddl()
FROM PUBLIC;

-- ==== lifecycle (0.2.0) ====
-- Stream deletion, snapshots, durable subscriptions, idempotent consumers,
-- correlation and causation lookups.  Reference: docs/lifecycle.md.

------------------------------------------------------------------------------
-- Deleting streams
------------------------------------------------------------------------------

-- evstore.delete_stream(stream_id text, expected_version bigint,
--     metadata jsonb) -> append_result
CREATE FUNCTION evstore.delete_stream(
    stream_id text,
    expected_version bigint DEFAULT NULL,
    metadata jsonb DEFAULT NULL)
RETURNS evstore.append_result
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_delete_stream';
COMMENT ON FUNCTION evstore.delete_stream(text, bigint, jsonb) IS
    'Soft-delete a stream: appends a "$StreamDeleted" marker, reads return nothing, a later append continues after the marker';

-- evstore.tombstone_stream(stream_id text, expected_version bigint,
--     metadata jsonb) -> append_result
CREATE FUNCTION evstore.tombstone_stream(
    stream_id text,
    expected_version bigint DEFAULT NULL,
    metadata jsonb DEFAULT NULL)
RETURNS evstore.append_result
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_tombstone_stream';
COMMENT ON FUNCTION evstore.tombstone_stream(text, bigint, jsonb) IS
    'Delete a stream for good: appends a "$StreamTombstoned" marker; later appends fail with ES002';

------------------------------------------------------------------------------
-- Snapshots: one per stream, the newest wins
------------------------------------------------------------------------------

CREATE TABLE evstore.snapshots (
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    state          jsonb       NOT NULL,
    created_at     timestamptz NOT NULL,
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id),
    CONSTRAINT snapshots_stream_version_check CHECK (stream_version >= 0)
);
COMMENT ON TABLE evstore.snapshots IS
    'Latest snapshot of each stream: the state after applying its events up to stream_version';
SELECT pg_catalog.pg_extension_config_dump('evstore.snapshots', '');

-- evstore.save_snapshot(stream_id text, stream_version bigint, state jsonb) -> boolean
CREATE FUNCTION evstore.save_snapshot(
    stream_id text,
    stream_version bigint,
    state jsonb)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    st record;
BEGIN
    IF $1 IS NULL OR $1 = '' THEN
        RAISE EXCEPTION 'stream_id must not be null or empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL OR $3 IS NULL THEN
        RAISE EXCEPTION 'stream_version and state must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $2 < 0 THEN
        RAISE EXCEPTION 'stream_version must be >= 0, not %', $2
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.version, s.first_version, s.deleted_at IS NOT NULL AS deleted
      INTO st FROM evstore.streams s WHERE s.stream_id = $1;
    IF NOT FOUND OR st.deleted OR $2 > st.version THEN
        RAISE EXCEPTION 'cannot save a snapshot of stream "%" at version %', $1, $2
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The stream''s version is %s; a snapshot cannot be ahead of the stream.',
                                  CASE WHEN NOT FOUND OR st.deleted THEN -1 ELSE st.version END);
    END IF;
    IF $2 < st.first_version THEN
        RAISE EXCEPTION 'cannot save a snapshot of stream "%" at version %', $1, $2
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('The stream was deleted and restarted at version %s; older events are no longer part of it.',
                                  st.first_version);
    END IF;
    INSERT INTO evstore.snapshots AS sn (stream_id, stream_version, state, created_at)
        VALUES ($1, $2, $3, pg_catalog.clock_timestamp())
        ON CONFLICT ON CONSTRAINT snapshots_pkey DO UPDATE
            SET stream_version = excluded.stream_version,
                state = excluded.state,
                created_at = excluded.created_at
            WHERE sn.stream_version <= excluded.stream_version
               OR sn.stream_version < st.first_version;
    RETURN FOUND;
END
$fn$;
COMMENT ON FUNCTION evstore.save_snapshot(text, bigint, jsonb) IS
    'Store the state of a stream as of stream_version; false when a newer snapshot is already stored';

-- evstore.load_snapshot(stream_id text) -> TABLE (stream_version bigint, state jsonb)
CREATE FUNCTION evstore.load_snapshot(stream_id text)
RETURNS TABLE (stream_version bigint, state jsonb)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    SELECT sn.stream_version, sn.state
    FROM evstore.snapshots sn
    JOIN evstore.streams s ON s.stream_id = sn.stream_id
    WHERE sn.stream_id = $1
      AND s.deleted_at IS NULL
      AND sn.stream_version BETWEEN s.first_version AND s.version
$fn$;
COMMENT ON FUNCTION evstore.load_snapshot(text) IS
    'The latest snapshot of a live stream (no row when there is none); continue with read_stream(stream_id, stream_version + 1)';

-- evstore.delete_snapshot(stream_id text) -> boolean
CREATE FUNCTION evstore.delete_snapshot(stream_id text)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    DELETE FROM evstore.snapshots sn WHERE sn.stream_id = $1;
    RETURN FOUND;
END
$fn$;
COMMENT ON FUNCTION evstore.delete_snapshot(text) IS
    'Forget the snapshot of a stream (e.g. after the shape of its state changed)';

------------------------------------------------------------------------------
-- Durable subscriptions: server-side checkpoints over read_all
------------------------------------------------------------------------------

-- One row per member of a subscription's consumer group.
CREATE TABLE evstore.subscription_checkpoints (
    subscription   text        NOT NULL,
    member         integer     NOT NULL,
    group_size     integer     NOT NULL,
    categories     text[],
    event_types    text[],
    lease_timeout  interval    NOT NULL,
    acked_position bigint      NOT NULL,
    consumer       text,
    lease_until    timestamptz,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT subscription_checkpoints_pkey PRIMARY KEY (subscription, member),
    CONSTRAINT subscription_checkpoints_member_check
        CHECK (group_size BETWEEN 1 AND 256 AND member >= 0 AND member < group_size),
    CONSTRAINT subscription_checkpoints_position_check CHECK (acked_position >= 0)
);
COMMENT ON TABLE evstore.subscription_checkpoints IS
    'Durable subscriptions: filters, acknowledged position and lease of each consumer-group member';
SELECT pg_catalog.pg_extension_config_dump('evstore.subscription_checkpoints', '');

-- evstore.create_subscription(name text, categories text[], event_types text[],
--     group_size integer, start_position bigint, lease_timeout interval) -> void
CREATE FUNCTION evstore.create_subscription(
    name text,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_size integer DEFAULT 1,
    start_position bigint DEFAULT 0,
    lease_timeout interval DEFAULT '30 seconds')
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF $1 IS NULL OR $1 = '' THEN
        RAISE EXCEPTION 'subscription name must not be null or empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.octet_length($1) > 1024 THEN
        RAISE EXCEPTION 'subscription name is too long'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('It is %s bytes long; the limit is 1024 bytes.', pg_catalog.octet_length($1));
    END IF;
    IF $4 IS NULL OR $4 < 1 OR $4 > 256 THEN
        RAISE EXCEPTION 'group_size must be between 1 and 256, not %', coalesce($4::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $5 IS NULL OR $5 < 0 THEN
        RAISE EXCEPTION 'start_position must be >= 0, not %', coalesce($5::text, 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 0 for the whole history, evstore.read_all_horizon() for new events only.';
    END IF;
    IF $6 IS NULL OR $6 <= interval '0' THEN
        RAISE EXCEPTION 'lease_timeout must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_position($2, NULL) IS NOT NULL OR array_position($3, NULL) IS NOT NULL
       OR array_ndims($2) > 1 OR array_ndims($3) > 1 THEN
        RAISE EXCEPTION 'categories and event_types must be one-dimensional arrays without nulls'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM evstore.subscription_checkpoints c WHERE c.subscription = $1) THEN
        RAISE EXCEPTION 'subscription "%" already exists', $1
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO evstore.subscription_checkpoints
        (subscription, member, group_size, categories, event_types, lease_timeout,
         acked_position, created_at, updated_at)
    SELECT $1, m, $4, $2, $3, $6, $5, pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp()
    FROM pg_catalog.generate_series(0, $4 - 1) AS m
    ON CONFLICT ON CONSTRAINT subscription_checkpoints_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" already exists', $1
            USING ERRCODE = 'duplicate_object';
    END IF;
END
$fn$;
COMMENT ON FUNCTION evstore.create_subscription(text, text[], text[], integer, bigint, interval) IS
    'Create a durable subscription: filters, number of consumer-group members, start position and lease timeout';

-- evstore.drop_subscription(name text, if_exists boolean) -> boolean
CREATE FUNCTION evstore.drop_subscription(name text, if_exists boolean DEFAULT false)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    DELETE FROM evstore.subscription_checkpoints c WHERE c.subscription = $1;
    IF NOT FOUND AND NOT coalesce($2, false) THEN
        RAISE EXCEPTION 'subscription "%" does not exist', $1
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN FOUND;
END
$fn$;
COMMENT ON FUNCTION evstore.drop_subscription(text, boolean) IS
    'Drop a durable subscription and its checkpoints';

-- Lock and return a member's row; clear errors for unknown names/members.
-- evstore._subscription_member(name text, member integer) -> subscription_checkpoints
CREATE FUNCTION evstore._subscription_member(name text, member integer)
RETURNS evstore.subscription_checkpoints
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
    n integer;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'subscription name and member must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO r FROM evstore.subscription_checkpoints c
        WHERE c.subscription = $1 AND c.member = $2 FOR UPDATE;
    IF NOT FOUND THEN
        SELECT max(c.group_size) INTO n FROM evstore.subscription_checkpoints c
            WHERE c.subscription = $1;
        IF n IS NULL THEN
            RAISE EXCEPTION 'subscription "%" does not exist', $1
                USING ERRCODE = 'undefined_object';
        END IF;
        RAISE EXCEPTION 'subscription "%" has no member %', $1, $2
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Its consumer group has %s members, numbered 0 to %s.', n, n - 1);
    END IF;
    RETURN r;
END
$fn$;

-- evstore.subscription_fetch(name text, member integer, max_count integer,
--     consumer text, timeout interval) -> SETOF evstore.events
CREATE FUNCTION evstore.subscription_fetch(
    name text,
    member integer DEFAULT 0,
    max_count integer DEFAULT 100,
    consumer text DEFAULT NULL,
    timeout interval DEFAULT NULL)
RETURNS SETOF evstore.events
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER ROWS 100
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
BEGIN
    IF $3 IS NULL OR $3 <= 0 THEN
        RAISE EXCEPTION 'max_count must be > 0, not %', coalesce($3::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 = '' THEN
        RAISE EXCEPTION 'consumer must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.octet_length($4) > 1024 THEN
        RAISE EXCEPTION 'consumer is too long'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('It is %s bytes long; the limit is 1024 bytes.', pg_catalog.octet_length($4));
    END IF;
    -- waiting reads (0.3.0): wait, holding no lock, until there is something
    IF $5 IS NOT NULL THEN
        PERFORM evstore._subscription_wait($1, $2, $4, $5);
    END IF;
    -- fast path: our own lease has more than half of its time left, so no
    -- other consumer can take the member; read without locking or writing
    IF $4 IS NOT NULL THEN
        SELECT * INTO r FROM evstore.subscription_checkpoints c
            WHERE c.subscription = $1 AND c.member = $2;
        IF FOUND AND r.consumer = $4
           AND r.lease_until - r.lease_timeout / 2 > pg_catalog.clock_timestamp() THEN
            RETURN QUERY SELECT * FROM evstore.read_all(r.acked_position, $3, r.categories,
                r.event_types,
                CASE WHEN r.group_size > 1 THEN r.member END,
                CASE WHEN r.group_size > 1 THEN r.group_size END);
            RETURN;
        END IF;
    END IF;
    r := evstore._subscription_member($1, $2);
    -- another consumer holds this member's lease: nothing for us
    IF r.consumer IS NOT NULL AND r.lease_until > pg_catalog.clock_timestamp()
       AND r.consumer IS DISTINCT FROM $4 THEN
        RETURN;
    END IF;
    IF $4 IS NOT NULL THEN
        UPDATE evstore.subscription_checkpoints c
            SET consumer = $4, lease_until = pg_catalog.clock_timestamp() + r.lease_timeout
            WHERE c.subscription = $1 AND c.member = $2;
    END IF;
    RETURN QUERY SELECT * FROM evstore.read_all(r.acked_position, $3, r.categories, r.event_types,
        CASE WHEN r.group_size > 1 THEN r.member END,
        CASE WHEN r.group_size > 1 THEN r.group_size END);
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_fetch(text, integer, integer, text, interval) IS
    'Next events of a subscription member after its acknowledged position (never skips; at-least-once); takes or renews the member''s lease for a named consumer; with a timeout, waits for events first';

-- evstore.subscription_ack(name text, member integer, position bigint,
--     consumer text) -> boolean
CREATE FUNCTION evstore.subscription_ack(
    name text,
    member integer,
    "position" bigint,
    consumer text DEFAULT NULL)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
    horizon bigint;
    moved boolean;
BEGIN
    IF $3 IS NULL OR $3 < 0 THEN
        RAISE EXCEPTION 'position must be >= 0, not %', coalesce($3::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 = '' THEN
        RAISE EXCEPTION 'consumer must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.octet_length($4) > 1024 THEN
        RAISE EXCEPTION 'consumer is too long'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('It is %s bytes long; the limit is 1024 bytes.', pg_catalog.octet_length($4));
    END IF;
    r := evstore._subscription_member($1, $2);
    IF r.consumer IS NOT NULL AND r.lease_until > pg_catalog.clock_timestamp()
       AND r.consumer IS DISTINCT FROM $4 THEN
        RAISE EXCEPTION 'member % of subscription "%" is leased by consumer "%"', $2, $1, r.consumer
            USING ERRCODE = 'lock_not_available',
                  DETAIL = format('The lease runs until %s.', r.lease_until),
                  HINT = 'A consumer whose lease expired must stop and fetch again.';
    END IF;
    horizon := evstore.read_all_horizon();
    IF $3 > horizon THEN
        RAISE EXCEPTION 'cannot acknowledge position % of subscription "%"', $3, $1
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('read_all has not reached it yet (its horizon is %s); acknowledging it could skip events.', horizon);
    END IF;
    moved := $3 > r.acked_position;
    UPDATE evstore.subscription_checkpoints c
        SET acked_position = greatest(c.acked_position, $3),
            updated_at = CASE WHEN moved THEN pg_catalog.clock_timestamp() ELSE c.updated_at END,
            consumer = coalesce($4, c.consumer),
            lease_until = CASE WHEN $4 IS NULL THEN c.lease_until
                               ELSE pg_catalog.clock_timestamp() + c.lease_timeout END
        WHERE c.subscription = $1 AND c.member = $2;
    RETURN moved;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_ack(text, integer, bigint, text) IS
    'Move a member''s checkpoint forward to position (compare-and-set: never backwards; false when it was already there)';

-- evstore.subscription_release(name text, member integer, consumer text) -> boolean
CREATE FUNCTION evstore.subscription_release(name text, member integer, consumer text)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
BEGIN
    r := evstore._subscription_member($1, $2);
    IF r.consumer IS DISTINCT FROM $3 THEN
        RETURN false;
    END IF;
    UPDATE evstore.subscription_checkpoints c
        SET consumer = NULL, lease_until = NULL
        WHERE c.subscription = $1 AND c.member = $2;
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_release(text, integer, text) IS
    'Give up a member''s lease (clean shutdown) so another consumer can take over at once';

CREATE VIEW evstore.subscriptions AS
SELECT c.subscription AS name,
       c.member,
       c.group_size,
       c.categories,
       c.event_types,
       c.acked_position,
       (SELECT count(*) FROM evstore.events e
         WHERE e.global_position > c.acked_position
           AND (c.categories IS NULL OR e.category = ANY (c.categories))
           AND (c.event_types IS NULL OR e.event_type = ANY (c.event_types))
           AND (c.group_size = 1 OR e.stream_bucket % c.group_size = c.member)) AS lag,
       CASE WHEN c.lease_until > pg_catalog.clock_timestamp() THEN c.consumer END AS consumer,
       CASE WHEN c.lease_until > pg_catalog.clock_timestamp() THEN c.lease_until END AS lease_until,
       c.lease_timeout,
       c.created_at,
       c.updated_at
FROM evstore.subscription_checkpoints c;
COMMENT ON VIEW evstore.subscriptions IS
    'Durable subscriptions, one row per consumer-group member, with lag (committed matching events after the checkpoint) and current lease';

------------------------------------------------------------------------------
-- Idempotent consumers: processed-message records
------------------------------------------------------------------------------

CREATE TABLE evstore.processed_messages (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL,
    CONSTRAINT processed_messages_pkey PRIMARY KEY (consumer, event_id),
    CONSTRAINT processed_messages_consumer_check CHECK (consumer <> '')
);
COMMENT ON TABLE evstore.processed_messages IS
    'Events each consumer has processed, recorded in the consumer''s own transaction';
SELECT pg_catalog.pg_extension_config_dump('evstore.processed_messages', '');

-- evstore.mark_processed(consumer text, event_id uuid) -> boolean
CREATE FUNCTION evstore.mark_processed(consumer text, event_id uuid)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF $1 IS NULL OR $1 = '' OR $2 IS NULL THEN
        RAISE EXCEPTION 'consumer and event_id must not be null or empty'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF pg_catalog.octet_length($1) > 1024 THEN
        RAISE EXCEPTION 'consumer is too long'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('It is %s bytes long; the limit is 1024 bytes.', pg_catalog.octet_length($1));
    END IF;
    INSERT INTO evstore.processed_messages (consumer, event_id, processed_at)
        VALUES ($1, $2, pg_catalog.now())
        ON CONFLICT ON CONSTRAINT processed_messages_pkey DO NOTHING;
    RETURN FOUND;
END
$fn$;
COMMENT ON FUNCTION evstore.mark_processed(text, uuid) IS
    'Record that consumer processed event_id in the current transaction; true the first time, false for a duplicate';

-- evstore.is_processed(consumer text, event_id uuid) -> boolean
CREATE FUNCTION evstore.is_processed(consumer text, event_id uuid)
RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    SELECT EXISTS (SELECT FROM evstore.processed_messages p
                   WHERE p.consumer = $1 AND p.event_id = $2)
$fn$;

-- evstore.prune_processed(consumer text, older_than timestamptz) -> bigint
CREATE FUNCTION evstore.prune_processed(consumer text, older_than timestamptz)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    n bigint;
BEGIN
    IF $1 IS NULL OR $2 IS NULL THEN
        RAISE EXCEPTION 'consumer and older_than must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    DELETE FROM evstore.processed_messages p
        WHERE p.consumer = $1 AND p.processed_at < $2;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION evstore.prune_processed(text, timestamptz) IS
    'Forget a consumer''s processed-message records older than a time (once redelivery of such old events is impossible)';

------------------------------------------------------------------------------
-- Correlation and causation (metadata keys correlation_id, causation_id)
------------------------------------------------------------------------------

CREATE INDEX events_correlation_idx
    ON evstore.events ((metadata ->> 'correlation_id'), global_position)
    WHERE metadata ? 'correlation_id';
CREATE INDEX events_causation_idx
    ON evstore.events ((metadata ->> 'causation_id'), global_position)
    WHERE metadata ? 'causation_id';

-- evstore.read_correlated(correlation_id text, after_position bigint,
--     max_count integer) -> SETOF evstore.events
CREATE FUNCTION evstore.read_correlated(
    correlation_id text,
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000)
RETURNS SETOF evstore.events
    LANGUAGE sql STABLE SECURITY DEFINER ROWS 20
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    SELECT e.* FROM evstore.events e
    WHERE e.metadata ? 'correlation_id'
      AND e.metadata ->> 'correlation_id' = $1
      AND e.global_position > coalesce($2, 0)
    ORDER BY e.global_position
    LIMIT $3
$fn$;
COMMENT ON FUNCTION evstore.read_correlated(text, bigint, integer) IS
    'Events whose metadata carries this correlation_id, in global order';

-- evstore.causal_chain(root_event_id uuid, max_depth integer)
--     -> TABLE (depth integer, <columns of evstore.events>)
CREATE FUNCTION evstore.causal_chain(root_event_id uuid, max_depth integer DEFAULT 100)
RETURNS TABLE (depth integer, global_position bigint, stream_id text,
               stream_version bigint, event_id uuid, event_type text,
               data jsonb, metadata jsonb, recorded_at timestamptz,
               category text, stream_bucket smallint)
    LANGUAGE sql STABLE SECURITY DEFINER ROWS 20
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH RECURSIVE chain (depth, pos, id) AS (
        SELECT 0, e.global_position, e.event_id
        FROM evstore.events e WHERE e.event_id = $1
      UNION
        SELECT c.depth + 1, e.global_position, e.event_id
        FROM chain c
        JOIN evstore.events e
          ON e.metadata ? 'causation_id' AND e.metadata ->> 'causation_id' = c.id::text
        WHERE c.depth < $2
    )
    SELECT c.depth, e.*
    FROM (SELECT pos, min(depth) AS depth FROM chain GROUP BY pos) c
    JOIN evstore.events e ON e.global_position = c.pos
    ORDER BY e.global_position
$fn$;
COMMENT ON FUNCTION evstore.causal_chain(uuid, integer) IS
    'An event and every event it caused, transitively (metadata causation_id), with the causal distance, in global order';

-- evstore.causes(start_event_id uuid, max_depth integer)
--     -> TABLE (depth integer, <columns of evstore.events>)
CREATE FUNCTION evstore.causes(start_event_id uuid, max_depth integer DEFAULT 100)
RETURNS TABLE (depth integer, global_position bigint, stream_id text,
               stream_version bigint, event_id uuid, event_type text,
               data jsonb, metadata jsonb, recorded_at timestamptz,
               category text, stream_bucket smallint)
    LANGUAGE sql STABLE SECURITY DEFINER ROWS 5
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH RECURSIVE up (depth, pos, cause) AS (
        SELECT 0, e.global_position, e.metadata ->> 'causation_id'
        FROM evstore.events e WHERE e.event_id = $1
      UNION ALL
        SELECT u.depth + 1, e.global_position, e.metadata ->> 'causation_id'
        FROM up u
        JOIN evstore.events e
          ON e.event_id = CASE WHEN u.cause ~* '^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$'
                               THEN u.cause::uuid END
        WHERE u.depth < $2
    )
    SELECT u.depth, e.*
    FROM up u JOIN evstore.events e ON e.global_position = u.pos
    ORDER BY u.depth
$fn$;
COMMENT ON FUNCTION evstore.causes(uuid, integer) IS
    'An event and its causes, following metadata causation_id back to the event with that id (depth 1 = the direct cause)';

------------------------------------------------------------------------------
-- Privileges of the lifecycle objects
------------------------------------------------------------------------------

REVOKE ALL ON TABLE
    evstore.snapshots,
    evstore.subscription_checkpoints,
    evstore.subscriptions,
    evstore.processed_messages
FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore.delete_stream(text, bigint, jsonb),
    evstore.tombstone_stream(text, bigint, jsonb),
    evstore.save_snapshot(text, bigint, jsonb),
    evstore.load_snapshot(text),
    evstore.delete_snapshot(text),
    evstore.create_subscription(text, text[], text[], integer, bigint, interval),
    evstore.drop_subscription(text, boolean),
    evstore._subscription_member(text, integer),
    evstore.subscription_fetch(text, integer, integer, text, interval),
    evstore.subscription_ack(text, integer, bigint, text),
    evstore.subscription_release(text, integer, text),
    evstore.mark_processed(text, uuid),
    evstore.is_processed(text, uuid),
    evstore.prune_processed(text, timestamptz),
    evstore.read_correlated(text, bigint, integer),
    evstore.causal_chain(uuid, integer),
    evstore.causes(uuid, integer)
FROM PUBLIC;

-- ==== projections (0.2.0) ====
-- Read models maintained inside the appending transaction (docs/projections.md).
-- Definitions live in evstore.projections_catalog (dumped with the data);
-- counters and rebuild progress live in shared memory (see the views).

CREATE TABLE evstore.projections_catalog (
    name           text        NOT NULL,
    kind           text        NOT NULL,
    owner          regrole     NOT NULL,
    handler        text,
    reset_function text,
    target         regclass,
    key_column     name,
    key_source     text,
    upsert_types   text[],
    delete_types   text[],
    column_map     jsonb,
    categories     text[],
    event_types    text[],
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    rebuilt_at     timestamptz,
    search_path    text,
    CONSTRAINT projections_catalog_pkey PRIMARY KEY (name),
    CONSTRAINT projections_catalog_kind_check CHECK (kind IN ('handler', 'sync'))
);
COMMENT ON TABLE evstore.projections_catalog IS
    'Projection definitions; change them only through evstore.create_projection/create_sync_projection/drop_projection';
COMMENT ON COLUMN evstore.projections_catalog.search_path IS
    'The creator''s search_path (less pg_temp), captured by create_projection; the projection runs with it, then pg_temp. NULL: created before 0.3.0, runs with pg_catalog, pg_temp';
SELECT pg_catalog.pg_extension_config_dump('evstore.projections_catalog', '');

-- evstore.projections_catalog_changed() -> trigger
-- Any change to the catalog (pg_restore's COPY included) makes every
-- backend reload its cached projections.
CREATE FUNCTION evstore.projections_catalog_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'evstore_projections_catalog_changed';
CREATE TRIGGER projections_catalog_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evstore.projections_catalog
    FOR EACH STATEMENT EXECUTE FUNCTION evstore.projections_catalog_changed();

-- evstore.create_projection(name text, handler regprocedure, categories text[],
--     event_types text[], reset_function regprocedure) -> void
CREATE FUNCTION evstore.create_projection(
    name text,
    handler regprocedure,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    reset_function regprocedure DEFAULT NULL)
RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_create_projection';

-- evstore.create_sync_projection(name text, target regclass, key_column name,
--     key_source text, upsert_types text[], delete_types text[],
--     column_map jsonb, categories text[]) -> void
CREATE FUNCTION evstore.create_sync_projection(
    name text,
    target regclass,
    key_column name,
    key_source text DEFAULT 'stream_id',
    upsert_types text[] DEFAULT NULL,
    delete_types text[] DEFAULT NULL,
    column_map jsonb DEFAULT NULL,
    categories text[] DEFAULT NULL)
RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_create_sync_projection';

-- evstore.drop_projection(name text, if_exists boolean) -> boolean
CREATE FUNCTION evstore.drop_projection(name text, if_exists boolean DEFAULT false)
RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_drop_projection';

-- evstore.rebuild_projection(name text, notice_every integer) -> bigint
CREATE FUNCTION evstore.rebuild_projection(name text, notice_every integer DEFAULT 10000)
RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_rebuild_projection';

-- evstore.projection_stats() -> SETOF (name, events_processed, last_position,
--     last_error, last_error_position, last_error_at)
CREATE FUNCTION evstore.projection_stats(
    OUT name text, OUT events_processed bigint, OUT last_position bigint,
    OUT last_error text, OUT last_error_position bigint,
    OUT last_error_at timestamptz)
RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_projection_stats';

-- evstore.projection_rebuild_progress() -> SETOF (name, pid, started_at,
--     events_replayed, position, target_position)
CREATE FUNCTION evstore.projection_rebuild_progress(
    OUT name text, OUT pid integer, OUT started_at timestamptz,
    OUT events_replayed bigint, OUT at_position bigint, OUT target_position bigint)
RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_projection_rebuild_progress';

CREATE VIEW evstore.projections AS
SELECT c.name, c.kind, c.owner, c.handler, c.reset_function, c.target,
       c.key_column, c.key_source, c.upsert_types, c.delete_types,
       c.column_map, c.categories, c.event_types, c.created_at, c.rebuilt_at,
       COALESCE(s.events_processed, 0) AS events_processed,
       s.last_position, s.last_error, s.last_error_position, s.last_error_at,
       c.search_path
  FROM evstore.projections_catalog c
  LEFT JOIN evstore.projection_stats() s ON s.name = c.name;
COMMENT ON VIEW evstore.projections IS
    'Projections with their definition and, since server start or their last rebuild, what committed transactions applied';

CREATE VIEW evstore.projection_rebuilds AS
SELECT * FROM evstore.projection_rebuild_progress();
COMMENT ON VIEW evstore.projection_rebuilds IS
    'Rebuilds in progress: events replayed so far and the position reached';

REVOKE ALL ON evstore.projections_catalog, evstore.projections,
    evstore.projection_rebuilds FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore.create_projection(text, regprocedure, text[], text[], regprocedure),
    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[]),
    evstore.drop_projection(text, boolean),
    evstore.rebuild_projection(text, integer),
    evstore.projection_stats(),
    evstore.projection_rebuild_progress(),
    evstore.projections_catalog_changed()
FROM PUBLIC;

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

-- ==== multi-stream appends (0.3.0) ====
-- Several streams in one call, all or nothing, locks taken in one order
-- (docs/reference.md, "Multi-stream transactions").

-- evstore.append_multi(appends jsonb)
--     -> TABLE (stream_id text, stream_version bigint, global_position bigint)
CREATE FUNCTION evstore.append_multi(appends jsonb)
RETURNS TABLE (stream_id text, stream_version bigint, global_position bigint)
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 2
    AS 'MODULE_PATHNAME', 'evstore_append_multi';
COMMENT ON FUNCTION evstore.append_multi(jsonb) IS
    'Append to several streams atomically: [{"stream_id", "expected_version", "events": [...]}, ...]; locks the streams in byte order of their ids first';

-- evstore.lock_streams(stream_ids text[]) -> void
CREATE FUNCTION evstore.lock_streams(stream_ids text[])
RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_lock_streams';
COMMENT ON FUNCTION evstore.lock_streams(text[]) IS
    'Take the append locks of these streams until the transaction ends, in the order append_multi uses (byte order of the ids)';

REVOKE ALL ON FUNCTION
    evstore.append_multi(jsonb),
    evstore.lock_streams(text[])
FROM PUBLIC;

-- ==== metrics (0.3.0) ====
-- Counters per database in shared memory (src/stats.c) and the lag of the
-- horizon, projections and subscriptions, in one place for monitoring
-- (docs/operations.md, "Monitoring"; docs/postgres_exporter.yml).

-- evstore._stats_counters() -> record: this database's counters, the
-- position sequence's last value and the read_all horizon
CREATE FUNCTION evstore._stats_counters(
    OUT appends bigint, OUT events bigint, OUT conflicts bigint,
    OUT idempotent_retries bigint, OUT read_all_calls bigint,
    OUT read_all_events bigint, OUT last_position bigint, OUT horizon bigint,
    OUT stats_reset timestamptz)
RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_stats_counters';

-- evstore.stats_reset() -> void
CREATE FUNCTION evstore.stats_reset() RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_stats_reset';
COMMENT ON FUNCTION evstore.stats_reset() IS
    'Zero this database''s evstore.stats counters (appends, events, conflicts, retries, read_all)';

-- evstore.get_stats() -> record (the one row of evstore.stats)
CREATE FUNCTION evstore.get_stats(
    OUT appends bigint, OUT events bigint, OUT conflicts bigint,
    OUT idempotent_retries bigint, OUT read_all_calls bigint,
    OUT read_all_events bigint, OUT last_position bigint, OUT horizon bigint,
    OUT horizon_lag_positions bigint, OUT horizon_lag_seconds double precision,
    OUT appenders integer, OUT oldest_appender_pid integer,
    OUT oldest_appender_since timestamptz,
    OUT projections integer, OUT projections_failed integer,
    OUT projection_last_error_at timestamptz, OUT projection_rebuild_lag bigint,
    OUT subscriptions integer, OUT subscription_max_lag bigint,
    OUT stats_reset timestamptz)
RETURNS record
    LANGUAGE sql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH c AS (SELECT * FROM evstore._stats_counters()),
    a AS (SELECT ap.pid, ap.min_position, sa.xact_start
            FROM evstore.appenders() ap
            LEFT JOIN pg_catalog.pg_stat_activity sa ON sa.pid = ap.pid),
    oldest AS (SELECT * FROM a ORDER BY a.min_position, a.xact_start LIMIT 1),
    p AS (SELECT count(*)::integer AS n,
                 (count(*) FILTER (WHERE s.last_error_at IS NOT NULL))::integer AS failed,
                 max(s.last_error_at) AS last_error_at
            FROM evstore.projections_catalog pc
            LEFT JOIN evstore.projection_stats() s ON s.name = pc.name),
    r AS (SELECT coalesce(sum(greatest(rp.target_position - rp.at_position, 0)), 0)::bigint AS lag
            FROM evstore.projection_rebuild_progress() rp),
    sub AS (SELECT count(DISTINCT sc.subscription)::integer AS n,
                   max(greatest((SELECT c.horizon FROM c) - sc.acked_position, 0)) AS max_lag
              FROM evstore.subscription_checkpoints sc)
    SELECT c.appends, c.events, c.conflicts, c.idempotent_retries,
           c.read_all_calls, c.read_all_events, c.last_position, c.horizon,
           greatest(c.last_position - c.horizon, 0),
           CASE WHEN EXISTS (SELECT FROM oldest) THEN
               extract(epoch FROM pg_catalog.clock_timestamp() - (SELECT o.xact_start FROM oldest o))::double precision
           ELSE 0 END,
           (SELECT count(*)::integer FROM a),
           (SELECT o.pid FROM oldest o),
           (SELECT o.xact_start FROM oldest o),
           p.n, p.failed, p.last_error_at, r.lag,
           sub.n, coalesce(sub.max_lag, 0),
           c.stats_reset
    FROM c, p, r, sub
$fn$;
COMMENT ON FUNCTION evstore.get_stats() IS
    'The row of evstore.stats';

CREATE VIEW evstore.stats AS SELECT * FROM evstore.get_stats();
COMMENT ON VIEW evstore.stats IS
    'How the store is doing: counters since stats_reset, horizon lag, the oldest open appender, projection and subscription lag';

-- evstore.get_subscription_lag() -> SETOF record (the rows of evstore.subscription_lag)
CREATE FUNCTION evstore.get_subscription_lag(
    OUT name text, OUT member integer, OUT group_size integer,
    OUT acked_position bigint, OUT horizon bigint, OUT lag_positions bigint,
    OUT last_ack_at timestamptz, OUT seconds_since_ack double precision,
    OUT consumer text)
RETURNS SETOF record
    LANGUAGE sql VOLATILE SECURITY DEFINER ROWS 10
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH h AS (SELECT evstore.read_all_horizon() AS horizon)
    SELECT sc.subscription, sc.member, sc.group_size, sc.acked_position, h.horizon,
           greatest(h.horizon - sc.acked_position, 0),
           sc.updated_at,
           extract(epoch FROM pg_catalog.clock_timestamp() - sc.updated_at)::double precision,
           CASE WHEN sc.lease_until > pg_catalog.clock_timestamp() THEN sc.consumer END
    FROM evstore.subscription_checkpoints sc, h
    ORDER BY sc.subscription, sc.member
$fn$;
COMMENT ON FUNCTION evstore.get_subscription_lag() IS
    'The rows of evstore.subscription_lag';

CREATE VIEW evstore.subscription_lag AS SELECT * FROM evstore.get_subscription_lag();
COMMENT ON VIEW evstore.subscription_lag IS
    'Each subscription member''s acknowledged position and how far the read_all horizon is ahead of it';

REVOKE ALL ON evstore.stats, evstore.subscription_lag FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore._stats_counters(),
    evstore.stats_reset(),
    evstore.get_stats(),
    evstore.get_subscription_lag()
FROM PUBLIC;
-- monitoring tools run as members of pg_monitor
GRANT SELECT ON evstore.stats, evstore.subscription_lag TO pg_monitor;
GRANT EXECUTE ON FUNCTION evstore.get_stats(), evstore.get_subscription_lag() TO pg_monitor;

-- ==== schema evolution (0.3.0) ====
-- Event schema versions, the event schema registry (validation on append)
-- and upcasters (current shapes on read); see docs/schema-evolution.md.
-- The catalogs are user_catalog_tables so that the output plugin reads
-- them as of the decoded point of history; they are dumped with the data.
-- Stored events are never changed.

CREATE TABLE evstore.event_schemas_catalog (
    event_type    text        NOT NULL,
    version       integer     NOT NULL,
    schema        jsonb       NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT event_schemas_catalog_pkey PRIMARY KEY (event_type, version),
    CONSTRAINT event_schemas_catalog_version_check CHECK (version >= 1),
    CONSTRAINT event_schemas_catalog_type_check CHECK (event_type <> '')
) WITH (user_catalog_table = true);
COMMENT ON TABLE evstore.event_schemas_catalog IS
    'Registered event schemas; change them only through evstore.register_event_schema/unregister_event_schema';
SELECT pg_catalog.pg_extension_config_dump('evstore.event_schemas_catalog', '');

CREATE TABLE evstore.upcasters_catalog (
    event_type    text        NOT NULL,
    from_version  integer     NOT NULL,
    to_version    integer     NOT NULL,
    to_event_type text,
    steps         jsonb,
    function      regprocedure,
    owner         regrole     NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT upcasters_catalog_pkey PRIMARY KEY (event_type, from_version),
    CONSTRAINT upcasters_catalog_versions_check CHECK (from_version >= 1 AND to_version > from_version),
    CONSTRAINT upcasters_catalog_form_check CHECK ((steps IS NULL) <> (function IS NULL))
) WITH (user_catalog_table = true);
COMMENT ON TABLE evstore.upcasters_catalog IS
    'Registered upcasters; change them only through evstore.register_upcaster/drop_upcaster';
SELECT pg_catalog.pg_extension_config_dump('evstore.upcasters_catalog', '');

CREATE TABLE evstore.event_validation_modes (
    event_type text NOT NULL,
    mode       text NOT NULL,
    CONSTRAINT event_validation_modes_pkey PRIMARY KEY (event_type),
    CONSTRAINT event_validation_modes_mode_check CHECK (mode IN ('off', 'warn', 'enforce'))
) WITH (user_catalog_table = true);
COMMENT ON TABLE evstore.event_validation_modes IS
    'Validation mode per event type, overriding evstore.schema_validation; set with evstore.set_schema_validation';
SELECT pg_catalog.pg_extension_config_dump('evstore.event_validation_modes', '');

-- evstore.registry_changed() -> trigger
-- Any change (pg_restore's COPY included) makes every backend, and the
-- output plugin at this point of history, reload the registry.
CREATE FUNCTION evstore.registry_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'evstore_registry_changed';
CREATE TRIGGER registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evstore.event_schemas_catalog
    FOR EACH STATEMENT EXECUTE FUNCTION evstore.registry_changed();
CREATE TRIGGER registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evstore.upcasters_catalog
    FOR EACH STATEMENT EXECUTE FUNCTION evstore.registry_changed();
CREATE TRIGGER registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evstore.event_validation_modes
    FOR EACH STATEMENT EXECUTE FUNCTION evstore.registry_changed();

-- evstore.upcasters_catalog_check() -> trigger
-- A function upcaster runs as its owner: only that role (a member of it)
-- or a superuser may record it as owner, also by writing the table directly.
CREATE FUNCTION evstore.upcasters_catalog_check() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user, NEW.owner, 'MEMBER') THEN
        RAISE EXCEPTION 'permission denied to register an upcaster owned by role %', NEW.owner
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A function upcaster runs with its owner''s privileges.';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER upcasters_catalog_check
    BEFORE INSERT OR UPDATE ON evstore.upcasters_catalog
    FOR EACH ROW EXECUTE FUNCTION evstore.upcasters_catalog_check();

-- evstore._check_event_schema(schema jsonb) -> void
CREATE FUNCTION evstore._check_event_schema(schema jsonb) RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'evstore_check_event_schema';

-- evstore._check_upcaster_steps(steps jsonb) -> void
CREATE FUNCTION evstore._check_upcaster_steps(steps jsonb) RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'evstore_check_upcaster_steps';

-- evstore.register_event_schema(event_type text, version integer, schema jsonb) -> void
CREATE FUNCTION evstore.register_event_schema(event_type text, version integer, schema jsonb)
RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF $1 IS NULL OR $1 = '' THEN
        RAISE EXCEPTION 'event_type must not be null or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL OR $2 < 1 THEN
        RAISE EXCEPTION 'version must be >= 1, not %', coalesce($2::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $3 IS NULL THEN
        RAISE EXCEPTION 'schema must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM evstore._check_event_schema($3);
    -- (ON CONFLICT is not available on a user_catalog_table)
    UPDATE evstore.event_schemas_catalog c SET schema = $3, registered_at = pg_catalog.now()
        WHERE c.event_type = $1 AND c.version = $2;
    IF NOT FOUND THEN
        INSERT INTO evstore.event_schemas_catalog (event_type, version, schema)
            VALUES ($1, $2, $3);
    END IF;
END
$fn$;
COMMENT ON FUNCTION evstore.register_event_schema(text, integer, jsonb) IS
    'Registers (or replaces) the JSON schema of a version of an event type; appends validate events against it';

-- evstore.unregister_event_schema(event_type text, version integer) -> boolean
CREATE FUNCTION evstore.unregister_event_schema(event_type text, version integer)
RETURNS boolean
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH d AS (DELETE FROM evstore.event_schemas_catalog c
               WHERE c.event_type = $1 AND c.version = $2 RETURNING 1)
    SELECT count(*) > 0 FROM d;
$fn$;
COMMENT ON FUNCTION evstore.unregister_event_schema(text, integer) IS
    'Removes a registered schema version; true when there was one';

-- evstore.set_schema_validation(event_type text, mode text) -> void
CREATE FUNCTION evstore.set_schema_validation(event_type text, mode text)
RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF $1 IS NULL OR $1 = '' THEN
        RAISE EXCEPTION 'event_type must not be null or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL THEN
        DELETE FROM evstore.event_validation_modes m WHERE m.event_type = $1;
        RETURN;
    END IF;
    IF $2 NOT IN ('off', 'warn', 'enforce') THEN
        RAISE EXCEPTION 'invalid validation mode "%"', $2
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Valid modes are off, warn and enforce; null restores evstore.schema_validation.';
    END IF;
    UPDATE evstore.event_validation_modes m SET mode = $2 WHERE m.event_type = $1;
    IF NOT FOUND THEN
        INSERT INTO evstore.event_validation_modes (event_type, mode) VALUES ($1, $2);
    END IF;
END
$fn$;
COMMENT ON FUNCTION evstore.set_schema_validation(text, text) IS
    'Validation mode (off, warn, enforce) of one event type; null: the store-wide evstore.schema_validation';

-- evstore.register_upcaster(event_type text, from_version integer,
--     to_version integer, steps jsonb, to_event_type text,
--     function regprocedure) -> void
CREATE FUNCTION evstore.register_upcaster(
    event_type text,
    from_version integer,
    to_version integer,
    steps jsonb DEFAULT NULL,
    to_event_type text DEFAULT NULL,
    function regprocedure DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    argtype oid;
    rettype oid;
    nargs integer;
BEGIN
    IF $1 IS NULL OR $1 = '' THEN
        RAISE EXCEPTION 'event_type must not be null or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $5 = '' THEN
        RAISE EXCEPTION 'to_event_type must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $2 IS NULL OR $2 < 1 OR $3 IS NULL OR $3 <= $2 THEN
        RAISE EXCEPTION 'an upcaster goes from a version >= 1 to a higher version, not from % to %',
            coalesce($2::text, 'null'), coalesce($3::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 IS NOT NULL AND $6 IS NOT NULL THEN
        RAISE EXCEPTION 'an upcaster has steps or a function, not both' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 IS NULL AND $6 IS NULL AND $5 IS NULL THEN
        RAISE EXCEPTION 'an upcaster needs steps, a function or a new event type'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $4 IS NOT NULL THEN
        PERFORM evstore._check_upcaster_steps($4);
    END IF;
    IF $6 IS NOT NULL THEN
        SELECT p.pronargs, p.proargtypes[0], p.prorettype INTO nargs, argtype, rettype
            FROM pg_catalog.pg_proc p WHERE p.oid = $6;
        IF NOT (nargs = 1 AND
                ((argtype = 'jsonb'::regtype AND rettype = 'jsonb'::regtype) OR
                 (argtype = 'evstore.events'::regtype AND rettype = 'evstore.events'::regtype))) THEN
            RAISE EXCEPTION 'upcaster function % must take and return jsonb, or take and return evstore.events', $6
                USING ERRCODE = 'invalid_function_definition';
        END IF;
    END IF;
    UPDATE evstore.upcasters_catalog u
        SET to_version = $3, to_event_type = $5,
            steps = CASE WHEN $6 IS NULL THEN coalesce($4, '[]') END, function = $6,
            owner = current_user::regrole, created_at = pg_catalog.now()
        WHERE u.event_type = $1 AND u.from_version = $2;
    IF NOT FOUND THEN
        INSERT INTO evstore.upcasters_catalog
            (event_type, from_version, to_version, to_event_type, steps, function, owner)
            VALUES ($1, $2, $3, $5, CASE WHEN $6 IS NULL THEN coalesce($4, '[]') END, $6,
                    current_user::regrole);
    END IF;
END
$fn$;
COMMENT ON FUNCTION evstore.register_upcaster(text, integer, integer, jsonb, text, regprocedure) IS
    'Registers (or replaces) the upcaster of an event type from a version: declarative steps or a function, and optionally a new type name';

-- evstore.drop_upcaster(event_type text, from_version integer) -> boolean
CREATE FUNCTION evstore.drop_upcaster(event_type text, from_version integer)
RETURNS boolean
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    WITH d AS (DELETE FROM evstore.upcasters_catalog u
               WHERE u.event_type = $1 AND u.from_version = $2 RETURNING 1)
    SELECT count(*) > 0 FROM d;
$fn$;
COMMENT ON FUNCTION evstore.drop_upcaster(text, integer) IS
    'Removes the upcaster of an event type from a version; true when there was one';

-- evstore.upcast(event evstore.events) -> evstore.events
CREATE FUNCTION evstore.upcast(event evstore.events) RETURNS evstore.events
    LANGUAGE c STABLE STRICT PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'evstore_upcast_event';
COMMENT ON FUNCTION evstore.upcast(evstore.events) IS
    'The event in the current shape of its type (every registered upcaster applied)';

-- evstore.validate_event(event_type text, data jsonb, version integer) -> text
CREATE FUNCTION evstore.validate_event(event_type text, data jsonb, version integer DEFAULT NULL)
RETURNS text
    LANGUAGE c STABLE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'evstore_validate_event';
COMMENT ON FUNCTION evstore.validate_event(text, jsonb, integer) IS
    'Null when data matches the registered schema of the type (its current version by default), else the rule it breaks and where';

CREATE VIEW evstore.event_schemas AS
SELECT s.event_type, s.version, s.schema, s.registered_at,
       s.version = max(s.version) OVER (PARTITION BY s.event_type) AS is_current,
       coalesce(m.mode, pg_catalog.current_setting('evstore.schema_validation')) AS validation
  FROM evstore.event_schemas_catalog s
  LEFT JOIN evstore.event_validation_modes m ON m.event_type = s.event_type;
COMMENT ON VIEW evstore.event_schemas IS
    'Registered event schemas with the validation mode that applies to each type';

CREATE VIEW evstore.upcasters AS
SELECT u.event_type, u.from_version, u.to_version,
       coalesce(u.to_event_type, u.event_type) AS to_event_type,
       CASE WHEN u.function IS NULL THEN 'declarative' ELSE 'function' END AS kind,
       u.steps, u.function, u.owner, u.created_at
  FROM evstore.upcasters_catalog u;
COMMENT ON VIEW evstore.upcasters IS
    'Registered upcasters; chains follow (to_event_type, to_version) to the next one';

REVOKE ALL ON evstore.event_schemas_catalog, evstore.upcasters_catalog,
    evstore.event_validation_modes, evstore.event_schemas, evstore.upcasters FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore.registry_changed(),
    evstore.upcasters_catalog_check(),
    evstore._check_event_schema(jsonb),
    evstore._check_upcaster_steps(jsonb),
    evstore.register_event_schema(text, integer, jsonb),
    evstore.unregister_event_schema(text, integer),
    evstore.set_schema_validation(text, text),
    evstore.register_upcaster(text, integer, integer, jsonb, text, regprocedure),
    evstore.drop_upcaster(text, integer),
    evstore.upcast(evstore.events),
    evstore.validate_event(text, jsonb, integer)
FROM PUBLIC;

-- ==== waiting reads (0.3.0) ====
-- read_all(..., timeout) and subscription_fetch(..., timeout) wait for
-- events instead of returning nothing (docs/read_all.md#waiting,
-- docs/subscriptions.md#waiting-instead-of-polling).

-- Wait, holding no lock, until subscription_fetch has something to return
-- for this member: an event past its acknowledged position that read_all
-- would return, or (when another consumer holds the member's lease) the end
-- of that lease; at most "timeout".  Capped at the caller's own lease, so a
-- named consumer that waits keeps its lease (its next fetch renews it).
-- evstore._subscription_wait(name text, member integer, consumer text,
--     timeout interval) -> void
CREATE FUNCTION evstore._subscription_wait(
    name text, member integer, consumer text, timeout interval)
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
    w interval := $4;
BEGIN
    IF w < interval '0' THEN
        RAISE EXCEPTION 'timeout must be >= 0 or NULL, not %', w
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF w = interval '0' THEN
        RETURN;
    END IF;
    SELECT * INTO r FROM evstore.subscription_checkpoints c
        WHERE c.subscription = $1 AND c.member = $2;
    IF NOT FOUND THEN
        RETURN;                 -- subscription_fetch raises the error
    END IF;
    IF r.consumer IS NOT NULL AND r.lease_until > pg_catalog.clock_timestamp() THEN
        IF r.consumer IS DISTINCT FROM $3 THEN
            -- another consumer's lease: nothing for us before it ends (a
            -- time, not an event: a plain sleep, interruptible)
            PERFORM pg_catalog.pg_sleep(extract(epoch FROM
                least(w, r.lease_until - pg_catalog.clock_timestamp())));
            RETURN;
        END IF;
        w := least(w, r.lease_until - pg_catalog.clock_timestamp());
        IF w <= interval '0' THEN
            RETURN;
        END IF;
    END IF;
    PERFORM FROM evstore.read_all(r.acked_position, 1, r.categories, r.event_types,
        CASE WHEN r.group_size > 1 THEN r.member END,
        CASE WHEN r.group_size > 1 THEN r.group_size END,
        timeout => w);
END
$fn$;

REVOKE ALL ON FUNCTION
    evstore._subscription_wait(text, integer, text, interval)
FROM PUBLIC;
