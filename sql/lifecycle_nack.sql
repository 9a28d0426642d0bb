-- Durable subscriptions: failure handling (nack, retry, park, replay, skip)
-- and per-stream order while a stream is held back (docs/subscriptions.md)
\set VERBOSITY default
\set SHOW_CONTEXT never
-- events as positions relative to the start of this test
CREATE TEMP TABLE base AS SELECT evstore.read_all_horizon() AS p;
-- SQLSTATE and message, with "position <n>" relative to the start too
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text;
    m text[];
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    msg := SQLERRM;
    FOR m IN SELECT regexp_matches(SQLERRM, 'position (\d+)', 'g') LOOP
        msg := replace(msg, 'position ' || m[1],
                       'position ' || (m[1]::bigint - (SELECT p FROM base)));
    END LOOP;
    RETURN SQLSTATE || ': ' || msg;
END $$;
CREATE FUNCTION pg_temp.batch(sub text, n integer DEFAULT 100, member integer DEFAULT 0,
                              consumer text DEFAULT 'w') RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(f.stream_id || '@' || f.stream_version || '=' ||
                               (f.global_position - (SELECT p FROM base)), ' '
                               ORDER BY f.ordinality), '(none)')
    FROM evstore.subscription_fetch(sub, member, n, consumer) WITH ORDINALITY AS f
$$;
CREATE FUNCTION pg_temp.rel(pos bigint) RETURNS bigint LANGUAGE sql AS $$
    SELECT pos + (SELECT p FROM base)
$$;
CREATE FUNCTION pg_temp.held(sub text) RETURNS TABLE (stream_id text, rel bigint, state text,
        attempts integer, last_error text, held_back bigint) LANGUAGE sql AS $$
    SELECT h.stream_id, h.global_position - (SELECT p FROM base), h.state, h.attempts,
           h.last_error, h.held_back
    FROM evstore.subscription_held h WHERE h.subscription = sub ORDER BY h.global_position
$$;

-- settings: defaults, at creation, later
SELECT evstore.create_subscription('nk-a', ARRAY['nka', 'nkb'],
                                   start_position => evstore.read_all_horizon());
SELECT max_attempts, retry_delay, held_streams, parked FROM evstore.subscriptions WHERE name = 'nk-a';
SELECT evstore.alter_subscription('nk-a', max_attempts => 3);
SELECT evstore.alter_subscription('nk-a', retry_delay => '1 hour', lease_timeout => '1 minute');
SELECT max_attempts, retry_delay, lease_timeout FROM evstore.subscriptions WHERE name = 'nk-a';
SELECT evstore.create_subscription('nk-b', ARRAY['nkb'], NULL, 2, evstore.read_all_horizon(),
                                   '30 seconds', 1, '0');
SELECT member, max_attempts, retry_delay FROM evstore.subscriptions WHERE name = 'nk-b' ORDER BY member;
-- bad settings
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('nk-x', max_attempts => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('nk-x', max_attempts => NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('nk-x', max_attempts => 1000001)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('nk-x', retry_delay => '-1 second')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.alter_subscription('nk-x', max_attempts => 2)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.alter_subscription(NULL, max_attempts => 2)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.alter_subscription('nk-a', max_attempts => -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.alter_subscription('nk-a', retry_delay => '-1 day')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.alter_subscription('nk-a', lease_timeout => '0')$$);
SELECT count(*) FROM evstore.subscriptions WHERE name = 'nk-x';

-- a failed event holds its stream back; other streams go on
SELECT stream_version FROM evstore.append_events('nka-1', '[{"type": "A", "data": 1}, {"type": "A", "data": 2}]');
SELECT stream_version FROM evstore.append_event('nkb-1', 'B', '1');
SELECT stream_version FROM evstore.append_event('nka-1', 'A', '3');
SELECT stream_version FROM evstore.append_event('nkb-1', 'B', '2');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(1), 'handler failed: boom', NULL, 'w');
SELECT * FROM pg_temp.held('nk-a');
-- the batch had later events of nka-1: they are held back, not to be nacked
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(2), 'x', NULL, 'w')$$);
-- nor nacked again before it comes back
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(1), 'x', NULL, 'w')$$);
SELECT pg_temp.batch('nk-a');
-- the checkpoint may pass held-back events: they stay held
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(5), 'w');
SELECT acked_position - (SELECT p FROM base) AS acked, lag, held_streams FROM evstore.subscriptions WHERE name = 'nk-a';
SELECT pg_temp.batch('nk-a');
SELECT stream_version FROM evstore.append_event('nkb-1', 'B', '3');
SELECT stream_version FROM evstore.append_event('nka-1', 'A', '4');
SELECT pg_temp.batch('nk-a');
SELECT * FROM pg_temp.held('nk-a');
-- retry now: the failed event, then the held ones, in stream order
SELECT evstore.subscription_replay('nk-a', pg_temp.rel(1));
SELECT state FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
SELECT state FROM pg_temp.held('nk-a');
-- a smaller batch gives the stream's held events in order too
SELECT pg_temp.batch('nk-a', 2);
-- it fails again: attempt 2 (the later events of the batch are left alone)
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(1), 'boom again', '0', 'w');
SELECT * FROM pg_temp.held('nk-a');
-- due at once (retry_after 0): it comes back, and now it works
SELECT pg_temp.batch('nk-a', 1);
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(1), 'w');
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
-- acknowledging the batch's last event handles the held events it had
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(7), 'w');
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(7), 'w');
SELECT acked_position - (SELECT p FROM base) AS acked, lag, held_streams FROM evstore.subscriptions WHERE name = 'nk-a';
-- acknowledged events cannot be nacked
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(2), 'x', NULL, 'w')$$);

-- parking: max_attempts failures
SELECT evstore.alter_subscription('nk-a', max_attempts => 2);
SELECT stream_version FROM evstore.append_event('nka-2', 'A', '10');
SELECT stream_version FROM evstore.append_event('nka-2', 'A', '11');
SELECT stream_version FROM evstore.append_event('nkb-2', 'B', '12');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(8), 'first', '0', 'w');
SELECT pg_temp.batch('nk-a', 1);
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(8), 'second', '0', 'w');
SELECT subscription, member, stream_id, global_position - (SELECT p FROM base) AS rel, stream_version,
       event_type, attempts, last_error, since IS NOT NULL AS since, consumer, held_back
  FROM evstore.subscription_parked WHERE subscription = 'nk-a';
SELECT held_streams, parked FROM evstore.subscriptions WHERE name = 'nk-a';
-- a parked event stays parked: its stream waits, later events too
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(10), 'w');
SELECT stream_version FROM evstore.append_event('nka-2', 'A', '13');
SELECT stream_version FROM evstore.append_event('nkb-2', 'B', '14');
SELECT pg_temp.batch('nk-a');
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(8), 'x', NULL, 'w')$$);
-- replay gives a parked event fresh attempts
SELECT evstore.subscription_replay('nk-a');
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
-- its first event worked, the next one failed: a new failure, attempt 1
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(9), 'later one', NULL, 'w');
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
-- skip one event: the next one of the stream is delivered
SELECT evstore.subscription_skip('nk-a', pg_temp.rel(9)) - (SELECT p FROM base) AS next_held;
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(12), 'w');
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');

-- skip a whole stream: the held event and those the checkpoint passed
SELECT stream_version FROM evstore.append_event('nka-3', 'A', '20');
SELECT stream_version FROM evstore.append_event('nka-3', 'A', '21');
SELECT stream_version FROM evstore.append_event('nkb-3', 'B', '22');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(13), 'e', '1 hour', 'w');
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(15), 'w');
SELECT stream_version FROM evstore.append_event('nka-3', 'A', '23');
SELECT * FROM pg_temp.held('nk-a');
SELECT evstore.subscription_skip_stream('nk-a', 'nka-3');
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(16), 'w');

-- skipping an event the checkpoint has not passed: it is never delivered
SELECT stream_version FROM evstore.append_event('nkb-4', 'B', '30');
SELECT stream_version FROM evstore.append_event('nka-4', 'A', '31');
SELECT stream_version FROM evstore.append_event('nka-4', 'A', '32');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(18), 'e', '1 hour', 'w');
SELECT evstore.subscription_skip('nk-a', pg_temp.rel(18));
SELECT * FROM pg_temp.held('nk-a');
SELECT pg_temp.batch('nk-a');
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(18), 'x', NULL, 'w')$$);
-- and the next event of that stream can fail in turn
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(19), 'e2', '1 hour', 'w');
SELECT pg_temp.batch('nk-a');
SELECT evstore.subscription_ack('nk-a', 0, pg_temp.rel(19), 'w');
SELECT * FROM pg_temp.held('nk-a');
SELECT count(*) FROM evstore.subscription_holds WHERE subscription = 'nk-a';
SELECT evstore.subscription_skip_stream('nk-a', 'nka-4');
SELECT acked_position - (SELECT p FROM base) AS acked, lag, held_streams, parked FROM evstore.subscriptions WHERE name = 'nk-a';

-- errors of nack
SELECT evstore.append_event('nka-5', 'A', '40') IS NOT NULL;
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(20), retry_after => '-1 s')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(20), consumer => '')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(20), consumer => repeat('x', 1025))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-none', 0, pg_temp.rel(20))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack(NULL, 0, pg_temp.rel(20))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 1, pg_temp.rel(20))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, evstore.read_all_horizon() + 1, consumer => 'w')$$);
-- a position without an event (a rolled-back append)
BEGIN;
SELECT evstore.append_event('nka-5', 'A', '41') IS NOT NULL;
ROLLBACK;
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(21), consumer => 'w')$$);
-- an event the member does not receive: another category, another member
SELECT evstore.append_event('nkother-1', 'A', '42') IS NOT NULL;
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(22), consumer => 'w')$$);
SELECT evstore.append_event(s, 'B', '43') IS NOT NULL
  FROM (SELECT 'nkb-m' || i AS s FROM generate_series(1, 20) i
        WHERE evstore.stream_hash('nkb-m' || i) % 256 % 2 = 0 LIMIT 1) x;
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-b', 1, pg_temp.rel(23))$$);
SELECT evstore.subscription_nack('nk-b', 0, pg_temp.rel(23), 'max_attempts 1');
SELECT stream_id ~ '^nkb-m', attempts FROM evstore.subscription_parked WHERE subscription = 'nk-b';
-- leases: another consumer's lease refuses the nack
SELECT pg_temp.batch('nk-a', 100, 0, 'w');
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(20), 'e', NULL, 'intruder')$$);
-- a long error text is kept to its first 8192 characters
SELECT evstore.subscription_nack('nk-a', 0, pg_temp.rel(20), repeat('é', 9000), '1 hour', 'w');
SELECT length(last_error) FROM evstore.subscription_held WHERE subscription = 'nk-a';

-- errors of replay and skip
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_replay(NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_replay('nk-none')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_replay('nk-none', 5)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_replay('nk-a', pg_temp.rel(19))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip('nk-a', NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip(NULL, 5)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip('nk-none', 5)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip('nk-a', pg_temp.rel(19))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip_stream('nk-a', NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip_stream('nk-none', 'nka-5')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip_stream('nk-a', 'nka-1')$$);
-- held behind another event: the error says which
SELECT evstore.append_event('nka-5', 'A', '44') IS NOT NULL;
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_skip('nk-a', pg_temp.rel(24))$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_replay('nk-a', pg_temp.rel(24))$$);
-- replaying something already due does nothing
SELECT evstore.subscription_replay('nk-a', pg_temp.rel(20));
SELECT evstore.subscription_replay('nk-a', pg_temp.rel(20));

-- privileges: nothing for PUBLIC
SELECT p, has_function_privilege('public', p, 'EXECUTE')
  FROM unnest(ARRAY['evstore.subscription_nack(text,integer,bigint,text,interval,text)',
                    'evstore.alter_subscription(text,integer,interval,interval)',
                    'evstore.subscription_replay(text,bigint)',
                    'evstore.subscription_skip(text,bigint)',
                    'evstore.subscription_skip_stream(text,text)']) p;
SELECT t, has_table_privilege('public', t, 'SELECT')
  FROM unnest(ARRAY['evstore.subscription_holds', 'evstore.subscription_held',
                    'evstore.subscription_parked']) t;

-- dropping a subscription drops what it holds
SELECT count(*) > 0 FROM evstore.subscription_holds WHERE subscription IN ('nk-a', 'nk-b');
SELECT evstore.drop_subscription('nk-a'), evstore.drop_subscription('nk-b');
SELECT count(*) FROM evstore.subscription_holds WHERE subscription IN ('nk-a', 'nk-b');
