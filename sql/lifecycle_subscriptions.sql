-- Durable subscriptions: create, fetch, ack (compare-and-set), leases, groups, lag
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- start after everything earlier tests wrote, so positions below are relative
SELECT evstore.create_subscription('lc-orders', ARRAY['lcsub'], NULL, 1,
                                   evstore.read_all_horizon());
SELECT acked_position = evstore.read_all_horizon() AS at_horizon
  FROM evstore.subscription_checkpoints WHERE subscription = 'lc-orders';
CREATE TEMP TABLE base AS SELECT evstore.read_all_horizon() AS p;

SELECT stream_version FROM evstore.append_events('lcsub-1',
  '[{"type": "Placed", "data": {}}, {"type": "Paid", "data": {}}]');
SELECT stream_version FROM evstore.append_event('lcother-1', 'Noise', '{}');
SELECT stream_version FROM evstore.append_event('lcsub-2', 'Placed', '{}');

-- fetch: only the category, in order, nothing acknowledged yet
SELECT stream_id, stream_version, event_type, global_position - (SELECT p FROM base) AS rel
  FROM evstore.subscription_fetch('lc-orders');
-- a second fetch returns the same events (at-least-once until acked)
SELECT count(*) FROM evstore.subscription_fetch('lc-orders');
SELECT name, member, lag, consumer FROM evstore.subscriptions WHERE name = 'lc-orders';

-- max_count
SELECT stream_id, stream_version FROM evstore.subscription_fetch('lc-orders', 0, 2);
-- acknowledge the second event
SELECT evstore.subscription_ack('lc-orders', 0, (SELECT p + 2 FROM base));
SELECT stream_id, stream_version FROM evstore.subscription_fetch('lc-orders');
SELECT lag FROM evstore.subscriptions WHERE name = 'lc-orders';
-- compare-and-set: an older or equal position does not move it back
SELECT evstore.subscription_ack('lc-orders', 0, (SELECT p + 1 FROM base));
SELECT evstore.subscription_ack('lc-orders', 0, (SELECT p + 2 FROM base));
SELECT acked_position - (SELECT p FROM base) AS rel FROM evstore.subscriptions WHERE name = 'lc-orders';
-- acknowledging beyond read_all's horizon is refused (it could skip events)
SELECT regexp_replace(pg_temp.sqlstate_of($$SELECT evstore.subscription_ack('lc-orders', 0, evstore.read_all_horizon() + 1)$$), '\d+', 'N', 'g');
SELECT evstore.subscription_ack('lc-orders', 0, (SELECT p + 4 FROM base));
SELECT count(*) FROM evstore.subscription_fetch('lc-orders');
SELECT lag FROM evstore.subscriptions WHERE name = 'lc-orders';

-- leases: a named consumer takes the member; others get nothing and cannot ack
SELECT stream_version FROM evstore.append_event('lcsub-3', 'Placed', '{}');
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-a');
SELECT consumer, lease_until > now() AS leased FROM evstore.subscriptions WHERE name = 'lc-orders';
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-b');
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_ack('lc-orders', 0, evstore.read_all_horizon(), 'worker-b')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_ack('lc-orders', 0, evstore.read_all_horizon())$$);
-- the holder may fetch again (renews) and release
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-a');
SELECT evstore.subscription_release('lc-orders', 0, 'worker-b');
SELECT evstore.subscription_release('lc-orders', 0, 'worker-a');
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-b');
-- an expired lease is taken over
UPDATE evstore.subscription_checkpoints SET lease_until = now() - interval '1 second'
  WHERE subscription = 'lc-orders';
SELECT consumer FROM evstore.subscriptions WHERE name = 'lc-orders';
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-a');
SELECT evstore.subscription_ack('lc-orders', 0, evstore.read_all_horizon(), 'worker-a');
SELECT consumer, lag FROM evstore.subscriptions WHERE name = 'lc-orders';
-- the holder's fetch renews the lease only when less than half of it is left
SELECT lease_until AS lease0 FROM evstore.subscription_checkpoints WHERE subscription = 'lc-orders' \gset
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-a');
SELECT lease_until = :'lease0' AS unchanged FROM evstore.subscription_checkpoints WHERE subscription = 'lc-orders';
UPDATE evstore.subscription_checkpoints SET lease_until = clock_timestamp() + interval '5 seconds'
  WHERE subscription = 'lc-orders';
SELECT count(*) FROM evstore.subscription_fetch('lc-orders', 0, 10, 'worker-a');
SELECT lease_until > clock_timestamp() + interval '20 seconds' AS renewed
  FROM evstore.subscription_checkpoints WHERE subscription = 'lc-orders';

-- consumer groups: each stream goes to exactly one member
SELECT evstore.create_subscription('lc-group', ARRAY['lcgrp'], ARRAY['Placed', 'Paid'], 3,
                                   evstore.read_all_horizon());
SELECT count(*) FROM (
  SELECT evstore.append_events('lcgrp-' || i,
    '[{"type": "Placed", "data": {}}, {"type": "Ignored", "data": {}}, {"type": "Paid", "data": {}}]')
  FROM generate_series(1, 12) i) s;
CREATE TEMP TABLE got AS
  SELECT m AS member, f.* FROM generate_series(0, 2) m,
    LATERAL evstore.subscription_fetch('lc-group', m, 1000) f;
SELECT count(*) AS events, count(DISTINCT stream_id) AS streams,
       count(DISTINCT event_type) AS types FROM got;
SELECT count(*) AS streams_on_two_members FROM (
  SELECT stream_id FROM got GROUP BY stream_id HAVING count(DISTINCT member) > 1) s;
SELECT bool_and(ordered) AS in_order FROM (
  SELECT stream_version > lag(stream_version, 1, -1::bigint) OVER w AS ordered
  FROM got WINDOW w AS (PARTITION BY stream_id ORDER BY global_position)) s;
SELECT sum(lag) AS total_lag, count(*) AS members FROM evstore.subscriptions WHERE name = 'lc-group';
SELECT member, lag = (SELECT count(*) FROM got g WHERE g.member = s.member) AS lag_matches
  FROM evstore.subscriptions s WHERE name = 'lc-group' ORDER BY member;

-- errors
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('lc-orders')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription(NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('lc-x', group_size => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('lc-x', group_size => 257)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('lc-x', start_position => -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('lc-x', lease_timeout => '0 s')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.create_subscription('lc-x', ARRAY['a', NULL])$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_fetch('lc-missing')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_fetch('lc-group', 3)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_fetch('lc-group', NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_fetch('lc-group', 0, 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_fetch('lc-group', 0, 10, '')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_ack('lc-group', 0, -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_ack('lc-group', 0, NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.subscription_ack('lc-missing', 0, 1)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.drop_subscription('lc-missing')$$);
SELECT evstore.drop_subscription('lc-missing', true);
SELECT count(*) FROM evstore.subscriptions WHERE name = 'lc-x';

-- drop
SELECT evstore.drop_subscription('lc-group');
SELECT count(*) FROM evstore.subscription_checkpoints WHERE subscription = 'lc-group';
SELECT evstore.drop_subscription('lc-orders');
