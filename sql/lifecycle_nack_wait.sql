-- A waiting subscription_fetch and streams held back by a nack
-- (docs/subscriptions.md#waiting-instead-of-polling): a held-back event
-- does not end the wait, a retry falling due does.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT evstore.create_subscription('nw', categories => ARRAY['nwa', 'nwb'],
                                   max_attempts => 3, retry_delay => '0.4 s');
SELECT evstore.append_event('nwa-1', 'Tried', '{"n": 1}') IS NOT NULL AS appended;
SELECT evstore.append_event('nwa-1', 'Tried', '{"n": 2}') IS NOT NULL AS appended;
SELECT stream_id, stream_version FROM evstore.subscription_fetch('nw', 0, 10, 'w');
-- the first event fails: its stream is held back for 0.4 s
SELECT evstore.subscription_nack('nw', 0, p, 'boom', consumer => 'w')
FROM (SELECT min(global_position) AS p FROM evstore.events WHERE stream_id = 'nwa-1') s;
-- nothing is due: a fetch without a timeout returns nothing
SELECT count(*) AS now FROM evstore.subscription_fetch('nw', 0, 10, 'w');
-- a waiting fetch is not ended by the held-back events (they are past the
-- checkpoint, and read_all would return them): it waits for the retry
-- and returns the failed event and the one after it, in order
SELECT stream_id, stream_version
FROM evstore.subscription_fetch('nw', 0, 10, 'w', timeout => '30 s');
-- the stream fails again and waits an hour: a waiting fetch steps over
-- its held-back events until the timeout, and an event of another stream
-- is returned
SELECT evstore.subscription_nack('nw', 0, p, 'boom', retry_after => '1 hour', consumer => 'w')
FROM (SELECT min(global_position) AS p FROM evstore.events WHERE stream_id = 'nwa-1') s;
SELECT count(*) AS held_only FROM evstore.subscription_fetch('nw', 0, 10, 'w', timeout => '0.3 s');
SELECT evstore.append_event('nwb-1', 'Other', '{}') IS NOT NULL AS appended;
SELECT stream_id, stream_version
FROM evstore.subscription_fetch('nw', 0, 10, 'w', timeout => '30 s');
SELECT evstore.drop_subscription('nw');
