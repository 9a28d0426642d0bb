-- evstore 0.2.0 -> 0.3.0
-- Every object added to or changed in src/evstore.sql after 0.2.0 must be
-- created or changed here too (t/010_upgrade.pl checks that an upgraded
-- database has exactly the schema of a fresh install, by pg_dump).

\echo Use "ALTER EXTENSION evstore UPDATE TO '0.3.0'" to load this file. \quit

-- ==== trust: projections (0.3.0) ====
-- (projection handlers' search_path, privilege re-checks)
-- Projections created before 0.3.0 keep a NULL search_path: they run with
-- pg_catalog, pg_temp as they did.
ALTER TABLE evstore.projections_catalog ADD COLUMN search_path text;
COMMENT ON COLUMN evstore.projections_catalog.search_path IS
    'The creator''s search_path (less pg_temp), captured by create_projection; the projection runs with it, then pg_temp. NULL: created before 0.3.0, runs with pg_catalog, pg_temp';
CREATE OR REPLACE VIEW evstore.projections AS
SELECT c.name, c.kind, c.owner, c.handler, c.reset_function, c.target,
       c.key_column, c.key_source, c.upsert_types, c.delete_types,
       c.column_map, c.categories, c.event_types, c.created_at, c.rebuilt_at,
       COALESCE(s.events_processed, 0) AS events_processed,
       s.last_position, s.last_error, s.last_error_position, s.last_error_at,
       c.search_path
  FROM evstore.projections_catalog c
  LEFT JOIN evstore.projection_stats() s ON s.name = c.name;



-- ==== trust: store integrity (0.3.0) ====
-- (DDL guard, direct writes, DROP EXTENSION)
-- Nothing to create or change: the guards are C hooks (src/ddl_guard.c,
-- src/guard.c, the shape check in src/catalog.c) and setting
-- evstore.allow_drop_with_events; evstore_guard_ddl keeps its definition.



-- ==== trust: fence and positions (0.3.0) ====



-- ==== trust: robustness (0.3.0) ====
-- (identifier limits, memory)

-- Names that evstore keeps in a btree index are limited to 1024 bytes, so
-- that an overlong one fails with a clear error (54000) instead of a raw
-- "index row size exceeds maximum" (docs/operations.md, "Limits on
-- identifiers and memory").  The metadata correlation_id/causation_id limit
-- is checked by the append in C.

CREATE OR REPLACE FUNCTION evstore.create_subscription(
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

CREATE OR REPLACE FUNCTION evstore.subscription_fetch(
    name text,
    member integer DEFAULT 0,
    max_count integer DEFAULT 100,
    consumer text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION evstore.subscription_ack(
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

CREATE OR REPLACE FUNCTION evstore.mark_processed(consumer text, event_id uuid)
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



-- ==== trust: shredding (0.3.0) ====

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

-- ==== read_all filters (0.3.0) ====
-- read_all gains category_prefixes and include_system (docs/reference.md).
-- A new parameter means a new signature: the function is dropped and
-- created again, which loses its grants; say which ones to give again.
DO $do$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                    ELSE pg_catalog.quote_ident(r.rolname) END AS grantee
        FROM pg_catalog.pg_proc p,
             pg_catalog.aclexplode(p.proacl) a
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE p.oid = 'evstore.read_all(bigint, integer, text[], text[], integer, integer)'::pg_catalog.regprocedure
          AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'
    LOOP
        RAISE WARNING 'evstore.read_all() has a new signature: EXECUTE granted to % is dropped with the old one', g.grantee
            USING HINT = format('After the update, run: GRANT EXECUTE ON FUNCTION evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean, interval) TO %s;', g.grantee);
    END LOOP;
END
$do$;

DROP FUNCTION evstore.read_all(bigint, integer, text[], text[], integer, integer);

-- evstore.read_all(after_position bigint, max_count integer, categories text[],
--     event_types text[], group_member integer, group_size integer,
--     category_prefixes text[], include_system boolean)
--     -> SETOF evstore.events
CREATE FUNCTION evstore.read_all(
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_member integer DEFAULT NULL,
    group_size integer DEFAULT NULL,
    category_prefixes text[] DEFAULT NULL,
    include_system boolean DEFAULT true)
RETURNS SETOF evstore.events
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'evstore_read_all';

REVOKE ALL ON FUNCTION
    evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean)
FROM PUBLIC;

-- ==== subscription failure handling (0.3.0) ====
-- Nack, retry, park, replay and skip for durable subscriptions, keeping each
-- stream in order (docs/subscriptions.md, "Failure handling").

-- Per-subscription settings (kept on every member's row, like lease_timeout).
ALTER TABLE evstore.subscription_checkpoints
    ADD COLUMN max_attempts integer NOT NULL DEFAULT 5,
    ADD COLUMN retry_delay interval NOT NULL DEFAULT '10 seconds',
    ADD CONSTRAINT subscription_checkpoints_failure_check
        CHECK (max_attempts BETWEEN 1 AND 1000000 AND retry_delay >= interval '0');

-- One row per stream a subscription holds back.  The head (global_position,
-- stream_version, event_id, event_type) is the stream's next event to
-- deliver: a failed one waiting for its retry (state 'retry', retry_at),
-- a parked one (state 'parked'), or, after the head succeeded, the next
-- event of the stream that the checkpoint had already passed (state
-- 'retry', due at once, attempts 0).  Every later event of the stream is
-- held back: those at or below the member's acked_position are read from
-- evstore.events by stream_version when their turn comes; those above it
-- are left out of read_all's batches.  delivered_through: the highest
-- position of this stream that subscription_fetch returned since the last
-- nack (NULL: the head is not out with a consumer).  skipped_through: the
-- stream's events up to it were given up by subscription_skip while the
-- checkpoint had not passed them, so read_all's batches leave them out
-- (state 'skipped': nothing else is held).
CREATE TABLE evstore.subscription_holds (
    subscription      text        NOT NULL,
    member            integer     NOT NULL,
    stream_id         text        NOT NULL,
    global_position   bigint      NOT NULL,
    stream_version    bigint      NOT NULL,
    event_id          uuid        NOT NULL,
    event_type        text        NOT NULL,
    state             text        NOT NULL,
    attempts          integer     NOT NULL,
    retry_at          timestamptz,
    last_error        text,
    first_failed_at   timestamptz,
    last_failed_at    timestamptz,
    parked_at         timestamptz,
    last_consumer     text,
    delivered_through bigint,
    delivered_at      timestamptz,
    skipped_through   bigint,
    held_since        timestamptz NOT NULL,
    CONSTRAINT subscription_holds_pkey PRIMARY KEY (subscription, member, stream_id),
    CONSTRAINT subscription_holds_position_key UNIQUE (subscription, global_position),
    CONSTRAINT subscription_holds_state_check CHECK (
        (state = 'retry' AND retry_at IS NOT NULL AND parked_at IS NULL)
        OR (state = 'parked' AND parked_at IS NOT NULL AND delivered_through IS NULL)
        OR (state = 'skipped' AND skipped_through IS NOT NULL AND delivered_through IS NULL)),
    CONSTRAINT subscription_holds_attempts_check CHECK (attempts >= 0),
    CONSTRAINT subscription_holds_delivered_check
        CHECK (delivered_through IS NULL OR delivered_through >= global_position)
);
COMMENT ON TABLE evstore.subscription_holds IS
    'Durable subscriptions: streams held back behind an event that failed (waiting for a retry or parked) or that is to be delivered again';
SELECT pg_catalog.pg_extension_config_dump('evstore.subscription_holds', '');

-- evstore._check_failure_settings(max_attempts integer, retry_delay interval) -> void
CREATE FUNCTION evstore._check_failure_settings(max_attempts integer, retry_delay interval)
RETURNS void
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF $1 IS NULL OR $1 < 1 OR $1 > 1000000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000000, not %', coalesce($1::text, 'null')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'max_attempts 1 parks an event at its first failure.';
    END IF;
    IF $2 IS NULL OR $2 < interval '0' THEN
        RAISE EXCEPTION 'retry_delay must be an interval >= 0, not %', coalesce($2::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$fn$;

-- Make h's stream go on after its head (and the delivered events up to
-- done_through) counts as handled: the next held event of the stream that
-- the checkpoint has passed becomes the head, due at once; when there is
-- none, the hold ends and read_all delivers the rest of the stream.  The
-- caller holds the member's lock.
-- evstore._subscription_advance(r subscription_checkpoints, h subscription_holds,
--     done_through bigint) -> bigint (the new head, NULL when the hold ended)
CREATE FUNCTION evstore._subscription_advance(
    r evstore.subscription_checkpoints,
    h evstore.subscription_holds,
    done_through bigint)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    nx evstore.events;
BEGIN
    -- in a stream, global positions grow with stream versions (the append
    -- draws them under the stream's lock), so the version index finds the
    -- next event; every event of the stream at or below acked_position is
    -- committed (an ack never passes read_all's horizon), so none is missed
    SELECT e.* INTO nx FROM evstore.events e
        WHERE e.stream_id = h.stream_id AND e.stream_version > h.stream_version
          AND e.global_position > $3
          AND (r.event_types IS NULL OR e.event_type = ANY (r.event_types))
        ORDER BY e.stream_version LIMIT 1;
    IF $3 > r.acked_position THEN
        -- the head given up lies after the checkpoint: read_all's batches
        -- must leave it out until the checkpoint passes it
        UPDATE evstore.subscription_holds x
            SET state = 'skipped', skipped_through = $3, retry_at = NULL, parked_at = NULL,
                delivered_through = NULL, delivered_at = NULL
            WHERE x.subscription = h.subscription AND x.member = h.member
              AND x.stream_id = h.stream_id;
        RETURN NULL;
    END IF;
    IF NOT FOUND OR nx.global_position > r.acked_position THEN
        DELETE FROM evstore.subscription_holds x
            WHERE x.subscription = h.subscription AND x.member = h.member
              AND x.stream_id = h.stream_id;
        RETURN NULL;
    END IF;
    UPDATE evstore.subscription_holds x
        SET global_position = nx.global_position, stream_version = nx.stream_version,
            event_id = nx.event_id, event_type = nx.event_type,
            state = 'retry', attempts = 0, retry_at = pg_catalog.clock_timestamp(),
            last_error = NULL, first_failed_at = NULL, last_failed_at = NULL, parked_at = NULL,
            delivered_through = CASE WHEN x.delivered_through >= nx.global_position
                                     THEN x.delivered_through END,
            delivered_at = CASE WHEN x.delivered_through >= nx.global_position
                                THEN x.delivered_at END
        WHERE x.subscription = h.subscription AND x.member = h.member
          AND x.stream_id = h.stream_id;
    RETURN nx.global_position;
END
$fn$;

-- subscription_fetch for a member that holds streams back: the held events
-- whose turn it is (due heads and what follows them, up to the checkpoint),
-- then read_all's batch without the held-back events.  Marks what it
-- returns of held streams as delivered, under the member's lock.
-- evstore._subscription_fetch_held(r subscription_checkpoints, max_count integer)
--     -> SETOF evstore.events
CREATE FUNCTION evstore._subscription_fetch_held(
    r evstore.subscription_checkpoints,
    max_count integer)
RETURNS SETOF evstore.events
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER ROWS 100
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    t timestamptz := pg_catalog.clock_timestamp();
    upcast boolean := coalesce(pg_catalog.current_setting('evstore.upcast', true), 'on')::boolean;
    locked boolean := false;
    e evstore.events;
    n integer := 0;
    got integer;
    pos bigint;
    lead_end bigint;
    lead_streams text[] := '{}';
    lead_first bigint[] := '{}';
    lead_last bigint[] := '{}';
    hs text[];
    hp bigint[];
    hk bigint[];
    hm integer[];
    i integer;
    j integer;
BEGIN
    IF EXISTS (SELECT FROM evstore.subscription_holds x
               WHERE x.subscription = r.subscription AND x.member = r.member
                 AND x.state = 'retry' AND x.retry_at <= t) THEN
        -- something is due: lock the member (acks, nacks, replays and skips
        -- do too) and read its checkpoint again
        r := evstore._subscription_member(r.subscription, r.member);
        locked := true;
        FOR e IN
            SELECT ev.*
            FROM evstore.subscription_holds x
            CROSS JOIN LATERAL (
                SELECT y.* FROM evstore.events y
                WHERE y.stream_id = x.stream_id AND y.stream_version >= x.stream_version
                  AND y.global_position <= r.acked_position
                  AND (r.event_types IS NULL OR y.event_type = ANY (r.event_types))
                ORDER BY y.stream_version LIMIT $2) ev
            WHERE x.subscription = r.subscription AND x.member = r.member
              AND x.state = 'retry' AND x.retry_at <= t
              AND x.global_position <= r.acked_position
            ORDER BY ev.global_position LIMIT $2
        LOOP
            UPDATE evstore.subscription_holds x
                SET delivered_through = greatest(x.delivered_through, e.global_position),
                    delivered_at = t
                WHERE x.subscription = r.subscription AND x.member = r.member
                  AND x.stream_id = e.stream_id;
            n := n + 1;
            IF upcast THEN
                e := evstore.upcast(e);
            END IF;
            RETURN NEXT e;
        END LOOP;
    END IF;
    -- then the events after the checkpoint, less those held back; a batch
    -- of only held-back events asks read_all for more
    -- the member's holds, read once: stream, head, skipped_through, and
    -- 0 (only skipped events), 1 (the head is delivered now), 2 (held)
    SELECT coalesce(pg_catalog.array_agg(x.stream_id), '{}'),
           coalesce(pg_catalog.array_agg(x.global_position), '{}'),
           coalesce(pg_catalog.array_agg(coalesce(x.skipped_through, 0)), '{}'),
           coalesce(pg_catalog.array_agg(CASE WHEN x.state = 'skipped' THEN 0
                                              WHEN locked AND x.state = 'retry' AND x.retry_at <= t THEN 1
                                              ELSE 2 END), '{}')
        INTO hs, hp, hk, hm
        FROM evstore.subscription_holds x
        WHERE x.subscription = r.subscription AND x.member = r.member;
    pos := r.acked_position;
    <<scan>>
    WHILE n < $2 LOOP
        got := 0;
        FOR e IN SELECT * FROM evstore.read_all(pos, $2, r.categories, r.event_types,
                CASE WHEN r.group_size > 1 THEN r.member END,
                CASE WHEN r.group_size > 1 THEN r.group_size END)
        LOOP
            got := got + 1;
            pos := e.global_position;
            i := pg_catalog.array_position(hs, e.stream_id);
            -- given up, or at or after a head that is not delivered now (an
            -- event before the head is not held: it was not handled yet)
            IF i IS NOT NULL AND (pos <= hk[i]
                                  OR (hm[i] <> 0 AND (pos > hp[i] OR (pos = hp[i] AND hm[i] = 2)))) THEN
                IF n = 0 THEN
                    lead_end := pos;
                    j := pg_catalog.array_position(lead_streams, e.stream_id);
                    IF j IS NULL THEN
                        lead_streams := lead_streams || e.stream_id;
                        lead_first := lead_first || pos;
                        lead_last := lead_last || pos;
                    ELSE
                        lead_last[j] := pos;
                    END IF;
                END IF;
                CONTINUE;
            END IF;
            IF i IS NOT NULL AND hm[i] = 1 AND pos = hp[i] THEN
                -- a due head after the checkpoint
                UPDATE evstore.subscription_holds x
                    SET delivered_through = greatest(x.delivered_through, pos), delivered_at = t
                    WHERE x.subscription = r.subscription AND x.member = r.member
                      AND x.stream_id = e.stream_id;
            END IF;
            n := n + 1;
            RETURN NEXT e;
            EXIT scan WHEN n >= $2;
        END LOOP;
        EXIT WHEN got < $2;
    END LOOP;
    -- Every event between the checkpoint and lead_end is held back (or not
    -- the member's): move the checkpoint past them, so that a stream held
    -- back for long does not make each fetch read its events again.  They
    -- stay held: they are delivered from evstore.events in their turn.
    -- Under the member's lock, check that they still are (without the lock
    -- the holds were read unlocked: a skip may have let a stream go).
    IF lead_end IS NOT NULL THEN
        IF NOT locked THEN
            PERFORM evstore._subscription_member(r.subscription, r.member);
        END IF;
        IF NOT EXISTS (
            SELECT FROM ROWS FROM (pg_catalog.unnest(lead_streams), pg_catalog.unnest(lead_first),
                                  pg_catalog.unnest(lead_last)) AS l(s, first, last)
            WHERE NOT EXISTS (
                SELECT FROM evstore.subscription_holds x
                WHERE x.subscription = r.subscription AND x.member = r.member AND x.stream_id = l.s
                  AND ((x.state <> 'skipped' AND x.global_position <= l.first)
                       OR l.last <= x.skipped_through))) THEN
            UPDATE evstore.subscription_checkpoints c
                SET acked_position = lead_end, updated_at = pg_catalog.clock_timestamp()
                WHERE c.subscription = r.subscription AND c.member = r.member
                  AND c.acked_position = r.acked_position;
        END IF;
    END IF;
END
$fn$;

-- subscription_ack's part for held-back streams: the delivered events of a
-- held stream at or below the acknowledged position are handled.  The
-- caller holds the member's lock and has moved the checkpoint.
-- evstore._subscription_ack_held(name text, member integer, position bigint) -> boolean
CREATE FUNCTION evstore._subscription_ack_held(name text, member integer, "position" bigint)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
    h evstore.subscription_holds;
    done boolean := false;
BEGIN
    SELECT * INTO r FROM evstore.subscription_checkpoints c
        WHERE c.subscription = $1 AND c.member = $2;
    DELETE FROM evstore.subscription_holds x
        WHERE x.subscription = $1 AND x.member = $2 AND x.state = 'skipped'
          AND x.skipped_through <= r.acked_position;
    FOR h IN SELECT * FROM evstore.subscription_holds x
             WHERE x.subscription = $1 AND x.member = $2 AND x.state <> 'skipped'
               AND x.delivered_through IS NOT NULL AND x.global_position <= $3
             ORDER BY x.global_position
    LOOP
        PERFORM evstore._subscription_advance(r, h, least($3, h.delivered_through));
        done := true;
    END LOOP;
    RETURN done;
END
$fn$;

-- Check a consumer name, lock a member's row and check that no other
-- consumer's lease runs on it (subscription_ack, subscription_nack).
-- evstore._subscription_leased(name text, member integer, consumer text)
--     -> subscription_checkpoints
CREATE FUNCTION evstore._subscription_leased(name text, member integer, consumer text)
RETURNS evstore.subscription_checkpoints
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
BEGIN
    IF $3 = '' THEN
        RAISE EXCEPTION 'consumer must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.octet_length($3) > 1024 THEN
        RAISE EXCEPTION 'consumer is too long'
            USING ERRCODE = 'program_limit_exceeded',
                  DETAIL = format('It is %s bytes long; the limit is 1024 bytes.', pg_catalog.octet_length($3));
    END IF;
    r := evstore._subscription_member($1, $2);
    IF r.consumer IS NOT NULL AND r.lease_until > pg_catalog.clock_timestamp()
       AND r.consumer IS DISTINCT FROM $3 THEN
        RAISE EXCEPTION 'member % of subscription "%" is leased by consumer "%"', $2, $1, r.consumer
            USING ERRCODE = 'lock_not_available',
                  DETAIL = format('The lease runs until %s.', r.lease_until),
                  HINT = 'A consumer whose lease expired must stop and fetch again.';
    END IF;
    RETURN r;
END
$fn$;

-- evstore.subscription_nack(name text, member integer, position bigint,
--     error text, retry_after interval, consumer text) -> text
CREATE FUNCTION evstore.subscription_nack(
    name text,
    member integer,
    "position" bigint,
    error text DEFAULT NULL,
    retry_after interval DEFAULT NULL,
    consumer text DEFAULT NULL)
RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
    h evstore.subscription_holds;
    e evstore.events;
    horizon bigint;
    t timestamptz;
    att integer;
    st text;
BEGIN
    IF $3 IS NULL THEN
        RAISE EXCEPTION 'position must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $3 <= 0 THEN
        RAISE EXCEPTION 'position must be > 0, not %', $3
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF $5 < interval '0' THEN
        RAISE EXCEPTION 'retry_after must not be negative, not %', $5
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    r := evstore._subscription_leased($1, $2, $6);
    horizon := evstore.read_all_horizon();
    IF $3 > horizon THEN
        RAISE EXCEPTION 'cannot nack position % of subscription "%"', $3, $1
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('read_all has not reached it yet (its horizon is %s), so it was not delivered.', horizon);
    END IF;
    SELECT * INTO e FROM evstore.events x WHERE x.global_position = $3;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'there is no event at position %', $3
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the global_position of the event that failed.';
    END IF;
    IF (r.categories IS NOT NULL AND NOT e.category = ANY (r.categories))
       OR (r.event_types IS NOT NULL AND NOT e.event_type = ANY (r.event_types))
       OR (r.group_size > 1 AND e.stream_bucket % r.group_size <> r.member) THEN
        RAISE EXCEPTION 'the event at position % is not one of member % of subscription "%"', $3, $2, $1
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It is a %s event of stream "%s", which the member''s filters or consumer-group bucket leave out.',
                                  e.event_type, e.stream_id);
    END IF;
    t := pg_catalog.clock_timestamp();
    SELECT * INTO h FROM evstore.subscription_holds x
        WHERE x.subscription = $1 AND x.member = $2 AND x.stream_id = e.stream_id;
    IF FOUND AND $3 <= h.skipped_through THEN
        RAISE EXCEPTION 'the event at position % of subscription "%" was skipped', $3, $1
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('evstore.subscription_skip gave up the events of stream "%s" up to position %s.',
                                  e.stream_id, h.skipped_through);
    END IF;
    IF FOUND AND h.state = 'skipped' THEN
        -- the first failure after skipped events that the checkpoint has
        -- not passed yet: the row keeps leaving them out
        IF $3 <= r.acked_position THEN
            RAISE EXCEPTION 'the event at position % of subscription "%" is already acknowledged', $3, $1
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Member %s has acknowledged position %s.', $2, r.acked_position);
        END IF;
        st := CASE WHEN 1 >= r.max_attempts THEN 'parked' ELSE 'retry' END;
        UPDATE evstore.subscription_holds x
            SET global_position = e.global_position, stream_version = e.stream_version,
                event_id = e.event_id, event_type = e.event_type,
                state = st, attempts = 1,
                retry_at = CASE WHEN st = 'retry' THEN t + coalesce($5, r.retry_delay) END,
                last_error = pg_catalog.left($4, 8192),
                first_failed_at = t, last_failed_at = t,
                parked_at = CASE WHEN st = 'parked' THEN t END,
                last_consumer = coalesce($6, r.consumer), held_since = t
            WHERE x.subscription = $1 AND x.member = $2 AND x.stream_id = e.stream_id;
    ELSIF FOUND THEN
        IF $3 < h.global_position THEN
            RAISE EXCEPTION 'the event at position % of subscription "%" is already acknowledged', $3, $1
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Stream "%s" is held at position %s, after it.', e.stream_id, h.global_position);
        ELSIF h.delivered_through IS NULL OR $3 > h.delivered_through THEN
            IF $3 = h.global_position THEN
                RAISE EXCEPTION 'the event at position % of subscription "%" is %', $3, $1,
                        CASE WHEN h.state = 'parked' THEN 'parked' ELSE 'waiting for a retry' END
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          DETAIL = 'It was not delivered again since it was last nacked.',
                          HINT = 'Nack only events subscription_fetch returned; evstore.subscription_held shows the held streams.';
            END IF;
            RAISE EXCEPTION 'the event at position % of subscription "%" is held back', $3, $1
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('An earlier event of stream "%s", at position %s, is %s.', e.stream_id,
                                      h.global_position,
                                      CASE WHEN h.state = 'parked' THEN 'parked'
                                           WHEN h.delivered_through IS NULL THEN 'waiting for a retry'
                                           ELSE 'out for delivery' END),
                      HINT = 'After a nack, leave the later events of its stream in the batch alone: they come again after it.';
        END IF;
        -- the head failed again, or a later delivered event of its stream
        -- failed (the ones before it were handled)
        att := CASE WHEN $3 = h.global_position THEN h.attempts + 1 ELSE 1 END;
        st := CASE WHEN att >= r.max_attempts THEN 'parked' ELSE 'retry' END;
        UPDATE evstore.subscription_holds x
            SET global_position = e.global_position, stream_version = e.stream_version,
                event_id = e.event_id, event_type = e.event_type,
                state = st, attempts = att,
                retry_at = CASE WHEN st = 'retry' THEN t + coalesce($5, r.retry_delay) END,
                last_error = pg_catalog.left($4, 8192),
                first_failed_at = CASE WHEN att = 1 THEN t ELSE x.first_failed_at END,
                last_failed_at = t,
                parked_at = CASE WHEN st = 'parked' THEN t END,
                last_consumer = coalesce($6, r.consumer),
                delivered_through = NULL, delivered_at = NULL
            WHERE x.subscription = $1 AND x.member = $2 AND x.stream_id = e.stream_id;
    ELSE
        IF $3 <= r.acked_position THEN
            RAISE EXCEPTION 'the event at position % of subscription "%" is already acknowledged', $3, $1
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('Member %s has acknowledged position %s.', $2, r.acked_position);
        END IF;
        att := 1;
        st := CASE WHEN att >= r.max_attempts THEN 'parked' ELSE 'retry' END;
        INSERT INTO evstore.subscription_holds
            (subscription, member, stream_id, global_position, stream_version, event_id, event_type,
             state, attempts, retry_at, last_error, first_failed_at, last_failed_at, parked_at,
             last_consumer, held_since)
        VALUES ($1, $2, e.stream_id, e.global_position, e.stream_version, e.event_id, e.event_type,
                st, att, CASE WHEN st = 'retry' THEN t + coalesce($5, r.retry_delay) END,
                pg_catalog.left($4, 8192), t, t, CASE WHEN st = 'parked' THEN t END,
                coalesce($6, r.consumer), t);
    END IF;
    IF $6 IS NOT NULL THEN
        UPDATE evstore.subscription_checkpoints c
            SET consumer = $6, lease_until = pg_catalog.clock_timestamp() + c.lease_timeout
            WHERE c.subscription = $1 AND c.member = $2;
    END IF;
    RETURN st;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_nack(text, integer, bigint, text, interval, text) IS
    'Report that the consumer could not handle the event at position: ''retry'' (delivered again after retry_after) or ''parked'' (max_attempts reached); later events of its stream wait';

-- evstore.alter_subscription(name text, max_attempts integer, retry_delay interval,
--     lease_timeout interval) -> void
CREATE FUNCTION evstore.alter_subscription(
    name text,
    max_attempts integer DEFAULT NULL,
    retry_delay interval DEFAULT NULL,
    lease_timeout interval DEFAULT NULL)
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'subscription name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    r := evstore._subscription_member($1, 0);
    PERFORM evstore._check_failure_settings(coalesce($2, r.max_attempts), coalesce($3, r.retry_delay));
    IF $4 <= interval '0' THEN
        RAISE EXCEPTION 'lease_timeout must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE evstore.subscription_checkpoints c
        SET max_attempts = coalesce($2, c.max_attempts),
            retry_delay = coalesce($3, c.retry_delay),
            lease_timeout = coalesce($4, c.lease_timeout)
        WHERE c.subscription = $1;
END
$fn$;
COMMENT ON FUNCTION evstore.alter_subscription(text, integer, interval, interval) IS
    'Change a subscription''s failure handling (attempts before parking, default retry delay) or lease timeout; NULL keeps a setting';

-- Lock the member that holds a stream back at position, or that holds
-- stream_id back; NULL when none does.  Errors for an unknown subscription.
-- evstore._subscription_hold(name text, position bigint, stream_id text)
--     -> subscription_holds
CREATE FUNCTION evstore._subscription_hold(name text, "position" bigint, stream_id text)
RETURNS evstore.subscription_holds
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    h evstore.subscription_holds;
    m integer;
BEGIN
    IF $1 IS NULL OR ($2 IS NULL AND $3 IS NULL) THEN
        RAISE EXCEPTION 'subscription name and % must not be null',
                CASE WHEN $3 IS NULL THEN 'position' ELSE 'stream_id' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT FROM evstore.subscription_checkpoints c WHERE c.subscription = $1) THEN
        RAISE EXCEPTION 'subscription "%" does not exist', $1
            USING ERRCODE = 'undefined_object';
    END IF;
    -- the member, then its lock, then the row as it is under the lock
    SELECT x.member INTO m FROM evstore.subscription_holds x
        WHERE x.subscription = $1 AND (x.global_position = $2 OR x.stream_id = $3);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM evstore._subscription_member($1, m);
    SELECT * INTO h FROM evstore.subscription_holds x
        WHERE x.subscription = $1 AND x.member = m AND (x.global_position = $2 OR x.stream_id = $3);
    RETURN h;
END
$fn$;

-- The error for a position that heads no hold: say what it is instead.
-- evstore._subscription_not_held(name text, position bigint, what text) -> void
CREATE FUNCTION evstore._subscription_not_held(name text, "position" bigint, what text)
RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    h evstore.subscription_holds;
BEGIN
    SELECT x.* INTO h FROM evstore.subscription_holds x JOIN evstore.events e
        ON e.stream_id = x.stream_id AND e.global_position = $2
        WHERE x.subscription = $1 AND x.state <> 'skipped';
    IF FOUND AND h.global_position < $2 THEN
        RAISE EXCEPTION 'cannot % position % of subscription "%": it is held back', $3, $2, $1
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('It waits behind position %s of stream "%s".', h.global_position, h.stream_id),
                  HINT = format('%s position %s first, or use evstore.subscription_skip_stream.',
                                CASE WHEN $3 = 'skip' THEN 'Skip' ELSE 'Replay' END, h.global_position);
    END IF;
    RAISE EXCEPTION 'cannot % position % of subscription "%": no event there is waiting for a retry or parked', $3, $2, $1
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'evstore.subscription_held lists the events a subscription holds.';
END
$fn$;

-- evstore.subscription_replay(name text, position bigint) -> integer
CREATE FUNCTION evstore.subscription_replay(name text, "position" bigint DEFAULT NULL)
RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    h evstore.subscription_holds;
    n integer;
    t timestamptz := pg_catalog.clock_timestamp();
BEGIN
    IF $1 IS NULL THEN
        RAISE EXCEPTION 'subscription name must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF $2 IS NULL THEN
        -- every member, in member order
        PERFORM FROM evstore.subscription_checkpoints c WHERE c.subscription = $1
            ORDER BY c.member FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'subscription "%" does not exist', $1
                USING ERRCODE = 'undefined_object';
        END IF;
    ELSE
        h := evstore._subscription_hold($1, $2, NULL);
        IF h.subscription IS NULL OR h.state = 'skipped' THEN
            PERFORM evstore._subscription_not_held($1, $2, 'replay');
        END IF;
    END IF;
    -- a parked event gets max_attempts fresh attempts; one waiting for its
    -- retry keeps its count; one already due (or out) is left as it is
    UPDATE evstore.subscription_holds x
        SET state = 'retry', retry_at = t, parked_at = NULL,
            attempts = CASE WHEN x.state = 'parked' THEN 0 ELSE x.attempts END
        WHERE x.subscription = $1 AND ($2 IS NULL OR x.global_position = $2)
          AND (x.state = 'parked' OR (x.retry_at > t AND x.delivered_through IS NULL));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_replay(text, bigint) IS
    'Retry now: the parked or waiting event at position (NULL: all of the subscription) is delivered at the next fetch; the number of events';

-- evstore.subscription_skip(name text, position bigint) -> bigint
CREATE FUNCTION evstore.subscription_skip(name text, "position" bigint)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    h evstore.subscription_holds;
BEGIN
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'position must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    h := evstore._subscription_hold($1, $2, NULL);
    IF h.subscription IS NULL OR h.state = 'skipped' THEN
        PERFORM evstore._subscription_not_held($1, $2, 'skip');
    END IF;
    RETURN evstore._subscription_advance(
        (SELECT c FROM evstore.subscription_checkpoints c
          WHERE c.subscription = h.subscription AND c.member = h.member),
        h, h.global_position);
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_skip(text, bigint) IS
    'Give up the parked or waiting event at position as handled; its stream goes on (the next held event''s position, NULL when none is held any more)';

-- evstore.subscription_skip_stream(name text, stream_id text) -> bigint
CREATE FUNCTION evstore.subscription_skip_stream(name text, stream_id text)
RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    h evstore.subscription_holds;
    r evstore.subscription_checkpoints;
    n bigint;
BEGIN
    IF $2 IS NULL THEN
        RAISE EXCEPTION 'stream_id must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    h := evstore._subscription_hold($1, NULL, $2);
    IF h.subscription IS NULL OR h.state = 'skipped' THEN
        RAISE EXCEPTION 'subscription "%" holds no event of stream "%" back', $1, $2
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'evstore.subscription_held lists the streams a subscription holds.';
    END IF;
    SELECT * INTO r FROM evstore.subscription_checkpoints c
        WHERE c.subscription = h.subscription AND c.member = h.member;
    -- the held head and every later event of the stream the checkpoint has
    -- passed are given up; the stream's events after it are delivered
    SELECT count(*) INTO n FROM evstore.events e
        WHERE e.stream_id = h.stream_id AND e.stream_version >= h.stream_version
          AND e.global_position <= greatest(r.acked_position, h.global_position)
          AND (r.event_types IS NULL OR e.event_type = ANY (r.event_types));
    PERFORM evstore._subscription_advance(r, h, greatest(r.acked_position, h.global_position));
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_skip_stream(text, text) IS
    'Give up every held event of a stream (the parked or waiting one and those the checkpoint passed); the stream''s later events are delivered; the number of events given up';

CREATE VIEW evstore.subscription_held AS
SELECT h.subscription,
       h.member,
       h.stream_id,
       h.global_position,
       h.stream_version,
       h.event_id,
       h.event_type,
       CASE WHEN h.state = 'parked' THEN 'parked'
            WHEN h.delivered_through IS NOT NULL THEN 'delivered'
            WHEN h.retry_at > pg_catalog.clock_timestamp() THEN 'waiting'
            ELSE 'ready' END AS state,
       h.attempts,
       c.max_attempts,
       h.retry_at,
       h.last_error,
       h.first_failed_at,
       h.last_failed_at,
       h.parked_at,
       h.last_consumer AS consumer,
       (SELECT count(*) FROM evstore.events e
         WHERE e.stream_id = h.stream_id AND e.stream_version > h.stream_version
           AND (c.event_types IS NULL OR e.event_type = ANY (c.event_types))) AS held_back,
       h.held_since
FROM evstore.subscription_holds h
JOIN evstore.subscription_checkpoints c ON c.subscription = h.subscription AND c.member = h.member
WHERE h.state <> 'skipped';
COMMENT ON VIEW evstore.subscription_held IS
    'Streams a subscription holds back: the event whose turn it is (waiting for its retry, ready, delivered or parked) and how many later events of the stream wait behind it';

CREATE VIEW evstore.subscription_parked AS
SELECT h.subscription,
       h.member,
       h.stream_id,
       h.global_position,
       h.stream_version,
       h.event_id,
       h.event_type,
       h.attempts,
       h.last_error,
       h.parked_at AS since,
       h.first_failed_at,
       h.consumer,
       h.held_back,
       h.held_since
FROM evstore.subscription_held h
WHERE h.state = 'parked';
COMMENT ON VIEW evstore.subscription_parked IS
    'Parked events: failed max_attempts times; their streams wait until they are replayed or skipped';

CREATE OR REPLACE VIEW evstore.subscriptions AS
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
       c.updated_at,
       c.max_attempts,
       c.retry_delay,
       (SELECT count(*) FROM evstore.subscription_holds h
         WHERE h.subscription = c.subscription AND h.member = c.member
           AND h.state <> 'skipped') AS held_streams,
       (SELECT count(*) FROM evstore.subscription_holds h
         WHERE h.subscription = c.subscription AND h.member = c.member
           AND h.state = 'parked') AS parked
FROM evstore.subscription_checkpoints c;

REVOKE ALL ON evstore.subscription_holds, evstore.subscription_held,
    evstore.subscription_parked FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore._check_failure_settings(integer, interval),
    evstore._subscription_advance(evstore.subscription_checkpoints, evstore.subscription_holds, bigint),
    evstore._subscription_fetch_held(evstore.subscription_checkpoints, integer),
    evstore._subscription_ack_held(text, integer, bigint),
    evstore._subscription_leased(text, integer, text),
    evstore._subscription_hold(text, bigint, text),
    evstore._subscription_not_held(text, bigint, text),
    evstore.subscription_nack(text, integer, bigint, text, interval, text),
    evstore.alter_subscription(text, integer, interval, interval),
    evstore.subscription_replay(text, bigint),
    evstore.subscription_skip(text, bigint),
    evstore.subscription_skip_stream(text, text)
FROM PUBLIC;

-- create_subscription takes max_attempts and retry_delay (a new signature:
-- the old function goes, with any EXECUTE granted on it); drop_subscription
-- drops the holds; subscription_fetch and subscription_ack know about them.
DROP FUNCTION evstore.create_subscription(text, text[], text[], integer, bigint, interval);
CREATE FUNCTION evstore.create_subscription(
    name text,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_size integer DEFAULT 1,
    start_position bigint DEFAULT 0,
    lease_timeout interval DEFAULT '30 seconds',
    max_attempts integer DEFAULT 5,
    retry_delay interval DEFAULT '10 seconds')
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
    PERFORM evstore._check_failure_settings($7, $8);
    IF EXISTS (SELECT FROM evstore.subscription_checkpoints c WHERE c.subscription = $1) THEN
        RAISE EXCEPTION 'subscription "%" already exists', $1
            USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO evstore.subscription_checkpoints
        (subscription, member, group_size, categories, event_types, lease_timeout,
         acked_position, created_at, updated_at, max_attempts, retry_delay)
    SELECT $1, m, $4, $2, $3, $6, $5, pg_catalog.clock_timestamp(), pg_catalog.clock_timestamp(),
           $7, $8
    FROM pg_catalog.generate_series(0, $4 - 1) AS m
    ON CONFLICT ON CONSTRAINT subscription_checkpoints_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" already exists', $1
            USING ERRCODE = 'duplicate_object';
    END IF;
END
$fn$;
COMMENT ON FUNCTION evstore.create_subscription(text, text[], text[], integer, bigint, interval, integer, interval) IS
    'Create a durable subscription: filters, number of consumer-group members, start position, lease timeout and failure handling (attempts before parking, retry delay)';
REVOKE ALL ON FUNCTION evstore.create_subscription(text, text[], text[], integer, bigint, interval, integer, interval) FROM PUBLIC;

CREATE OR REPLACE FUNCTION evstore.drop_subscription(name text, if_exists boolean DEFAULT false)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    DELETE FROM evstore.subscription_checkpoints c WHERE c.subscription = $1;
    IF FOUND THEN
        DELETE FROM evstore.subscription_holds h WHERE h.subscription = $1;
        RETURN true;
    END IF;
    IF NOT coalesce($2, false) THEN
        RAISE EXCEPTION 'subscription "%" does not exist', $1
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION evstore.drop_subscription(text, boolean) IS
    'Drop a durable subscription and its checkpoints';

-- subscription_fetch with the hold-back branches: created once, with its
-- timeout, in the section "waiting reads" below.

CREATE OR REPLACE FUNCTION evstore.subscription_ack(
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
    r := evstore._subscription_leased($1, $2, $4);
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
    -- failure handling: redelivered events of held-back streams (docs/subscriptions.md)
    IF EXISTS (SELECT FROM evstore.subscription_holds h
               WHERE h.subscription = $1 AND h.member = $2
                 AND (h.delivered_through IS NOT NULL OR h.state = 'skipped')) THEN
        moved := evstore._subscription_ack_held($1, $2, $3) OR moved;
    END IF;
    RETURN moved;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_ack(text, integer, bigint, text) IS
    'Move a member''s checkpoint forward to position (compare-and-set: never backwards) and settle the redelivered events of held-back streams up to it; false when nothing changed';

-- ==== async projections (0.3.0) ====
-- Projections that a background worker of evstore runs after the append,
-- from their own durable subscription 'projection:<name>' (created and
-- dropped with them), instead of inside it (docs/projections.md).  New
-- catalog columns go at the end; the create functions gain a trailing
-- async argument (a new signature: the old one is dropped first).

ALTER TABLE evstore.projections_catalog
    ADD COLUMN async boolean NOT NULL DEFAULT false,
    ADD COLUMN paused boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN evstore.projections_catalog.async IS
    'Run by the database''s async worker from subscription ''projection:<name>'', not inside the append';
COMMENT ON COLUMN evstore.projections_catalog.paused IS
    'Async only: the worker leaves it alone until evstore.resume_projection()';

-- The create functions get a new signature: EXECUTE granted on the old
-- ones is carried over to the new ones (remembered for this transaction).
DO $do$
BEGIN
    PERFORM pg_catalog.set_config('evstore_upgrade.projection_grants', coalesce(pg_catalog.string_agg(
        pg_catalog.format('%s=%s', p.proname,
            CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END), ','), ''), true)
    FROM pg_catalog.pg_proc p,
         pg_catalog.aclexplode(p.proacl) a
         LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
    WHERE p.oid IN ('evstore.create_projection(text, regprocedure, text[], text[], regprocedure)'::pg_catalog.regprocedure,
                    'evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[])'::pg_catalog.regprocedure)
      AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE';
END
$do$;

DROP FUNCTION evstore.create_projection(text, regprocedure, text[], text[], regprocedure);
-- evstore.create_projection(name text, handler regprocedure, categories text[],
--     event_types text[], reset_function regprocedure, async boolean) -> void
CREATE FUNCTION evstore.create_projection(
    name text,
    handler regprocedure,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    reset_function regprocedure DEFAULT NULL,
    async boolean DEFAULT false)
RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_create_projection';

DROP FUNCTION evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[]);
-- evstore.create_sync_projection(name text, target regclass, key_column name,
--     key_source text, upsert_types text[], delete_types text[],
--     column_map jsonb, categories text[], async boolean) -> void
CREATE FUNCTION evstore.create_sync_projection(
    name text,
    target regclass,
    key_column name,
    key_source text DEFAULT 'stream_id',
    upsert_types text[] DEFAULT NULL,
    delete_types text[] DEFAULT NULL,
    column_map jsonb DEFAULT NULL,
    categories text[] DEFAULT NULL,
    async boolean DEFAULT false)
RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_create_sync_projection';

-- evstore.pause_projection(name text) -> boolean
CREATE FUNCTION evstore.pause_projection(name text)
RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_pause_projection';
COMMENT ON FUNCTION evstore.pause_projection(text) IS
    'Stop running an async projection (after the batch in progress commits); true when it was running';

-- evstore.resume_projection(name text) -> boolean
CREATE FUNCTION evstore.resume_projection(name text)
RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_resume_projection';
COMMENT ON FUNCTION evstore.resume_projection(text) IS
    'Run a paused async projection again, and retry a failing or failed one at once; true when it was paused';

-- evstore.projection_async_status() -> SETOF (name, worker_pid, state,
--     attempts, failing_position, retry_at, last_batch_at, horizon)
CREATE FUNCTION evstore.projection_async_status(
    OUT name text, OUT worker_pid integer, OUT state text, OUT attempts integer,
    OUT failing_position bigint, OUT retry_at timestamptz, OUT last_batch_at timestamptz,
    OUT horizon bigint)
RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_projection_async_status';

CREATE OR REPLACE VIEW evstore.projections AS
SELECT c.name, c.kind, c.owner, c.handler, c.reset_function, c.target,
       c.key_column, c.key_source, c.upsert_types, c.delete_types,
       c.column_map, c.categories, c.event_types, c.created_at, c.rebuilt_at,
       COALESCE(s.events_processed, 0) AS events_processed,
       s.last_position, s.last_error, s.last_error_position, s.last_error_at,
       c.search_path,
       c.async,
       c.paused,
       CASE WHEN c.async THEN COALESCE(a.state, 'stopped') END AS state,
       sc.acked_position AS checkpoint,
       CASE WHEN c.async THEN
           GREATEST(a.horizon - sc.acked_position, 0) END AS lag_positions,
       CASE WHEN c.async THEN COALESCE(
           (SELECT pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - e.recorded_at)
              FROM evstore.events e WHERE e.global_position > sc.acked_position
             ORDER BY e.global_position LIMIT 1), 0) END AS lag_seconds,
       a.worker_pid,
       a.attempts AS failing_attempts,
       a.failing_position,
       a.retry_at,
       a.last_batch_at,
       CASE WHEN c.async THEN
           (SELECT count(*) FROM evstore.subscription_holds h
             WHERE h.subscription = 'projection:' || c.name AND h.state <> 'skipped') END AS held_streams,
       CASE WHEN c.async THEN
           (SELECT count(*) FROM evstore.subscription_holds h
             WHERE h.subscription = 'projection:' || c.name AND h.state = 'parked') END AS parked_events
  FROM evstore.projections_catalog c
  LEFT JOIN evstore.projection_stats() s ON s.name = c.name
  LEFT JOIN evstore.projection_async_status() a ON a.name = c.name
  LEFT JOIN evstore.subscription_checkpoints sc
         ON c.async AND sc.subscription = 'projection:' || c.name AND sc.member = 0;
COMMENT ON VIEW evstore.projections IS
    'Projections with their definition and, since server start or their last rebuild, what committed transactions applied; async ones with their checkpoint, lag and state';

REVOKE ALL ON FUNCTION
    evstore.create_projection(text, regprocedure, text[], text[], regprocedure, boolean),
    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean),
    evstore.pause_projection(text),
    evstore.resume_projection(text),
    evstore.projection_async_status()
FROM PUBLIC;

DO $do$
DECLARE
    g text;
BEGIN
    FOREACH g IN ARRAY coalesce(pg_catalog.string_to_array(
        nullif(pg_catalog.current_setting('evstore_upgrade.projection_grants', true), ''), ','), '{}')
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s',
            CASE pg_catalog.split_part(g, '=', 1)
                WHEN 'create_projection' THEN 'evstore.create_projection(text, regprocedure, text[], text[], regprocedure, boolean)'
                ELSE 'evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean)' END,
            pg_catalog.split_part(g, '=', 2));
    END LOOP;
    -- the view now calls projection_async_status(): whoever could read it still can
    FOR g IN
        SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END
        FROM pg_catalog.pg_proc p,
             pg_catalog.aclexplode(p.proacl) a
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE p.oid = 'evstore.projection_stats()'::pg_catalog.regprocedure
          AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION evstore.projection_async_status() TO %s', g);
    END LOOP;
END
$do$;

-- ==== blue/green rebuilds (0.3.0) ====
-- A rebuild that fills copies of a projection's read models in a background
-- worker while the live ones keep serving and being updated, then swaps
-- them in (docs/projections.md, "Rebuilding a projection").  One row per
-- rebuild in progress (or failed, or interrupted by a crash); the copies
-- live in the row's shadow schema until the swap.  The helpers below are
-- called by the C code as the extension owner only.

CREATE TABLE evstore.projection_rebuild_jobs (
    name            text        NOT NULL,
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    read_models     regclass[]  NOT NULL,
    copies          regclass[],
    shadow_schema   name        NOT NULL,
    requested_by    regrole     NOT NULL,
    batch_size      integer     NOT NULL,
    phase           text        NOT NULL DEFAULT 'starting',
    position        bigint      NOT NULL DEFAULT 0,
    events_replayed bigint      NOT NULL DEFAULT 0,
    target_position bigint,
    started_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    error           text,
    CONSTRAINT projection_rebuild_jobs_pkey PRIMARY KEY (name),
    CONSTRAINT projection_rebuild_jobs_id_key UNIQUE (id),
    CONSTRAINT projection_rebuild_jobs_phase_check
        CHECK (phase IN ('starting', 'filling', 'swapping', 'failed'))
);
COMMENT ON TABLE evstore.projection_rebuild_jobs IS
    'Blue/green rebuilds in progress; change them only through evstore.start_rebuild/cancel_rebuild';

-- evstore._rebuild_check(read_models regclass[]) -> void
-- Refuses read models a blue/green rebuild cannot replace (see the guide).
CREATE FUNCTION evstore._rebuild_check(read_models regclass[]) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r regclass;
    c record;
    what text;
BEGIN
    IF read_models IS NULL OR cardinality(read_models) = 0 THEN
        RAISE EXCEPTION 'read_models must not be null or empty'
            USING ERRCODE = '22023',
                  HINT = 'Name the tables the projection''s handler writes, e.g. read_models => ARRAY[''order_totals''::regclass].';
    END IF;
    IF array_ndims(read_models) > 1 OR array_position(read_models, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'read_models must be a one-dimensional array without nulls' USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT x.relname) <> cardinality(read_models)
          FROM unnest(read_models) m JOIN pg_class x ON x.oid = m) THEN
        RAISE EXCEPTION 'read_models must not name two tables of the same name'
            USING ERRCODE = '22023',
                  DETAIL = 'The copies are built under the same names in one shadow schema.';
    END IF;
    FOREACH r IN ARRAY read_models LOOP
        SELECT x.relkind, x.relpersistence, x.relispartition, x.relnamespace
          INTO c FROM pg_class x WHERE x.oid = r;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'relation with OID % does not exist', r::oid USING ERRCODE = '42P01';
        END IF;
        what := NULL;
        IF c.relkind = 'p' OR c.relispartition OR
           EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = r OR i.inhparent = r) THEN
            what := 'it is partitioned, a partition or in an inheritance tree';
        ELSIF c.relkind <> 'r' THEN
            what := 'it is not a table';
        ELSIF c.relpersistence = 't' THEN
            what := 'it is a temporary table';
        ELSIF c.relnamespace = 'evstore'::regnamespace THEN
            what := 'it is one of evstore''s own tables';
        ELSIF EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                        AND d.objid = r AND d.deptype = 'e') THEN
            what := 'it belongs to an extension';
        ELSIF EXISTS (SELECT FROM pg_depend d JOIN pg_rewrite w ON w.oid = d.objid
                       WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                         AND d.refobjid = r AND w.ev_class <> r) THEN
            what := 'views or rules depend on it';
        ELSIF EXISTS (SELECT FROM pg_constraint k WHERE k.confrelid = r) THEN
            what := 'a foreign key references it';
        ELSIF EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = r AND NOT t.tgisinternal) THEN
            what := 'it has triggers';
        ELSIF EXISTS (SELECT FROM pg_rewrite w WHERE w.ev_class = r) THEN
            what := 'it has rules';
        ELSIF EXISTS (SELECT FROM pg_publication_rel pr WHERE pr.prrelid = r) THEN
            what := 'it is in a publication';
        END IF;
        IF what IS NOT NULL THEN
            RAISE EXCEPTION 'read model % cannot be rebuilt blue/green: %', r, what
                USING ERRCODE = '0A000',
                      DETAIL = 'A blue/green rebuild replaces the table by a copy; the copy would not carry this.',
                      HINT = 'Use evstore.rebuild_projection(), which rebuilds in place in one transaction.';
        END IF;
    END LOOP;
END
$fn$;

-- evstore._rebuild_create_copies(job bigint) -> void
-- The shadow schema and in it an empty copy of each read model: columns,
-- defaults, constraints, indexes, comments, storage and statistics
-- settings (LIKE ... INCLUDING ALL), outgoing foreign keys, owner, grants,
-- row-level security and its policies.
CREATE FUNCTION evstore._rebuild_create_copies(job bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    j evstore.projection_rebuild_jobs;
    r regclass;
    cp regclass;
    t record;
    k record;
    made regclass[] := '{}';
    powner regrole;
BEGIN
    SELECT * INTO STRICT j FROM evstore.projection_rebuild_jobs WHERE id = job FOR UPDATE;
    SELECT c.owner INTO powner FROM evstore.projections_catalog c WHERE c.name = j.name;
    EXECUTE format('CREATE SCHEMA %I', j.shadow_schema);
    EXECUTE format('COMMENT ON SCHEMA %I IS %L', j.shadow_schema,
                   format('copies of the read models of projection %s during a blue/green rebuild; evstore drops it', j.name));
    IF powner IS NOT NULL THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %s', j.shadow_schema, powner);
    END IF;
    FOREACH r IN ARRAY j.read_models LOOP
        SELECT x.relname, x.relpersistence, x.relowner::regrole AS owner, x.reloptions,
               x.relacl, x.relrowsecurity, x.relforcerowsecurity, n.nspname
          INTO STRICT t FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace WHERE x.oid = r;
        EXECUTE format('CREATE %sTABLE %I.%I (LIKE %s INCLUDING ALL)%s',
                       CASE WHEN t.relpersistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                       j.shadow_schema, t.relname, r,
                       CASE WHEN t.reloptions IS NULL THEN ''
                            ELSE ' WITH (' || array_to_string(t.reloptions, ', ') || ')' END);
        cp := format('%I.%I', j.shadow_schema, t.relname)::regclass;
        FOR k IN SELECT f.conname, pg_get_constraintdef(f.oid) AS def
                   FROM pg_constraint f WHERE f.conrelid = r AND f.contype = 'f' ORDER BY f.oid LOOP
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', cp, k.conname, k.def);
        END LOOP;
        EXECUTE format('ALTER TABLE %s OWNER TO %s', cp, t.owner);
        IF t.relacl IS NOT NULL THEN
            EXECUTE format('REVOKE ALL ON %s FROM %s', cp, t.owner);
            FOR k IN SELECT a.privilege_type, a.grantee, a.is_grantable FROM aclexplode(t.relacl) a LOOP
                EXECUTE format('GRANT %s ON %s TO %s%s', k.privilege_type, cp,
                               CASE WHEN k.grantee = 0 THEN 'PUBLIC' ELSE k.grantee::regrole::text END,
                               CASE WHEN k.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
        FOR k IN SELECT at.attname, a.privilege_type, a.grantee, a.is_grantable
                   FROM pg_attribute at, aclexplode(at.attacl) a
                  WHERE at.attrelid = r AND at.attacl IS NOT NULL AND NOT at.attisdropped LOOP
            EXECUTE format('GRANT %s (%I) ON %s TO %s%s', k.privilege_type, k.attname, cp,
                           CASE WHEN k.grantee = 0 THEN 'PUBLIC' ELSE k.grantee::regrole::text END,
                           CASE WHEN k.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        EXECUTE format('COMMENT ON TABLE %s IS %L', cp, obj_description(r, 'pg_class'));
        IF t.relrowsecurity THEN
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', cp);
        END IF;
        IF t.relforcerowsecurity THEN
            EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', cp);
        END IF;
        FOR k IN SELECT p.* FROM pg_policies p WHERE p.schemaname = t.nspname AND p.tablename = t.relname LOOP
            EXECUTE format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', k.policyname, cp,
                           k.permissive, k.cmd,
                           (SELECT string_agg(CASE WHEN x = 'public' THEN 'PUBLIC' ELSE quote_ident(x) END, ', ')
                              FROM unnest(k.roles) x),
                           CASE WHEN k.qual IS NULL THEN '' ELSE ' USING (' || k.qual || ')' END,
                           CASE WHEN k.with_check IS NULL THEN '' ELSE ' WITH CHECK (' || k.with_check || ')' END);
        END LOOP;
        made := made || cp;
    END LOOP;
    UPDATE evstore.projection_rebuild_jobs
       SET copies = made, phase = 'filling', updated_at = pg_catalog.now()
     WHERE id = job;
END
$fn$;

-- evstore._rebuild_swap(job bigint) -> void
-- Each copy replaces its read model: sequences the read model owns go to
-- the copy, the read model is dropped (RESTRICT: anything still depending
-- on it makes the swap fail and roll back), the copy moves into its schema
-- and its indexes take the old names.  Then the shadow schema and the job
-- row go, and a sync projection's target is the copy.
CREATE FUNCTION evstore._rebuild_swap(job bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    AS $fn$
DECLARE
    j evstore.projection_rebuild_jobs;
    r regclass;
    cp regclass;
    nsp name;
    old_names name[];
    new_idx oid[];
    seqs record;
    owned text[];
    i integer;
BEGIN
    SELECT * INTO STRICT j FROM evstore.projection_rebuild_jobs WHERE id = job FOR UPDATE;
    FOR i IN 1 .. cardinality(j.read_models) LOOP
        r := j.read_models[i];
        cp := j.copies[i];
        SELECT n.nspname INTO STRICT nsp FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace WHERE x.oid = r;
        old_names := ARRAY(SELECT x.relname FROM pg_index ix JOIN pg_class x ON x.oid = ix.indexrelid
                            WHERE ix.indrelid = r ORDER BY ix.indexrelid);
        new_idx := ARRAY(SELECT ix.indexrelid FROM pg_index ix WHERE ix.indrelid = cp ORDER BY ix.indexrelid);
        IF cardinality(old_names) <> cardinality(new_idx) THEN
            RAISE EXCEPTION 'the copy of % has % indexes, the read model %', r,
                cardinality(new_idx), cardinality(old_names) USING ERRCODE = '55000';
        END IF;
        -- free the index names the copy will take once it is in place
        FOR k IN 1 .. cardinality(new_idx) LOOP
            EXECUTE format('ALTER INDEX %s RENAME TO %I', new_idx[k]::regclass, 'evstore_swap_' || new_idx[k]);
        END LOOP;
        -- sequences owned by a column of the read model (serial): to the copy
        owned := '{}';
        FOR seqs IN SELECT d.objid::regclass AS seq, a.attname
                      FROM pg_depend d
                      JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                       AND d.refobjid = r AND d.deptype = 'a' LOOP
            EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', seqs.seq);
            owned := owned || ARRAY[seqs.seq::oid::text, seqs.attname::text];
        END LOOP;
        EXECUTE format('DROP TABLE %s', r);
        EXECUTE format('ALTER TABLE %s SET SCHEMA %I', cp, nsp);
        FOR k IN 1 .. cardinality(new_idx) LOOP
            EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', nsp, 'evstore_swap_' || new_idx[k], old_names[k]);
        END LOOP;
        FOR k IN 1 .. cardinality(owned) / 2 LOOP
            EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', owned[2 * k - 1]::oid::regclass, cp, owned[2 * k]);
        END LOOP;
        UPDATE evstore.projections_catalog c SET target = cp WHERE c.name = j.name AND c.target = r;
    END LOOP;
    UPDATE evstore.projections_catalog c SET rebuilt_at = pg_catalog.now() WHERE c.name = j.name;
    EXECUTE format('DROP SCHEMA %I', j.shadow_schema);
    DELETE FROM evstore.projection_rebuild_jobs WHERE id = job;
END
$fn$;

-- evstore._rebuild_discard(job bigint) -> void
-- The copies and the job row go; the read models are not touched.
CREATE FUNCTION evstore._rebuild_discard(job bigint) RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    SET client_min_messages = warning
    AS $fn$
DECLARE
    j evstore.projection_rebuild_jobs;
BEGIN
    SELECT * INTO j FROM evstore.projection_rebuild_jobs WHERE id = job FOR UPDATE;
    IF FOUND THEN
        -- only the copies: the schema holds nothing else evstore made
        EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', j.shadow_schema);
        DELETE FROM evstore.projection_rebuild_jobs WHERE id = job;
    END IF;
END
$fn$;

-- evstore.start_rebuild(name text, read_models regclass[], batch_size integer) -> bigint
CREATE FUNCTION evstore.start_rebuild(
    name text,
    read_models regclass[] DEFAULT NULL,
    batch_size integer DEFAULT 1000)
RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_start_rebuild';
COMMENT ON FUNCTION evstore.start_rebuild(text, regclass[], integer) IS
    'Starts (or resumes) a blue/green rebuild of a projection in a background worker and returns at once; the rebuild''s id';

-- evstore.cancel_rebuild(name text) -> boolean
CREATE FUNCTION evstore.cancel_rebuild(name text)
RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'evstore_cancel_rebuild';
COMMENT ON FUNCTION evstore.cancel_rebuild(text) IS
    'Stops a blue/green rebuild and drops its copies; the live read models are not touched. False when there was none';

CREATE OR REPLACE VIEW evstore.projection_rebuilds AS
SELECT p.name, p.pid, p.started_at, p.events_replayed, p.at_position, p.target_position,
       'in-transaction'::text AS mode, 'replaying'::text AS phase,
       NULL::regclass[] AS read_models, pg_catalog.now() AS updated_at,
       NULL::double precision AS events_per_second, NULL::double precision AS eta_seconds,
       NULL::text AS error
  FROM evstore.projection_rebuild_progress() p
UNION ALL
SELECT j.name, w.pid, j.started_at, j.events_replayed, j.position, j.target_position,
       'blue-green'::text,
       CASE WHEN j.phase <> 'failed' AND w.pid IS NULL THEN 'interrupted' ELSE j.phase END,
       j.read_models, j.updated_at,
       CASE WHEN j.updated_at > j.started_at
            THEN j.events_replayed / extract(epoch FROM j.updated_at - j.started_at)::double precision END,
       CASE WHEN j.updated_at > j.started_at AND j.position > 0
            THEN greatest(j.target_position - j.position, 0)
                 * extract(epoch FROM j.updated_at - j.started_at)::double precision / j.position END,
       j.error
  FROM evstore.projection_rebuild_jobs j
  LEFT JOIN LATERAL (
      SELECT l.pid FROM pg_catalog.pg_locks l
       WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
         AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                            WHERE d.datname = pg_catalog.current_database())
         AND l.classid = (j.id >> 32)::oid AND l.objid = (j.id & 4294967295)::oid
         AND l.objsubid = 21058
       LIMIT 1) w ON true;
COMMENT ON VIEW evstore.projection_rebuilds IS
    'Rebuilds in progress: in-transaction ones (evstore.rebuild_projection) and blue/green ones (evstore.start_rebuild) with their phase, events replayed so far and the position reached';

REVOKE ALL ON evstore.projection_rebuild_jobs, evstore.projection_rebuilds FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore._rebuild_check(regclass[]),
    evstore._rebuild_create_copies(bigint),
    evstore._rebuild_swap(bigint),
    evstore._rebuild_discard(bigint),
    evstore.start_rebuild(text, regclass[], integer),
    evstore.cancel_rebuild(text)
FROM PUBLIC;

-- ==== distributed mode (0.3.0) ====
-- evstore on a Citus cluster: the per-stream tables distributed by
-- stream_id, colocated (src/distributed.c).  Reference: docs/distributed.md.

-- evstore.load_snapshot(stream_id text) -> TABLE (stream_version bigint, state jsonb)
CREATE OR REPLACE FUNCTION evstore.load_snapshot(stream_id text)
RETURNS TABLE (stream_version bigint, state jsonb)
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    -- PL/pgSQL, not SQL: Citus cannot plan a SQL function's parameters
    -- when the call is delegated to a worker (distributed mode)
    RETURN QUERY
    SELECT sn.stream_version, sn.state
    FROM evstore.snapshots sn
    JOIN evstore.streams s ON s.stream_id = sn.stream_id
    WHERE sn.stream_id = $1
      AND s.deleted_at IS NULL
      AND sn.stream_version BETWEEN s.first_version AND s.version;
END
$fn$;

-- evstore._distribute_node(position_stride integer, node_offset integer,
--     position_floor bigint) -> void
CREATE FUNCTION evstore._distribute_node(position_stride integer, node_offset integer,
                                         position_floor bigint)
RETURNS void
    LANGUAGE c STRICT VOLATILE
    AS 'MODULE_PATHNAME', 'evstore_distribute_node';
COMMENT ON FUNCTION evstore._distribute_node(integer, integer, bigint) IS
    'Internal (evstore.distribute() runs it on every node): unique indexes with stream_id, this node''s position sequence';

-- evstore.distribute(shard_count integer, position_stride integer) -> text
CREATE FUNCTION evstore.distribute(shard_count integer DEFAULT 32,
                                   position_stride integer DEFAULT 64)
RETURNS text
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    my_version text;
    bad text;
    position_floor bigint;
    nodes integer;
    moved bigint := 0;
    f text;
    stride_now bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'evstore.distribute() needs Citus'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The citus extension is not installed in this database.',
                  HINT = 'Preload citus before evstore (shared_preload_libraries = ''citus, evstore''), run CREATE EXTENSION citus on every node, add the workers with citus_add_node(), then call evstore.distribute() on the coordinator (docs/distributed.md).';
    END IF;
    IF shard_count IS NULL OR shard_count < 1 OR position_stride IS NULL OR position_stride < 2 THEN
        RAISE EXCEPTION 'shard_count must be >= 1 and position_stride >= 2'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_catalog.citus_is_coordinator() THEN
        RAISE EXCEPTION 'evstore.distribute() runs on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the Citus coordinator and call it there.';
    END IF;
    SELECT count(*) INTO nodes FROM pg_catalog.pg_dist_node
     WHERE noderole = 'primary' AND isactive AND shouldhaveshards AND groupid <> 0;
    IF nodes = 0 THEN
        RAISE EXCEPTION 'the Citus cluster has no worker to hold evstore''s shards'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Add workers with SELECT citus_add_node(host, port); first.';
    END IF;
    SELECT max(groupid) INTO nodes FROM pg_catalog.pg_dist_node;
    IF nodes >= position_stride THEN
        RAISE EXCEPTION 'position_stride % is too small for Citus group id %', position_stride, nodes
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Each node hands out the positions equal to its group id modulo the stride.';
    END IF;
    SELECT seqincrement INTO stride_now FROM pg_catalog.pg_sequence
     WHERE seqrelid = 'evstore.global_position_seq'::pg_catalog.regclass;
    IF stride_now > 1 AND stride_now <> position_stride THEN
        RAISE EXCEPTION 'evstore is already distributed with position_stride %', stride_now
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = pg_catalog.format('Call evstore.distribute(position_stride => %s).', stride_now);
    END IF;

    -- the same evstore everywhere
    SELECT e.extversion INTO my_version FROM pg_catalog.pg_extension e WHERE e.extname = 'evstore';
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s has %s', n.nodename, n.nodeport,
                                 CASE WHEN r.success THEN r.result ELSE 'an error: ' || r.result END), '; ')
      INTO bad
      FROM pg_catalog.run_command_on_all_nodes(
             $q$SELECT coalesce((SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'evstore'), 'no evstore')$q$) r
      JOIN pg_catalog.pg_dist_node n ON n.nodeid = r.nodeid
     WHERE NOT r.success OR r.result <> my_version;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'every node must run evstore %', my_version
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = bad || '.',
                  HINT = 'Install the same evstore build on every node (CREATE EXTENSION evstore, or ALTER EXTENSION evstore UPDATE), then retry.';
    END IF;

    -- positions: above every one any node handed out so far
    SELECT max(r.result::bigint) INTO position_floor
      FROM pg_catalog.run_command_on_all_nodes(
             'SELECT last_value FROM evstore.global_position_seq') r
     WHERE r.success;
    PERFORM evstore._distribute_node(position_stride, 0, position_floor);
    SELECT pg_catalog.string_agg(pg_catalog.format('%s:%s: %s', n.nodename, n.nodeport, r.result), '; ')
      INTO bad
      FROM pg_catalog.run_command_on_workers(pg_catalog.format(
             'SELECT evstore._distribute_node(%s, (SELECT groupid FROM pg_catalog.pg_dist_local_group), %s)',
             position_stride, position_floor)) r
      JOIN pg_catalog.pg_dist_node n ON n.nodename = r.nodename AND n.nodeport = r.nodeport
     WHERE NOT r.success;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'could not prepare every worker for distributed mode'
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = bad;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition
                    WHERE logicalrelid = 'evstore.events'::pg_catalog.regclass) THEN
        SELECT count(*) INTO moved FROM ONLY evstore.events;
        -- the append-only guard triggers go to the shards too
        PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
        PERFORM pg_catalog.create_distributed_table('evstore.events', 'stream_id',
                    shard_count => shard_count, colocate_with => 'none');
        PERFORM pg_catalog.create_distributed_table('evstore.streams', 'stream_id',
                    colocate_with => 'evstore.events');
        PERFORM pg_catalog.create_distributed_table('evstore.snapshots', 'stream_id',
                    colocate_with => 'evstore.events');
        -- Citus copied the rows into the shards: the shells must hold none
        PERFORM pg_catalog.truncate_local_data_after_distributing_table('evstore.events');
        PERFORM pg_catalog.truncate_local_data_after_distributing_table('evstore.streams');
        PERFORM pg_catalog.truncate_local_data_after_distributing_table('evstore.snapshots');
    END IF;

    -- calls run on the worker that holds their stream
    FOREACH f IN ARRAY ARRAY[
        'evstore.append_event(text,text,jsonb,jsonb,bigint,uuid)',
        'evstore.append_events(text,jsonb,bigint)',
        'evstore.read_stream(text,bigint,bigint,boolean)',
        'evstore.stream_version(text)',
        'evstore.delete_stream(text,bigint,jsonb)',
        'evstore.tombstone_stream(text,bigint,jsonb)',
        'evstore.save_snapshot(text,bigint,jsonb)',
        'evstore.load_snapshot(text)',
        'evstore.delete_snapshot(text)']
    LOOP
        PERFORM pg_catalog.create_distributed_function(f::pg_catalog.regprocedure, 'stream_id',
                    colocate_with => 'evstore.events');
    END LOOP;

    RETURN pg_catalog.format('evstore is distributed: %s shards of evstore.events on %s workers, %s events moved to the shards',
        (SELECT count(*) FROM pg_catalog.pg_dist_shard WHERE logicalrelid = 'evstore.events'::pg_catalog.regclass),
        (SELECT count(DISTINCT groupid) FROM pg_catalog.pg_dist_node WHERE groupid <> 0 AND noderole = 'primary'),
        moved);
END
$fn$;
COMMENT ON FUNCTION evstore.distribute(integer, integer) IS
    'Distribute evstore on a Citus cluster (run on the coordinator; again after adding a node): see docs/distributed.md';

-- evstore._shards() -> SETOF record (the evstore.shards view)
CREATE FUNCTION evstore._shards(
    OUT table_name text, OUT shardid bigint, OUT shard_name text,
    OUT hash_min integer, OUT hash_max integer,
    OUT node_name text, OUT node_port integer, OUT group_id integer)
RETURNS SETOF record
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF pg_catalog.to_regclass('pg_catalog.pg_dist_shard') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT c.relname::text, s.shardid, c.relname || '_' || s.shardid,
               s.shardminvalue::integer, s.shardmaxvalue::integer,
               n.nodename::text, n.nodeport, n.groupid
          FROM pg_catalog.pg_dist_shard s
          JOIN pg_catalog.pg_class c ON c.oid = s.logicalrelid
          JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
          JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary'
         WHERE c.relnamespace = 'evstore'::pg_catalog.regnamespace
         ORDER BY s.shardminvalue::integer, c.relname$q$;
END
$fn$;

CREATE VIEW evstore.shards AS
SELECT table_name, shardid, shard_name, hash_min, hash_max, node_name, node_port, group_id
  FROM evstore._shards();
COMMENT ON VIEW evstore.shards IS
    'Shards of evstore''s distributed tables and the node holding each (Citus''s own views hide extension tables); a stream is in the shard with hashtext(stream_id) BETWEEN hash_min AND hash_max';

REVOKE ALL ON FUNCTION
    evstore._distribute_node(integer, integer, bigint),
    evstore.distribute(integer, integer),
    evstore._shards()
FROM PUBLIC;
REVOKE ALL ON evstore.shards FROM PUBLIC;
GRANT SELECT ON evstore.shards TO pg_monitor;
GRANT EXECUTE ON FUNCTION evstore._shards() TO pg_monitor;

-- ==== distributed feed (0.3.0) ====
-- read_all and durable subscriptions on a Citus cluster (SPEC section 9,
-- docs/distributed.md): the never-skip promise holds per shard, so a
-- reader's checkpoint is a vector, one position per shard of evstore.events.

-- evstore.read_all_shard(shard_id bigint, after_position bigint, max_count integer,
--     categories text[], event_types text[], group_member integer, group_size integer,
--     category_prefixes text[], include_system boolean) -> SETOF evstore.events
CREATE FUNCTION evstore.read_all_shard(
    shard_id bigint,
    after_position bigint DEFAULT 0,
    max_count integer DEFAULT 1000,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_member integer DEFAULT NULL,
    group_size integer DEFAULT NULL,
    category_prefixes text[] DEFAULT NULL,
    include_system boolean DEFAULT true)
RETURNS SETOF evstore.events
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'evstore_read_all_shard';
COMMENT ON FUNCTION evstore.read_all_shard(bigint, bigint, integer, text[], text[], integer, integer, text[], boolean) IS
    'read_all over one shard of evstore.events, on the node that holds it, up to that node''s fence (never skips)';

-- Refuse to run a distributed-mode function without Citus.
-- evstore._require_citus(caller text) -> void
CREATE FUNCTION evstore._require_citus(caller text)
RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF to_regclass('pg_catalog.pg_dist_shard') IS NULL THEN
        RAISE EXCEPTION '%() needs Citus', $1
            USING ERRCODE = 'feature_not_supported',
                  DETAIL = 'Extension "citus" is not installed in this database.',
                  HINT = 'On a single node, use evstore.read_all() and evstore.subscription_fetch().';
    END IF;
END
$fn$;

-- A checkpoint vector: a JSON object from shard id to position.
-- evstore._checkpoint_vector(checkpoint jsonb) -> jsonb
CREATE FUNCTION evstore._checkpoint_vector(checkpoint jsonb)
RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    IF $1 IS NULL THEN
        RETURN '{}';
    END IF;
    IF jsonb_typeof($1) <> 'object' OR EXISTS (
        SELECT FROM jsonb_each($1) e
         WHERE e.key !~ '^[0-9]{1,18}$' OR jsonb_typeof(e.value) <> 'number'
            OR e.value::text !~ '^[0-9]{1,18}$') THEN
        RAISE EXCEPTION 'invalid checkpoint vector: %', left($1::text, 200)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A checkpoint vector is a JSON object from shard id to position, both non-negative integers.',
                  HINT = 'Start with ''{}'' (every shard from its beginning).';
    END IF;
    RETURN $1;
END
$fn$;

-- evstore.read_all_distributed(checkpoint jsonb, max_count integer, categories text[],
--     event_types text[], group_member integer, group_size integer)
--     -> SETOF (shard_id bigint, event evstore.events)
CREATE FUNCTION evstore.read_all_distributed(
    checkpoint jsonb DEFAULT '{}',
    max_count integer DEFAULT 1000,
    categories text[] DEFAULT NULL,
    event_types text[] DEFAULT NULL,
    group_member integer DEFAULT NULL,
    group_size integer DEFAULT NULL,
    OUT shard_id bigint,
    OUT event evstore.events)
RETURNS SETOF record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE ROWS 1000
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    vec jsonb := evstore._checkpoint_vector($1);
    names text[];
    ports integer[];
    commands text[];
    r record;
    batch jsonb := '[]';
BEGIN
    IF $2 IS NULL OR $2 <= 0 THEN
        RAISE EXCEPTION 'max_count must be > 0, not %', coalesce($2::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM evstore._require_citus('evstore.read_all_distributed');
    -- one command per node: read_all_shard over each of its shards, each
    -- from its own position in the vector
    SELECT array_agg(c.nodename ORDER BY c.nodename, c.nodeport),
           array_agg(c.nodeport ORDER BY c.nodename, c.nodeport),
           array_agg(c.command ORDER BY c.nodename, c.nodeport)
      INTO names, ports, commands
      FROM (SELECT n.nodename, n.nodeport,
                   'SELECT coalesce(pg_catalog.json_agg(x), ''[]'')::text FROM ('
                   || string_agg(format(
                        'SELECT %s::bigint AS s, e FROM evstore.read_all_shard(%s, %s, %s, %L::text[], %L::text[], %L::integer, %L::integer) e',
                        s.shardid, s.shardid, coalesce((vec ->> s.shardid::text)::bigint, 0),
                        $2, $3, $4, $5, $6), ' UNION ALL ' ORDER BY s.shardid)
                   || ') x' AS command
              FROM pg_catalog.pg_dist_shard s
              JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
              JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid
             WHERE s.logicalrelid = 'evstore.events'::regclass
               AND n.isactive AND n.noderole = 'primary'
             GROUP BY n.nodename, n.nodeport) c;
    IF names IS NULL THEN
        RAISE EXCEPTION 'evstore.events is not distributed'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run evstore.distribute() on the coordinator first (docs/distributed.md).';
    END IF;
    FOR r IN SELECT * FROM pg_catalog.master_run_on_worker(names, ports, commands, true) LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'reading the shards on node %:% failed: %', r.node_name, r.node_port, r.result
                USING ERRCODE = 'connection_failure',
                      HINT = 'Nothing was consumed: retry with the same checkpoint.';
        END IF;
        batch := batch || r.result::jsonb;
    END LOOP;
    -- merge: cross-shard order by position (approximate: each node has its
    -- own sequence); what is cut off is a suffix of each shard's batch
    RETURN QUERY
        SELECT (j ->> 's')::bigint, jsonb_populate_record(NULL::evstore.events, j -> 'e')
          FROM jsonb_array_elements(batch) j
         ORDER BY (j -> 'e' ->> 'global_position')::bigint, (j ->> 's')::bigint
         LIMIT $2;
END
$fn$;
COMMENT ON FUNCTION evstore.read_all_distributed(jsonb, integer, text[], text[], integer, integer) IS
    'Merged feed over every shard of a distributed store after a checkpoint vector (shard id -> position): every committed event once, per-stream order kept, cross-shard order approximate';

-- evstore.checkpoint_advance(checkpoint jsonb, shard_id bigint, "position" bigint) -> jsonb
CREATE FUNCTION evstore.checkpoint_advance(checkpoint jsonb, shard_id bigint, "position" bigint)
RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    AS $fn$
    SELECT evstore._checkpoint_vector($1)
        || jsonb_build_object($2::text,
               greatest($3, coalesce((evstore._checkpoint_vector($1) ->> $2::text)::bigint, 0)))
$fn$;
COMMENT ON FUNCTION evstore.checkpoint_advance(jsonb, bigint, bigint) IS
    'A checkpoint vector with one shard''s position moved forward (never backwards)';

-- Per-shard checkpoints of durable subscriptions in distributed mode; a
-- shard without a row starts at the member's acked_position.
CREATE TABLE evstore.subscription_shard_checkpoints (
    subscription   text        NOT NULL,
    member         integer     NOT NULL,
    shard_id       bigint      NOT NULL,
    acked_position bigint      NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT subscription_shard_checkpoints_pkey PRIMARY KEY (subscription, member, shard_id),
    CONSTRAINT subscription_shard_checkpoints_position_check CHECK (acked_position >= 0)
);
COMMENT ON TABLE evstore.subscription_shard_checkpoints IS
    'Durable subscriptions on a distributed store: the acknowledged position of each member per shard of evstore.events';
SELECT pg_catalog.pg_extension_config_dump('evstore.subscription_shard_checkpoints', '');

-- A dropped subscription (member) takes its per-shard checkpoints along (a
-- trigger, not a foreign key: a foreign key's system triggers carry OIDs in
-- their names, which an upgraded and a fresh install would not share).
-- evstore._subscription_shard_cleanup() -> trigger
CREATE FUNCTION evstore._subscription_shard_cleanup() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $fn$
BEGIN
    DELETE FROM evstore.subscription_shard_checkpoints k
     WHERE k.subscription = OLD.subscription AND k.member = OLD.member;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER subscription_shard_cleanup
    AFTER DELETE ON evstore.subscription_checkpoints
    FOR EACH ROW EXECUTE FUNCTION evstore._subscription_shard_cleanup();

-- evstore.subscription_vector(name text, member integer) -> jsonb
CREATE FUNCTION evstore.subscription_vector(name text, member integer DEFAULT 0)
RETURNS jsonb
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    base bigint;
BEGIN
    PERFORM evstore._require_citus('evstore.subscription_vector');
    SELECT c.acked_position INTO base FROM evstore.subscription_checkpoints c
     WHERE c.subscription = $1 AND c.member = $2;
    IF NOT FOUND THEN
        PERFORM evstore._subscription_member($1, $2);  -- the clear error
    END IF;
    RETURN coalesce((
        SELECT jsonb_object_agg(s.shardid::text, coalesce(k.acked_position, base) ORDER BY s.shardid)
          FROM pg_catalog.pg_dist_shard s
          LEFT JOIN evstore.subscription_shard_checkpoints k
            ON k.subscription = $1 AND k.member = $2 AND k.shard_id = s.shardid
         WHERE s.logicalrelid = 'evstore.events'::regclass), '{}');
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_vector(text, integer) IS
    'A member''s checkpoint vector in distributed mode: its acknowledged position in each shard of evstore.events';

-- evstore.subscription_fetch_shards(name text, member integer, max_count integer,
--     consumer text) -> SETOF (shard_id bigint, event evstore.events)
CREATE FUNCTION evstore.subscription_fetch_shards(
    name text,
    member integer DEFAULT 0,
    max_count integer DEFAULT 100,
    consumer text DEFAULT NULL,
    OUT shard_id bigint,
    OUT event evstore.events)
RETURNS SETOF record
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
    PERFORM evstore._require_citus('evstore.subscription_fetch_shards');
    r := evstore._subscription_member($1, $2);
    IF r.consumer IS NOT NULL AND r.lease_until > pg_catalog.clock_timestamp()
       AND r.consumer IS DISTINCT FROM $4 THEN
        RETURN;
    END IF;
    IF $4 IS NOT NULL THEN
        UPDATE evstore.subscription_checkpoints c
            SET consumer = $4, lease_until = pg_catalog.clock_timestamp() + r.lease_timeout
            WHERE c.subscription = $1 AND c.member = $2;
    END IF;
    RETURN QUERY SELECT * FROM evstore.read_all_distributed(
        evstore.subscription_vector($1, $2), $3, r.categories, r.event_types,
        CASE WHEN r.group_size > 1 THEN r.member END,
        CASE WHEN r.group_size > 1 THEN r.group_size END);
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_fetch_shards(text, integer, integer, text) IS
    'Distributed mode: next events of a subscription member after its checkpoint vector, from every shard (never skips; at-least-once)';

-- evstore.subscription_ack_shards(name text, member integer, positions jsonb,
--     consumer text) -> boolean
CREATE FUNCTION evstore.subscription_ack_shards(
    name text,
    member integer,
    positions jsonb,
    consumer text DEFAULT NULL)
RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    r evstore.subscription_checkpoints;
    vec jsonb := evstore._checkpoint_vector($3);
    moved integer;
    unknown bigint;
BEGIN
    IF $4 = '' THEN
        RAISE EXCEPTION 'consumer must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM evstore._require_citus('evstore.subscription_ack_shards');
    r := evstore._subscription_member($1, $2);
    IF r.consumer IS NOT NULL AND r.lease_until > pg_catalog.clock_timestamp()
       AND r.consumer IS DISTINCT FROM $4 THEN
        RAISE EXCEPTION 'member % of subscription "%" is leased by consumer "%"', $2, $1, r.consumer
            USING ERRCODE = 'lock_not_available',
                  DETAIL = format('The lease runs until %s.', r.lease_until),
                  HINT = 'A consumer whose lease expired must stop and fetch again.';
    END IF;
    SELECT min(e.key::bigint) INTO unknown FROM jsonb_each(vec) e
     WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_dist_shard s
                        WHERE s.shardid = e.key::bigint
                          AND s.logicalrelid = 'evstore.events'::regclass);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'shard % is not a shard of evstore.events', unknown
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Acknowledge the shard ids that subscription_fetch_shards returned.';
    END IF;
    INSERT INTO evstore.subscription_shard_checkpoints AS k
        (subscription, member, shard_id, acked_position, updated_at)
    SELECT $1, $2, e.key::bigint, greatest(e.value::text::bigint, r.acked_position),
           pg_catalog.clock_timestamp()
      FROM jsonb_each(vec) e
    ON CONFLICT ON CONSTRAINT subscription_shard_checkpoints_pkey DO UPDATE
        SET acked_position = EXCLUDED.acked_position, updated_at = EXCLUDED.updated_at
        WHERE k.acked_position < EXCLUDED.acked_position;
    GET DIAGNOSTICS moved = ROW_COUNT;
    UPDATE evstore.subscription_checkpoints c
        SET updated_at = CASE WHEN moved > 0 THEN pg_catalog.clock_timestamp() ELSE c.updated_at END,
            consumer = coalesce($4, c.consumer),
            lease_until = CASE WHEN $4 IS NULL THEN c.lease_until
                               ELSE pg_catalog.clock_timestamp() + c.lease_timeout END
        WHERE c.subscription = $1 AND c.member = $2;
    RETURN moved > 0;
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_ack_shards(text, integer, jsonb, text) IS
    'Distributed mode: move a member''s per-shard checkpoints forward (shard id -> position; never backwards; false when none moved)';

REVOKE ALL ON evstore.subscription_shard_checkpoints FROM PUBLIC;
REVOKE ALL ON FUNCTION
    evstore.read_all_shard(bigint, bigint, integer, text[], text[], integer, integer, text[], boolean),
    evstore.read_all_distributed(jsonb, integer, text[], text[], integer, integer),
    evstore.checkpoint_advance(jsonb, bigint, bigint),
    evstore.subscription_vector(text, integer),
    evstore.subscription_fetch_shards(text, integer, integer, text),
    evstore.subscription_ack_shards(text, integer, jsonb, text),
    evstore._subscription_shard_cleanup()
FROM PUBLIC;

-- ==== waiting reads (0.3.0) ====
-- read_all and subscription_fetch gain a trailing "timeout interval"
-- (docs/read_all.md#waiting, docs/subscriptions.md#waiting-instead-of-polling).
-- A new parameter means a new signature: both are dropped and created
-- again, which loses their grants; say which ones to give again.  Nothing
-- in the extension depends on them (subscription_fetch calls read_all by
-- name, resolved when it runs).
DO $do$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT f.old, f.new,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                    ELSE pg_catalog.quote_ident(r.rolname) END AS grantee
        FROM (VALUES
                ('evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean)',
                 'evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean, interval)'),
                ('evstore.subscription_fetch(text, integer, integer, text)',
                 'evstore.subscription_fetch(text, integer, integer, text, interval)')) AS f(old, new),
             pg_catalog.pg_proc p,
             pg_catalog.aclexplode(p.proacl) a
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE p.oid = f.old::pg_catalog.regprocedure
          AND a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE'
    LOOP
        RAISE WARNING '% has a new signature: EXECUTE granted to % is dropped with the old one',
                pg_catalog.split_part(g.old, '(', 1) || '()', g.grantee
            USING HINT = format('After the update, run: GRANT EXECUTE ON FUNCTION %s TO %s;', g.new, g.grantee);
    END LOOP;
END
$do$;

DROP FUNCTION evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean);
DROP FUNCTION evstore.subscription_fetch(text, integer, integer, text);

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

REVOKE ALL ON FUNCTION
    evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean, interval)
FROM PUBLIC;

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
            IF EXISTS (SELECT FROM evstore.subscription_holds h
                       WHERE h.subscription = $1 AND h.member = $2) THEN
                RETURN QUERY SELECT * FROM evstore._subscription_fetch_held(r, $3);
                RETURN;
            END IF;
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
    -- failure handling: streams held back behind a failed event (docs/subscriptions.md)
    IF EXISTS (SELECT FROM evstore.subscription_holds h
               WHERE h.subscription = $1 AND h.member = $2) THEN
        RETURN QUERY SELECT * FROM evstore._subscription_fetch_held(r, $3);
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM evstore.read_all(r.acked_position, $3, r.categories, r.event_types,
        CASE WHEN r.group_size > 1 THEN r.member END,
        CASE WHEN r.group_size > 1 THEN r.group_size END);
END
$fn$;
COMMENT ON FUNCTION evstore.subscription_fetch(text, integer, integer, text, interval) IS
    'Next events of a subscription member after its acknowledged position (never skips; at-least-once); takes or renews the member''s lease for a named consumer; with a timeout, waits for events first';

REVOKE ALL ON FUNCTION
    evstore.subscription_fetch(text, integer, integer, text, interval)
FROM PUBLIC;

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
    due interval;
    deadline timestamptz;
    pos bigint;
    last bigint;
    free boolean;
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
    IF NOT EXISTS (SELECT FROM evstore.subscription_holds h
                   WHERE h.subscription = $1 AND h.member = $2) THEN
        PERFORM FROM evstore.read_all(r.acked_position, 1, r.categories, r.event_types,
            CASE WHEN r.group_size > 1 THEN r.member END,
            CASE WHEN r.group_size > 1 THEN r.group_size END,
            timeout => w);
        RETURN;
    END IF;
    -- streams held back (failure handling): a retry that is due is
    -- something to return; otherwise wait until the next retry is due, at
    -- most, for an event that is not held back (held ones are stepped over)
    IF EXISTS (SELECT FROM evstore.subscription_holds h
               WHERE h.subscription = $1 AND h.member = $2
                 AND h.state = 'retry' AND h.retry_at <= pg_catalog.clock_timestamp()) THEN
        RETURN;
    END IF;
    SELECT least(w, pg_catalog.min(h.retry_at) - pg_catalog.clock_timestamp()) INTO due
        FROM evstore.subscription_holds h
        WHERE h.subscription = $1 AND h.member = $2 AND h.state = 'retry';
    deadline := pg_catalog.clock_timestamp() + coalesce(due, w);
    pos := r.acked_position;
    LOOP
        w := deadline - pg_catalog.clock_timestamp();
        EXIT WHEN w <= interval '0';
        SELECT pg_catalog.max(e.global_position),
               pg_catalog.bool_or(NOT EXISTS (
                   SELECT FROM evstore.subscription_holds h
                   WHERE h.subscription = $1 AND h.member = $2 AND h.stream_id = e.stream_id
                     AND ((h.state <> 'skipped' AND e.global_position >= h.global_position)
                          OR e.global_position <= h.skipped_through)))
            INTO last, free
            FROM evstore.read_all(pos, 100, r.categories, r.event_types,
                CASE WHEN r.group_size > 1 THEN r.member END,
                CASE WHEN r.group_size > 1 THEN r.group_size END,
                timeout => w) e;
        EXIT WHEN last IS NULL OR free;
        pos := last;
    END LOOP;
END
$fn$;

REVOKE ALL ON FUNCTION
    evstore._subscription_wait(text, integer, text, interval)
FROM PUBLIC;
