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
            USING HINT = format('After the update, run: GRANT EXECUTE ON FUNCTION evstore.read_all(bigint, integer, text[], text[], integer, integer, text[], boolean) TO %s;', g.grantee);
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
