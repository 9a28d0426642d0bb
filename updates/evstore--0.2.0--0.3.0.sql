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
