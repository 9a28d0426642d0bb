-- Idempotent consumers (processed messages), correlation and causation
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- mark_processed: true the first time, false afterwards, per consumer
SELECT evstore.mark_processed('lc-mailer', '018f0000-0000-7000-8000-000000000001');
SELECT evstore.mark_processed('lc-mailer', '018f0000-0000-7000-8000-000000000001');
SELECT evstore.mark_processed('lc-billing', '018f0000-0000-7000-8000-000000000001');
SELECT evstore.is_processed('lc-mailer', '018f0000-0000-7000-8000-000000000001'),
       evstore.is_processed('lc-mailer', '018f0000-0000-7000-8000-000000000002');
-- recorded in the caller's transaction: a rollback forgets it
BEGIN;
SELECT evstore.mark_processed('lc-mailer', '018f0000-0000-7000-8000-000000000002');
ROLLBACK;
SELECT evstore.is_processed('lc-mailer', '018f0000-0000-7000-8000-000000000002');
-- the typical handler: do the work only when the event is new
CREATE TEMP TABLE mails (event_id uuid);
CREATE FUNCTION pg_temp.handle(id uuid) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF evstore.mark_processed('lc-mailer', id) THEN
        INSERT INTO mails VALUES (id);
    END IF;
END $$;
SELECT pg_temp.handle('018f0000-0000-7000-8000-000000000003');
SELECT pg_temp.handle('018f0000-0000-7000-8000-000000000003');
SELECT count(*) FROM mails;
-- pruning
SELECT evstore.prune_processed('lc-billing', now() + interval '1 minute');
SELECT evstore.prune_processed('lc-billing', now() + interval '1 minute');
SELECT count(*) FROM evstore.processed_messages WHERE consumer = 'lc-mailer';
-- errors
SELECT pg_temp.sqlstate_of($$SELECT evstore.mark_processed(NULL, '018f0000-0000-7000-8000-000000000001')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.mark_processed('', '018f0000-0000-7000-8000-000000000001')$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.mark_processed('lc-mailer', NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT evstore.prune_processed('lc-mailer', NULL)$$);

-- correlation and causation
SELECT stream_version FROM evstore.append_event('lccorr-1', 'OrderPlaced', '{}',
  '{"correlation_id": "lc-c1"}', NULL, '018f0000-0000-7000-8000-0000000000a1');
SELECT stream_version FROM evstore.append_event('lccorr-pay', 'PaymentRequested', '{}',
  '{"correlation_id": "lc-c1", "causation_id": "018f0000-0000-7000-8000-0000000000a1"}',
  NULL, '018f0000-0000-7000-8000-0000000000a2');
SELECT stream_version FROM evstore.append_event('lccorr-pay', 'PaymentCaptured', '{}',
  '{"correlation_id": "lc-c1", "causation_id": "018f0000-0000-7000-8000-0000000000a2"}',
  NULL, '018f0000-0000-7000-8000-0000000000a3');
SELECT stream_version FROM evstore.append_event('lccorr-1', 'OrderPaid', '{}',
  '{"correlation_id": "lc-c1", "causation_id": "018f0000-0000-7000-8000-0000000000a3"}',
  NULL, '018f0000-0000-7000-8000-0000000000a4');
SELECT stream_version FROM evstore.append_event('lccorr-ship', 'ShipmentPrepared', '{}',
  '{"correlation_id": "lc-c1", "causation_id": "018f0000-0000-7000-8000-0000000000a2"}',
  NULL, '018f0000-0000-7000-8000-0000000000a5');
SELECT stream_version FROM evstore.append_event('lccorr-2', 'OrderPlaced', '{}',
  '{"correlation_id": "lc-c2"}');

SELECT stream_id, event_type FROM evstore.read_correlated('lc-c1');
SELECT stream_id, event_type FROM evstore.read_correlated('lc-c1', NULL, 2);
SELECT count(*) FROM evstore.read_correlated('lc-c1',
  (SELECT global_position FROM evstore.events WHERE event_id = '018f0000-0000-7000-8000-0000000000a3'));
SELECT count(*) FROM evstore.read_correlated('lc-none');
SELECT depth, event_type FROM evstore.causal_chain('018f0000-0000-7000-8000-0000000000a1');
SELECT depth, event_type FROM evstore.causal_chain('018f0000-0000-7000-8000-0000000000a2');
SELECT depth, event_type FROM evstore.causal_chain('018f0000-0000-7000-8000-0000000000a1', 1);
SELECT count(*) FROM evstore.causal_chain('018f0000-0000-7000-8000-0000000000ff');
-- walking back to the causes
SELECT depth, event_type FROM evstore.causes('018f0000-0000-7000-8000-0000000000a4');
SELECT depth, event_type FROM evstore.causes('018f0000-0000-7000-8000-0000000000a4', 1);
SELECT depth, event_type FROM evstore.causes('018f0000-0000-7000-8000-0000000000a1');
SELECT stream_version FROM evstore.append_event('lccorr-3', 'Handled', '{}',
  '{"causation_id": "command-17"}', NULL, '018f0000-0000-7000-8000-0000000000b1');
SELECT depth, event_type FROM evstore.causes('018f0000-0000-7000-8000-0000000000b1');
SELECT count(*) FROM evstore.causes('018f0000-0000-7000-8000-0000000000ff');
-- the lookups use the partial expression indexes
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM evstore.events
  WHERE metadata ? 'correlation_id' AND metadata ->> 'correlation_id' = 'x' ORDER BY global_position;
EXPLAIN (COSTS OFF) SELECT * FROM evstore.events
  WHERE metadata ? 'causation_id' AND metadata ->> 'causation_id' = 'x';
RESET enable_seqscan;

-- notify setting: off by default, only superusers set it, names are checked
SHOW evstore.notify_channel;
SELECT pg_temp.sqlstate_of($$SET evstore.notify_channel = '$$ || repeat('n', 64) || $$'$$);
CREATE ROLE lc_plain;
SET ROLE lc_plain;
SET evstore.notify_channel = 'x';
RESET ROLE;
DROP ROLE lc_plain;

-- privileges: nothing for PUBLIC; EXECUTE on a function is enough, no table grants needed
CREATE ROLE lc_app;
GRANT USAGE ON SCHEMA evstore TO lc_app;
GRANT EXECUTE ON FUNCTION evstore.mark_processed(text, uuid), evstore.load_snapshot(text),
    evstore.create_subscription(text, text[], text[], integer, bigint, interval, integer, interval),
    evstore.subscription_fetch(text, integer, integer, text, interval),
    evstore.drop_subscription(text, boolean) TO lc_app;
SET ROLE lc_app;
SELECT evstore.mark_processed('lc-app', '018f0000-0000-7000-8000-000000000010');
SELECT count(*) FROM evstore.load_snapshot('lcsnap-none');
SELECT evstore.create_subscription('lc-app-sub', ARRAY['lcnone']);
SELECT count(*) FROM evstore.subscription_fetch('lc-app-sub', 0, 10, 'app');
SELECT evstore.drop_subscription('lc-app-sub');
SELECT evstore.is_processed('lc-app', '018f0000-0000-7000-8000-000000000010');
SELECT evstore.delete_stream('lccorr-2');
SELECT count(*) FROM evstore.processed_messages;
SELECT count(*) FROM evstore.subscriptions;
RESET ROLE;
DROP OWNED BY lc_app;
DROP ROLE lc_app;
