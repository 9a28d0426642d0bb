-- Attribute-sync upserts: the direct path (table AM, no SPI) and the SPI
-- fallback must behave like INSERT ... ON CONFLICT (key) DO UPDATE: defaults
-- on insert, constraints, other unique indexes, foreign keys, AFTER ROW
-- triggers, several events of one batch on one key, privileges.
CREATE DATABASE proj_upsert;
\c proj_upsert
CREATE EXTENSION evstore;
\set VERBOSITY terse

CREATE TABLE customers (id text PRIMARY KEY);
INSERT INTO customers VALUES ('c1');
-- two identical read models: fast takes the direct path; spi has a BEFORE
-- ROW trigger that changes nothing, which sends it through SPI
CREATE TABLE fast (
    order_id   text PRIMARY KEY,
    seq        serial,
    created_at timestamptz NOT NULL DEFAULT now(),
    status     text NOT NULL DEFAULT 'new',
    total      numeric CHECK (total >= 0),
    customer   text REFERENCES customers (id),
    code       text UNIQUE,
    note       text);
CREATE TABLE spi (LIKE fast INCLUDING ALL);
ALTER TABLE spi ALTER seq SET DEFAULT nextval('fast_seq_seq');
ALTER TABLE spi ADD FOREIGN KEY (customer) REFERENCES customers (id);
-- a table referencing the read model: deleting a referenced row fails
CREATE TABLE shipments (order_id text REFERENCES fast (order_id));
-- every row change of both read models, as AFTER ROW triggers see them
CREATE TABLE changes (n serial, tbl text, op text, order_id text, status text, total numeric);
CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.changes (tbl, op, order_id, status, total) VALUES (TG_TABLE_NAME, TG_OP, NEW.order_id, NEW.status, NEW.total);
    RETURN NULL;
END $$;
CREATE FUNCTION keep_row() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER log_change AFTER INSERT OR UPDATE ON fast FOR EACH ROW EXECUTE FUNCTION log_change();
CREATE TRIGGER log_change AFTER INSERT OR UPDATE ON spi FOR EACH ROW EXECUTE FUNCTION log_change();
CREATE TRIGGER keep_row BEFORE INSERT OR UPDATE ON spi FOR EACH ROW EXECUTE FUNCTION keep_row();

SELECT evstore.create_sync_projection('fast', 'fast', 'order_id', '$.order_id',
    delete_types => ARRAY['OrderCancelled'], categories => ARRAY['order']);
SELECT evstore.create_sync_projection('spi', 'spi', 'order_id', '$.order_id',
    delete_types => ARRAY['OrderCancelled'], categories => ARRAY['order']);

-- which way each projection upserts shows at its first use
SET client_min_messages = debug1;
BEGIN;
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPlaced',
    '{"order_id": "o1", "total": 10, "customer": "c1", "code": "A"}');
RESET client_min_messages;
-- a new row gets the defaults of the columns the event does not carry
SELECT order_id, seq > 0 AS has_seq, created_at = now() AS created_now, status, total, customer, code, note
  FROM fast UNION ALL
SELECT order_id, seq > 0, created_at = now(), status, total, customer, code, note FROM spi;
COMMIT;

-- an update keeps what the event does not carry; JSON null clears
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPaid',
    '{"order_id": "o1", "status": "paid", "note": "thanks"}');
SELECT stream_version FROM evstore.append_event('order-1', 'NoteCleared',
    '{"order_id": "o1", "note": null}');
-- two events of one batch on one new key: both apply, in order
SELECT stream_version FROM evstore.append_events('order-2',
    '[{"type": "OrderPlaced", "data": {"order_id": "o2", "total": 5}},
      {"type": "OrderPaid", "data": {"order_id": "o2", "status": "paid", "total": 6}},
      {"type": "OrderShipped", "data": {"order_id": "o2", "status": "shipped"}}]');
-- an event carrying only the key: insert if missing, else nothing (no trigger)
SELECT stream_version FROM evstore.append_event('order-3', 'Touched', '{"order_id": "o3"}');
SELECT stream_version FROM evstore.append_event('order-3', 'Touched', '{"order_id": "o3", "unknown": 1}');

SELECT order_id, status, total, customer, code, note FROM fast ORDER BY order_id;
-- both paths wrote the same rows, with the same trigger calls
(SELECT order_id, status, total, customer, code, note FROM fast
 EXCEPT SELECT order_id, status, total, customer, code, note FROM spi)
UNION ALL
(SELECT order_id, status, total, customer, code, note FROM spi
 EXCEPT SELECT order_id, status, total, customer, code, note FROM fast);
SELECT op, order_id, status, total, count(*) FILTER (WHERE tbl = 'fast') AS fast,
       count(*) FILTER (WHERE tbl = 'spi') AS spi
  FROM changes GROUP BY op, order_id, status, total ORDER BY order_id, min(n);
-- the serial advanced once per upsert, as nextval() in INSERT ... ON CONFLICT does
SELECT (SELECT max(seq) FROM fast) < (SELECT max(seq) FROM spi) AS spi_later,
       (SELECT count(DISTINCT seq) FROM fast) = (SELECT count(*) FROM fast) AS distinct_seqs;

-- constraint violations fail the append, on insert and on update, both ways
\set SHOW_CONTEXT never
SELECT evstore.append_event('order-4', 'OrderPlaced', '{"order_id": "o4", "total": -1}');
SELECT evstore.append_event('order-1', 'OrderPaid', '{"order_id": "o1", "total": -1}');
SELECT evstore.append_event('order-1', 'OrderPaid', '{"order_id": "o1", "status": null}');
SELECT evstore.append_event('order-4', 'OrderPlaced', '{"order_id": "o4", "status": null}');
-- another unique index
SELECT evstore.append_event('order-4', 'OrderPlaced', '{"order_id": "o4", "code": "A"}');
SELECT evstore.append_event('order-2', 'Coded', '{"order_id": "o2", "code": "A"}');
-- foreign keys from the read model
SELECT evstore.append_event('order-4', 'OrderPlaced', '{"order_id": "o4", "customer": "nobody"}');
SELECT evstore.append_event('order-2', 'Assigned', '{"order_id": "o2", "customer": "nobody"}');
SELECT stream_version FROM evstore.append_event('order-2', 'Assigned', '{"order_id": "o2", "customer": "c1"}');
-- and to it
INSERT INTO shipments VALUES ('o2');
SELECT evstore.append_event('order-2', 'OrderCancelled', '{"order_id": "o2"}');
\set SHOW_CONTEXT errors
DO $$
DECLARE
    ev text;
BEGIN
    FOREACH ev IN ARRAY ARRAY['{"order_id": "o4", "total": -1}', '{"order_id": "o1", "status": null}',
                              '{"order_id": "o4", "code": "A"}', '{"order_id": "o4", "customer": "x"}']
    LOOP
        BEGIN
            PERFORM evstore.append_event('order-9', 'Bad', ev::jsonb);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE '% -> sqlstate %', ev, SQLSTATE;
        END;
    END LOOP;
END $$;
-- errors name the projection and the event
\set VERBOSITY default
\set SHOW_CONTEXT always
SELECT evstore.append_event('order-4', 'OrderPlaced', '{"order_id": "o4", "code": "A"}');
\set SHOW_CONTEXT errors
\set VERBOSITY terse
-- nothing of the failed appends stayed
SELECT order_id, status, total, customer, code FROM fast ORDER BY order_id;
SELECT count(*) FROM evstore.events WHERE stream_id IN ('order-4', 'order-9');

-- a domain that rejects NULL: a new row must carry the column, as in SQL
CREATE DOMAIN positive AS integer NOT NULL CHECK (VALUE > 0);
CREATE TABLE stock (sku text PRIMARY KEY, qty positive, label text);
SELECT evstore.create_sync_projection('stock', 'stock', 'sku', '$.sku', categories => ARRAY['stock']);
SELECT evstore.append_event('stock-1', 'Labelled', '{"sku": "s1", "label": "x"}');
SELECT evstore.append_event('stock-1', 'Counted', '{"sku": "s1", "qty": 0}');
SELECT stream_version FROM evstore.append_event('stock-1', 'Counted', '{"sku": "s1", "qty": 3}');
SELECT * FROM stock;

-- targets the direct path leaves to SPI still work: row-level security,
-- rules, statement triggers; a change of the table switches the way
CREATE TABLE guarded (id text PRIMARY KEY, v integer);
ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
CREATE TABLE ruled (id text PRIMARY KEY, v integer);
CREATE RULE ruled_note AS ON DELETE TO ruled DO ALSO NOTIFY ruled;
CREATE TABLE stmt (id text PRIMARY KEY, v integer);
CREATE FUNCTION stmt_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'statement trigger % %', TG_OP, TG_WHEN; RETURN NULL; END $$;
CREATE TRIGGER stmt_note AFTER INSERT OR UPDATE ON stmt FOR EACH STATEMENT EXECUTE FUNCTION stmt_note();
SELECT evstore.create_sync_projection(t, t::regclass, 'id', 'stream_id', categories => ARRAY['misc'])
  FROM unnest(ARRAY['guarded', 'ruled', 'stmt']) t;
SET client_min_messages = debug1;
SELECT stream_version FROM evstore.append_event('misc-1', 'Set', '{"v": 1}');
RESET client_min_messages;
SELECT stream_version FROM evstore.append_event('misc-1', 'Set', '{"v": 2}');
SELECT 'guarded' AS t, * FROM guarded UNION ALL SELECT 'ruled', * FROM ruled
UNION ALL SELECT 'stmt', * FROM stmt;
DROP TRIGGER stmt_note ON stmt;
ALTER TABLE guarded DISABLE ROW LEVEL SECURITY;
SET client_min_messages = debug1;
SELECT stream_version FROM evstore.append_event('misc-1', 'Set', '{"v": 3}');
RESET client_min_messages;
SELECT 'guarded' AS t, * FROM guarded UNION ALL SELECT 'ruled', * FROM ruled
UNION ALL SELECT 'stmt', * FROM stmt;
SELECT evstore.drop_projection(t) FROM unnest(ARRAY['guarded', 'ruled', 'stmt']) t;

-- REPEATABLE READ: rows written by the transaction itself are fine
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT stream_version FROM evstore.append_event('order-5', 'OrderPlaced', '{"order_id": "o5", "total": 1}');
SELECT stream_version FROM evstore.append_event('order-5', 'OrderPaid', '{"order_id": "o5", "status": "paid"}');
SELECT order_id, status, total FROM fast WHERE order_id = 'o5';
COMMIT;

-- a handler running after the sync projection (name order) sees the read
-- model as each event of a batch left it
CREATE TABLE seen (version bigint, status text, total numeric);
CREATE FUNCTION look(e evstore.events) RETURNS void LANGUAGE sql AS
  'INSERT INTO public.seen SELECT e.stream_version, status, total FROM public.fast WHERE order_id = e.data->>''order_id''';
SELECT evstore.create_projection('fast_look', 'look(evstore.events)', categories => ARRAY['order']);
SELECT stream_version FROM evstore.append_events('order-6',
    '[{"type": "OrderPlaced", "data": {"order_id": "o6", "total": 1}},
      {"type": "OrderPaid", "data": {"order_id": "o6", "status": "paid", "total": 2}},
      {"type": "OrderShipped", "data": {"order_id": "o6", "status": "shipped"}}]');
SELECT * FROM seen ORDER BY version;
SELECT evstore.drop_projection('fast_look');

-- later events of an append update the row version the append wrote
-- directly, unless something else in the transaction changed it meanwhile:
-- here a handler (running after the sync projection, by name order) edits
-- the note on 'Noted' and deletes the row on 'Purged'; the next event must
-- update the row's latest version, or insert the row again
CREATE FUNCTION meddle(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type = 'Noted' THEN
        UPDATE public.fast SET note = 'handler ' || e.stream_version WHERE order_id = e.data->>'order_id';
    ELSIF e.event_type = 'Purged' THEN
        DELETE FROM public.fast WHERE order_id = e.data->>'order_id';
    END IF;
END $$;
SELECT evstore.create_projection('fast_meddle', 'meddle(evstore.events)', categories => ARRAY['order']);
SELECT stream_version FROM evstore.append_events('order-8',
    '[{"type": "OrderPlaced", "data": {"order_id": "o8", "total": 1}},
      {"type": "Noted", "data": {"order_id": "o8", "total": 2}},
      {"type": "OrderPaid", "data": {"order_id": "o8", "status": "paid"}},
      {"type": "OrderPaid", "data": {"order_id": "o8", "total": 3}},
      {"type": "Purged", "data": {"order_id": "o8", "total": 4}},
      {"type": "OrderShipped", "data": {"order_id": "o8", "status": "shipped"}},
      {"type": "OrderPaid", "data": {"order_id": "o8", "total": 5}}]');
SELECT order_id, status, total, note FROM fast WHERE order_id = 'o8'
UNION ALL SELECT order_id || ' (spi)', status, total, note FROM spi WHERE order_id = 'o8';
-- the same within one transaction over several appends, and a key-only
-- event on a row the append wrote
BEGIN;
SELECT stream_version FROM evstore.append_events('order-9',
    '[{"type": "OrderPlaced", "data": {"order_id": "o9", "total": 1}},
      {"type": "Touched", "data": {"order_id": "o9"}},
      {"type": "Purged", "data": {"order_id": "o9"}},
      {"type": "Touched", "data": {"order_id": "o9"}},
      {"type": "OrderPaid", "data": {"order_id": "o9", "status": "paid"}}]');
SELECT order_id, status, total, note FROM fast WHERE order_id = 'o9';
SELECT stream_version FROM evstore.append_event('order-9', 'Noted', '{"order_id": "o9", "total": 2}');
COMMIT;
SELECT order_id, status, total, note FROM fast WHERE order_id = 'o9';
SELECT evstore.drop_projection('fast_meddle');

-- an append failing in the middle of a batch, caught by a savepoint, and
-- more appends and DDL on the target in the same transaction
BEGIN;
SELECT stream_version FROM evstore.append_event('order-7', 'OrderPlaced', '{"order_id": "o7", "total": 1}');
SAVEPOINT s;
SELECT evstore.append_events('order-7',
    '[{"type": "OrderPaid", "data": {"order_id": "o7", "total": 2}},
      {"type": "OrderPaid", "data": {"order_id": "o7", "total": -2}}]');
ROLLBACK TO SAVEPOINT s;
DO $$
BEGIN
    PERFORM evstore.append_events('order-7',
        '[{"type": "OrderPaid", "data": {"order_id": "o7", "total": 3}},
          {"type": "OrderPaid", "data": {"order_id": "o7", "code": "A"}}]');
EXCEPTION WHEN unique_violation THEN
    RAISE NOTICE 'caught %', SQLSTATE;
END $$;
SELECT stream_version FROM evstore.append_event('order-7', 'OrderPaid', '{"order_id": "o7", "total": 4}');
ALTER TABLE fast ADD COLUMN extra text;
SELECT stream_version FROM evstore.append_event('order-7', 'OrderPaid', '{"order_id": "o7", "extra": "x"}');
SELECT order_id, total, extra FROM fast WHERE order_id = 'o7';
COMMIT;
SELECT order_id, total, extra FROM fast WHERE order_id = 'o7';
ALTER TABLE fast DROP COLUMN extra;

-- AFTER UPDATE OF triggers fire only for the columns an event carries
CREATE FUNCTION log_total() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.changes (tbl, op, order_id, total) VALUES (TG_TABLE_NAME, 'UPDATE OF total', NEW.order_id, NEW.total);
    RETURN NULL;
END $$;
CREATE TRIGGER log_total AFTER UPDATE OF total ON fast FOR EACH ROW EXECUTE FUNCTION log_total();
CREATE TRIGGER log_total AFTER UPDATE OF total ON spi FOR EACH ROW EXECUTE FUNCTION log_total();
SELECT stream_version FROM evstore.append_event('order-1', 'OrderPaid', '{"order_id": "o1", "status": "paid"}');
SELECT stream_version FROM evstore.append_event('order-1', 'Repriced', '{"order_id": "o1", "total": 11}');
SELECT tbl, op, order_id, total FROM changes WHERE op = 'UPDATE OF total' ORDER BY n;
DROP TRIGGER log_total ON fast;
DROP TRIGGER log_total ON spi;

-- a rebuild replays through the same path (it truncates: no references)
DROP TABLE shipments;
SELECT evstore.rebuild_projection('fast', 0);
SELECT order_id, status, total, customer, code, note FROM fast ORDER BY order_id;

-- privileges: the owner's rights through a group role; revoking the
-- membership (no invalidation of the table) takes effect at once
CREATE ROLE regress_upsert_owner;
CREATE ROLE regress_upsert_writers;
GRANT USAGE ON SCHEMA evstore TO regress_upsert_owner;
GRANT SELECT ON evstore.events TO regress_upsert_owner;
GRANT EXECUTE ON FUNCTION
    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean)
TO regress_upsert_owner;
CREATE TABLE member_model (id text PRIMARY KEY, v integer);
GRANT SELECT, INSERT, UPDATE ON member_model TO regress_upsert_writers;
GRANT regress_upsert_writers TO regress_upsert_owner;
SET ROLE regress_upsert_owner;
SELECT evstore.create_sync_projection('member', 'member_model', 'id', 'stream_id',
    categories => ARRAY['member']);
RESET ROLE;
SELECT stream_version FROM evstore.append_event('member-1', 'Set', '{"v": 1}');
REVOKE regress_upsert_writers FROM regress_upsert_owner;
SELECT evstore.append_event('member-1', 'Set', '{"v": 2}');
SELECT evstore.append_event('member-2', 'Set', '{"v": 2}');
GRANT regress_upsert_writers TO regress_upsert_owner;
SELECT stream_version FROM evstore.append_event('member-1', 'Set', '{"v": 3}');
-- a table-level REVOKE after creation, too
REVOKE UPDATE ON member_model FROM regress_upsert_writers;
SELECT evstore.append_event('member-1', 'Set', '{"v": 4}');
GRANT UPDATE ON member_model TO regress_upsert_writers;
SELECT stream_version FROM evstore.append_event('member-1', 'Set', '{"v": 5}');
SELECT * FROM member_model;

\c contrib_regression
DROP DATABASE proj_upsert;
DROP ROLE regress_upsert_owner, regress_upsert_writers;
