-- Blue/green rebuilds: evstore.start_rebuild / cancel_rebuild, the
-- projection_rebuilds view, and the read models they refuse.
CREATE DATABASE proj_bluegreen;
\c proj_bluegreen
CREATE EXTENSION evstore;
\set VERBOSITY terse

CREATE TABLE rm (order_id text PRIMARY KEY, status text DEFAULT 'open', total numeric);
COMMENT ON TABLE rm IS 'orders';
COMMENT ON COLUMN rm.total IS 'sum of the lines';
CREATE INDEX rm_status ON rm (status);
ALTER TABLE rm ADD CONSTRAINT rm_total_check CHECK (total >= 0);
CREATE ROLE bg_reader;
GRANT SELECT ON rm TO bg_reader;
GRANT UPDATE (status) ON rm TO bg_reader;
ALTER TABLE rm ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_open ON rm FOR SELECT TO bg_reader USING (status = 'open');
SELECT evstore.create_sync_projection('rm', 'rm', 'order_id', '$.order_id',
    delete_types => ARRAY['OrderCancelled']);

CREATE TABLE hcount (id serial, stream_id text PRIMARY KEY, n integer NOT NULL);
CREATE FUNCTION hcount_apply(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_schema() LIKE 'evstore_rebuild_%' AND e.event_type = 'Slow' THEN
        PERFORM pg_sleep(0.2);
    END IF;
    INSERT INTO hcount (stream_id, n) VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = hcount.n + 1;
END $$;
SELECT evstore.create_projection('hcount', 'hcount_apply(evstore.events)');

SELECT count(*) FROM (
    SELECT evstore.append_event('order-' || (g % 7), CASE WHEN g % 11 = 0 THEN 'OrderCancelled' ELSE 'OrderPlaced' END,
                                jsonb_build_object('order_id', 'o' || (g % 7), 'total', g))
      FROM generate_series(1, 200) g) s;

-- waits (polling) until the rebuild is gone or failed
CREATE FUNCTION wait_rebuild(p text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE ph text;
BEGIN
    FOR i IN 1 .. 6000 LOOP
        SELECT phase INTO ph FROM evstore.projection_rebuilds WHERE name = p AND mode = 'blue-green';
        IF NOT FOUND THEN RETURN 'done'; END IF;
        IF ph = 'failed' THEN RETURN ph; END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN 'timeout: ' || ph;
END $$;
-- waits until a worker holds the rebuild
CREATE FUNCTION wait_worker(p text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 6000 LOOP
        IF EXISTS (SELECT FROM evstore.projection_rebuilds WHERE name = p AND pid IS NOT NULL) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END $$;

CREATE TABLE before_rm AS SELECT * FROM rm;
SELECT 'rm'::regclass::oid AS rm_oid \gset

-- a sync projection: its target is the read model
SELECT evstore.start_rebuild('rm', batch_size => 30) > 0 AS started;
SELECT wait_rebuild('rm');
SELECT 'rm'::regclass::oid <> :rm_oid AS new_table,
       (SELECT target = 'rm'::regclass FROM evstore.projections WHERE name = 'rm') AS projection_targets_it;
SELECT count(*) AS differences FROM (
    (SELECT * FROM rm EXCEPT SELECT * FROM before_rm) UNION ALL (SELECT * FROM before_rm EXCEPT SELECT * FROM rm)) d;
-- what the copy carries over
SELECT obj_description('rm'::regclass, 'pg_class') AS comment,
       col_description('rm'::regclass, 3) AS column_comment,
       (SELECT string_agg(indexrelid::regclass::text, ', ' ORDER BY 1) FROM pg_index WHERE indrelid = 'rm'::regclass) AS indexes,
       (SELECT string_agg(conname, ', ' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'rm'::regclass AND contype <> 'n') AS constraints,
       has_table_privilege('bg_reader', 'rm', 'SELECT') AS reader_select,
       has_column_privilege('bg_reader', 'rm', 'status', 'UPDATE') AS reader_update_status,
       relrowsecurity AS rls,
       (SELECT string_agg(policyname || ': ' || qual, ', ') FROM pg_policies WHERE tablename = 'rm') AS policies,
       pg_get_userbyid(relowner) = current_user AS same_owner
  FROM pg_class WHERE oid = 'rm'::regclass;
-- appends keep reaching it
SELECT evstore.append_event('order-x', 'OrderPlaced', '{"order_id": "ox", "total": 1}') IS NOT NULL AS appended;
SELECT * FROM rm WHERE order_id = 'ox';

-- a handler projection names its read models; its serial sequence follows
CREATE TABLE before_h AS SELECT stream_id, n FROM hcount;
SELECT evstore.start_rebuild('hcount', ARRAY['hcount'::regclass], 50) > 0 AS started;
SELECT wait_rebuild('hcount');
SELECT count(*) AS differences FROM (
    (SELECT stream_id, n FROM hcount EXCEPT SELECT * FROM before_h) UNION ALL
    (SELECT * FROM before_h EXCEPT SELECT stream_id, n FROM hcount)) d;
SELECT pg_get_serial_sequence('hcount', 'id') AS owned_sequence;
SELECT count(*) AS shadow_schemas FROM pg_namespace WHERE nspname LIKE 'evstore_rebuild_%';

-- cancel: while the worker runs, and a second start is refused
SELECT evstore.append_event('order-slow', 'Slow', '{"order_id": "slow"}') IS NOT NULL AS appended;
SELECT evstore.append_event('order-slow', 'Slow', '{"order_id": "slow"}') IS NOT NULL AS appended;
TRUNCATE before_h;
INSERT INTO before_h SELECT stream_id, n FROM hcount;
SELECT 'hcount'::regclass::oid AS h_oid \gset
SELECT evstore.start_rebuild('hcount', ARRAY['hcount'::regclass], 1) > 0 AS started;
SELECT wait_worker('hcount');
SELECT name, mode, phase IN ('starting', 'filling') AS running, read_models, error
  FROM evstore.projection_rebuilds;
SELECT evstore.start_rebuild('hcount', ARRAY['hcount'::regclass]);
SELECT evstore.cancel_rebuild('hcount');
SELECT 'hcount'::regclass::oid = :h_oid AS same_table,
       (SELECT count(*) FROM (SELECT stream_id, n FROM hcount EXCEPT SELECT * FROM before_h) d) AS changed,
       (SELECT count(*) FROM evstore.projection_rebuilds) AS rebuilds,
       (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'evstore_rebuild_%') AS shadow_schemas;
SELECT evstore.cancel_rebuild('hcount');
-- start and cancel in one transaction: nothing is left
BEGIN;
SELECT evstore.start_rebuild('rm') > 0 AS started;
SELECT evstore.cancel_rebuild('rm');
COMMIT;
SELECT count(*) AS rebuilds FROM evstore.projection_rebuild_jobs;

-- bad input
SELECT evstore.start_rebuild(NULL);
SELECT evstore.start_rebuild('nope');
SELECT evstore.start_rebuild('rm', batch_size => 0);
SELECT evstore.start_rebuild('hcount');
SELECT evstore.start_rebuild('rm', ARRAY['hcount'::regclass]);
SELECT evstore.start_rebuild('hcount', ARRAY[]::regclass[]);
SELECT evstore.start_rebuild('hcount', ARRAY['hcount'::regclass, NULL]);
SELECT evstore.cancel_rebuild(NULL);

-- read models a swap cannot replace
CREATE FUNCTION try_models(VARIADIC m regclass[]) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evstore.start_rebuild('hcount', m);
    RETURN 'started';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
CREATE VIEW hview AS SELECT * FROM hcount;
SELECT try_models('hcount');
DROP VIEW hview;
CREATE TABLE child (stream_id text REFERENCES hcount);
SELECT try_models('hcount');
DROP TABLE child;
CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER hcount_noop BEFORE INSERT ON hcount FOR EACH ROW EXECUTE FUNCTION noop();
SELECT try_models('hcount');
DROP TRIGGER hcount_noop ON hcount;
CREATE TABLE parted (k int) PARTITION BY RANGE (k);
SELECT try_models('parted');
CREATE TEMP TABLE tmp (k int);
SELECT try_models('tmp');
CREATE VIEW v AS SELECT 1 AS k;
SELECT try_models('v');
SELECT try_models('evstore.events');
CREATE SCHEMA other;
CREATE TABLE other.hcount (k int);
SELECT try_models('hcount', 'other.hcount');
SELECT try_models('other.hcount');
SELECT count(*) AS rebuilds FROM evstore.projection_rebuild_jobs;

-- only the projection's owner
CREATE ROLE bg_stranger;
GRANT USAGE ON SCHEMA evstore TO bg_stranger;
GRANT EXECUTE ON FUNCTION evstore.start_rebuild(text, regclass[], integer),
    evstore.cancel_rebuild(text) TO bg_stranger;
SET ROLE bg_stranger;
SELECT evstore.start_rebuild('rm');
RESET ROLE;

\c contrib_regression
DROP DATABASE proj_bluegreen;
DROP ROLE bg_reader;
DROP ROLE bg_stranger;
