-- rebuild_projection: the read model after a rebuild equals the one
-- maintained live, over a few thousand random events; reruns are safe.
CREATE DATABASE proj_rebuild;
\c proj_rebuild
CREATE EXTENSION evstore;
\set VERBOSITY terse

CREATE TABLE rm (order_id text PRIMARY KEY, status text DEFAULT 'open', total numeric,
                 items integer, note text, lines jsonb);
SELECT evstore.create_sync_projection('rm', 'rm', 'order_id', '$.order_id',
    delete_types => ARRAY['OrderCancelled'], categories => ARRAY['shop']);

CREATE TABLE hcount (stream_id text PRIMARY KEY, n integer NOT NULL, types text NOT NULL);
CREATE FUNCTION hcount_apply(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hcount VALUES (e.stream_id, 1, e.event_type)
    ON CONFLICT (stream_id) DO UPDATE SET n = hcount.n + 1, types = hcount.types || ',' || e.event_type;
END $$;
CREATE FUNCTION hcount_reset() RETURNS void LANGUAGE sql AS 'TRUNCATE public.hcount';
SELECT evstore.create_projection('hcount', 'hcount_apply(evstore.events)',
    event_types => ARRAY['OrderPlaced', 'OrderShipped', 'NoteAdded'],
    reset_function => 'hcount_reset()');

-- 3000 random events in 60 order streams (and noise in another category)
SELECT setseed(0.42);
DO $$
DECLARE
    types text[] := ARRAY['OrderPlaced', 'ItemsChanged', 'OrderShipped', 'OrderCancelled', 'NoteAdded'];
    s int;
    t text;
    d jsonb;
BEGIN
    FOR i IN 1..3000 LOOP
        s := 1 + floor(random() * 60)::int;
        t := types[1 + floor(random() * 5)::int];
        d := jsonb_build_object('order_id', 'o' || s);
        IF random() < 0.5 THEN d := d || jsonb_build_object('total', round((random() * 1000)::numeric, 2)); END IF;
        IF random() < 0.5 THEN d := d || jsonb_build_object('items', floor(random() * 10)::int); END IF;
        IF random() < 0.3 THEN d := d || jsonb_build_object('note', 'n' || i); END IF;
        IF random() < 0.2 THEN d := d || jsonb_build_object('lines', jsonb_build_array(i, s)); END IF;
        IF t = 'OrderShipped' THEN d := d || '{"status": "shipped"}'; END IF;
        PERFORM evstore.append_event(CASE WHEN random() < 0.1 THEN 'misc-' ELSE 'shop-' END || s, t, d);
    END LOOP;
END $$;
SELECT count(*) AS events FROM evstore.events;
SELECT count(*) > 10 AS many_rows FROM rm;

CREATE TABLE live_rm AS SELECT * FROM rm;
CREATE TABLE live_hcount AS SELECT * FROM hcount;
SELECT name, events_processed FROM evstore.projections ORDER BY name;

-- damage the read models, then rebuild them
UPDATE rm SET note = 'tampered' WHERE order_id IN ('o1', 'o2');
DELETE FROM rm WHERE order_id = 'o3';
INSERT INTO rm (order_id) VALUES ('ghost');
DELETE FROM hcount WHERE stream_id LIKE 'shop-1%';
SELECT evstore.rebuild_projection('rm', 1000);
SELECT (SELECT count(*) FROM (SELECT * FROM rm EXCEPT SELECT * FROM live_rm) a) AS missing,
       (SELECT count(*) FROM (SELECT * FROM live_rm EXCEPT SELECT * FROM rm) b) AS extra,
       (SELECT count(*) FROM rm) = (SELECT count(*) FROM live_rm) AS same_count;
SELECT evstore.rebuild_projection('hcount', 0);
SELECT (SELECT count(*) FROM (SELECT * FROM hcount EXCEPT SELECT * FROM live_hcount) a) AS missing,
       (SELECT count(*) FROM (SELECT * FROM live_hcount EXCEPT SELECT * FROM hcount) b) AS extra;

-- again: same result
SELECT evstore.rebuild_projection('rm', 0) = (SELECT events_processed FROM evstore.projections WHERE name = 'rm') AS counted;
SELECT count(*) AS differences FROM (SELECT * FROM rm EXCEPT SELECT * FROM live_rm) a;

-- a rebuild that rolls back leaves the read model as it was
BEGIN;
DELETE FROM live_rm;
SELECT evstore.rebuild_projection('rm', 0) > 0 AS replayed;
-- progress is visible while the transaction runs
SELECT name, events_replayed > 0 AS replayed, at_position > 0 AS moved,
       at_position <= target_position AS within
  FROM evstore.projection_rebuilds;
ROLLBACK;
SELECT count(*) AS rebuilds_running FROM evstore.projection_rebuilds;
SELECT count(*) AS differences FROM (SELECT * FROM live_rm EXCEPT SELECT * FROM rm) a;

-- appends keep feeding the rebuilt model
SELECT stream_version >= 0 AS ok FROM evstore.append_event('shop-1000', 'OrderPlaced', '{"order_id": "o1000", "items": 1}');
SELECT * FROM rm WHERE order_id = 'o1000';

-- errors
SELECT evstore.rebuild_projection('nope');
SELECT evstore.rebuild_projection('rm', -1);

SELECT evstore.drop_projection('rm'), evstore.drop_projection('hcount');
\c contrib_regression
DROP DATABASE proj_rebuild;
