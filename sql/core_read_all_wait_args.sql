-- read_all(..., timeout) and subscription_fetch(..., timeout): bad
-- arguments, a wait that ends at its timeout returns nothing, one with
-- events already there returns at once, and how it behaves in transaction
-- blocks and isolation levels.  Waking on a commit is in
-- specs/core_read_all_wait.spec, shutdown and a waiting
-- subscription_fetch in t/014_read_all_wait.pl.
SET client_min_messages = warning;
DROP EXTENSION evstore CASCADE;
CREATE EXTENSION evstore;
RESET client_min_messages;
\set VERBOSITY default
CREATE FUNCTION pg_temp.err(sql text, OUT code text, OUT message text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    code := 'none';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
END $$;

-- the new parameter is the last one, with a default
SELECT pg_catalog.pg_get_function_identity_arguments('evstore.read_all'::regproc);
SELECT pg_catalog.pg_get_function_identity_arguments('evstore.subscription_fetch'::regproc);

SELECT evstore.append_event('order-1', 'OrderPlaced', '{}');   -- 1
SELECT evstore.append_event('order-2', 'OrderPlaced', '{}');   -- 2

-- bad timeouts: 22023, whatever the rest of the call
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, timeout => '-1 second')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(2, timeout => '1 day -25 hours')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, 10, '{}', timeout => '-1 ms')$$);

-- events already there: returned at once, as without a timeout
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(0, timeout => '1 hour');
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(1, timeout => '1 hour');
-- NULL and 0 do not wait
SELECT count(*) FROM evstore.read_all(2, timeout => NULL);
SELECT count(*) FROM evstore.read_all(2, timeout => '0');
-- nothing comes: the wait ends at its timeout, with no rows
SELECT count(*) FROM evstore.read_all(2, timeout => '20 ms');
-- also when the event there does not match the filters
SELECT count(*) FROM evstore.read_all(0, categories => '{invoice}', timeout => '20 ms');
SELECT count(*) FROM evstore.read_all(0, event_types => '{OrderPaid}', timeout => '20 ms');
-- and when the filters match nothing at all
SELECT count(*) FROM evstore.read_all(0, categories => '{}', timeout => '20 ms');
-- max_count and the filters apply to what a wait returns
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(0, 1, '{order}', timeout => '1 hour');

-- statement_timeout and cancellation end a wait with their usual error
SET statement_timeout = '50ms';
SELECT count(*) FROM evstore.read_all(2, timeout => '1 hour');
RESET statement_timeout;

-- a transaction that appended cannot wait: it holds read_all back itself
BEGIN;
SELECT evstore.append_event('order-3', 'OrderPlaced', '{}');   -- 3
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.read_all(0, timeout => '1 hour')$$);
-- without a timeout it reads as before (its own event is held back)
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(0);
ROLLBACK;
-- an append rolled back to a savepoint no longer holds anything back
BEGIN;
SAVEPOINT s;
SELECT evstore.append_event('order-4', 'OrderPlaced', '{}');   -- 4, rolled back
ROLLBACK TO SAVEPOINT s;
SELECT count(*) FROM evstore.read_all(2, timeout => '20 ms');
COMMIT;

-- in a transaction block, in every isolation level: a wait reads with a
-- new snapshot (as read_all always does), so it can see later commits
-- (the isolation spec shows one); here it times out or returns at once
BEGIN ISOLATION LEVEL READ COMMITTED;
SELECT count(*) FROM evstore.read_all(2, timeout => '20 ms');
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(1, timeout => '1 hour');
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM evstore.read_all(2, timeout => '20 ms');
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(1, timeout => '1 hour');
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM evstore.read_all(2, timeout => '20 ms');
SELECT string_agg(global_position::text, ',') FROM evstore.read_all(1, timeout => '1 hour');
COMMIT;

-- subscription_fetch: the same timeout, checked the same way
SELECT evstore.create_subscription('orders', ARRAY['order']);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.subscription_fetch('orders', timeout => '-1 second')$$);
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.subscription_fetch('nope', timeout => '1 hour')$$);
SELECT string_agg(global_position::text, ',') FROM evstore.subscription_fetch('orders', 0, 10, 'w1', '1 hour');
SELECT evstore.subscription_ack('orders', 0, 2, 'w1');
-- nothing new: empty at the timeout, for the lease holder and without a consumer
SELECT count(*) FROM evstore.subscription_fetch('orders', 0, 10, 'w1', '20 ms');
SELECT count(*) FROM evstore.subscription_fetch('orders', 0, 10, NULL, '0');
SELECT evstore.subscription_release('orders', 0, 'w1');
SELECT count(*) FROM evstore.subscription_fetch('orders', 0, 10, NULL, '20 ms');
-- a new event: returned at once
SELECT evstore.append_event('order-5', 'OrderPlaced', '{}');   -- 5
SELECT string_agg(global_position::text, ',') FROM evstore.subscription_fetch('orders', 0, 10, 'w1', '1 hour');
-- another consumer's lease: nothing for w2 while it lasts (it waits for
-- the lease's end, at most its timeout)
SELECT count(*) FROM evstore.subscription_fetch('orders', 0, 10, 'w2', '20 ms');
-- a transaction that appended cannot wait here either
BEGIN;
SELECT evstore.append_event('order-6', 'OrderPlaced', '{}');   -- 6
SELECT * FROM pg_temp.err($$SELECT * FROM evstore.subscription_fetch('orders', 0, 10, 'w1', '1 hour')$$);
ROLLBACK;
