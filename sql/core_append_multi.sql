-- evstore.append_multi: several streams in one call, all or nothing; bad
-- input fails with a clear message and SQLSTATE before anything is locked
-- or written; evstore.lock_streams.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text, OUT ctx text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            ctx = PG_EXCEPTION_CONTEXT;
    ctx := split_part(ctx, E'\n', 1);
    IF ctx NOT LIKE '%appends%' THEN ctx := NULL; END IF;
END $$;

-- two new streams, results in input order, positions in input order
SELECT * FROM evstore.append_multi($$[
  {"stream_id": "order-1", "expected_version": -1,
   "events": [{"type": "OrderPlaced", "data": {"total": 30}},
              {"type": "ItemAdded", "data": {"sku": "a"}, "metadata": {"correlation_id": "c1"}}]},
  {"stream_id": "inventory-7", "expected_version": -1,
   "events": [{"type": "StockReserved", "data": {"order": "order-1"},
               "id": "00000000-0000-7000-8000-000000000001"}]}
]$$);
SELECT global_position, stream_id, stream_version, event_type, metadata
  FROM evstore.events ORDER BY global_position;

-- exact versions; expected_version absent or null means any
SELECT * FROM evstore.append_multi($$[
  {"stream_id": "inventory-7", "expected_version": 0, "events": [{"type": "StockReserved", "data": {}}]},
  {"stream_id": "order-1", "events": [{"type": "OrderPaid", "data": {}}]},
  {"stream_id": "payment-3", "expected_version": null, "events": [{"type": "PaymentTaken", "data": {}}]}
]$$);

-- a conflict on any stream: ES001 names it, and nothing of the call is kept
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[
  {"stream_id": "order-1", "expected_version": 2, "events": [{"type": "Shipped", "data": {}}]},
  {"stream_id": "inventory-7", "expected_version": 0, "events": [{"type": "StockReleased", "data": {}}]}
]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[
  {"stream_id": "order-1", "expected_version": -4, "events": [{"type": "Shipped", "data": {}}]},
  {"stream_id": "refund-9", "expected_version": -4, "events": [{"type": "Refunded", "data": {}}]}
]')$$);
SELECT stream_id, version FROM evstore.streams ORDER BY stream_id;
SELECT count(*) AS events FROM evstore.events;

-- a retry of a call whose events carry ids returns the original results
SELECT * FROM evstore.append_multi($$[
  {"stream_id": "order-2", "expected_version": -1,
   "events": [{"type": "OrderPlaced", "data": {}, "id": "00000000-0000-7000-8000-0000000000a1"}]},
  {"stream_id": "inventory-8", "expected_version": -1,
   "events": [{"type": "StockReserved", "data": {}, "id": "00000000-0000-7000-8000-0000000000a2"}]}
]$$);
SELECT * FROM evstore.append_multi($$[
  {"stream_id": "order-2", "expected_version": -1,
   "events": [{"type": "OrderPlaced", "data": {}, "id": "00000000-0000-7000-8000-0000000000a1"}]},
  {"stream_id": "inventory-8", "expected_version": -1,
   "events": [{"type": "StockReserved", "data": {}, "id": "00000000-0000-7000-8000-0000000000a2"}]}
]$$);
SELECT count(*) AS events FROM evstore.events;

-- tombstoned stream: ES002, nothing kept
SELECT evstore.tombstone_stream('payment-3');
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[
  {"stream_id": "order-1", "events": [{"type": "Shipped", "data": {}}]},
  {"stream_id": "payment-3", "events": [{"type": "PaymentTaken", "data": {}}]}]')$$);
SELECT stream_version, event_type FROM evstore.read_stream('order-1', NULL, 1, true);

-- bad input shapes
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('{}')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('"order-1"')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[1]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[[]]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": null, "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": 7, "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "", "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err(format($$SELECT * FROM evstore.append_multi('[{"stream_id": "%s", "events": [{"type": "T", "data": {}}]}]')$$, repeat('s', 1025)));
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1"}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": null}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": {"type": "T", "data": {}}}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": []}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "expected": 0, "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "expected_version": "0", "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "expected_version": 1.5, "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "expected_version": -3, "events": [{"type": "T", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": [{"type": "T", "data": {}}]}, {"stream_id": "b-1", "events": [{"type": "T"}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": [{"type": "T", "data": {}, "extra": 1}]}]')$$);
-- the same stream twice, the same event id in two streams
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[
  {"stream_id": "a-1", "events": [{"type": "T", "data": {}}]},
  {"stream_id": "b-1", "events": [{"type": "T", "data": {}}]},
  {"stream_id": "a-1", "events": [{"type": "U", "data": {}}]}]')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[
  {"stream_id": "a-1", "events": [{"type": "T", "data": {}, "id": "00000000-0000-7000-8000-0000000000ff"}]},
  {"stream_id": "b-1", "events": [{"type": "T", "data": {}, "id": "00000000-0000-7000-8000-0000000000ff"}]}]')$$);
-- too many events together
SET evstore.max_batch_events = 2;
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[
  {"stream_id": "a-1", "events": [{"type": "T", "data": {}}, {"type": "T", "data": {}}]},
  {"stream_id": "b-1", "events": [{"type": "T", "data": {}}]}]')$$);
RESET evstore.max_batch_events;
-- a read-only transaction
BEGIN READ ONLY;
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": [{"type": "T", "data": {}}]}]')$$);
ROLLBACK;
-- nothing of all that was written
SELECT count(*) AS events FROM evstore.events WHERE stream_id IN ('a-1', 'b-1');

-- lock_streams: the stream locks, once each, until the transaction ends
BEGIN;
SELECT evstore.lock_streams(ARRAY['b-1', 'a-1', 'b-1']);
SELECT count(*) AS stream_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 17747 AND pid = pg_backend_pid();
SELECT * FROM evstore.append_multi('[{"stream_id": "a-1", "events": [{"type": "T", "data": {}}]}]');
COMMIT;
SELECT count(*) AS stream_locks FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 17747 AND pid = pg_backend_pid();
SELECT evstore.lock_streams('{}');
SELECT * FROM pg_temp.err($$SELECT evstore.lock_streams(NULL)$$);
SELECT * FROM pg_temp.err($$SELECT evstore.lock_streams(ARRAY['a-1', NULL])$$);
SELECT * FROM pg_temp.err($$SELECT evstore.lock_streams(ARRAY[''])$$);
SELECT * FROM pg_temp.err($$SELECT evstore.lock_streams(ARRAY[['a', 'b']])$$);
