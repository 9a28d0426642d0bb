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



