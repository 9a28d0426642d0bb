-- The order service's own tables and evstore objects (idempotent).
CREATE EXTENSION IF NOT EXISTS evstore;
CREATE SCHEMA IF NOT EXISTS shop;

-- written by the subscriber worker: the sales ledger (one row per sale line;
-- no unique key on purpose: a duplicate delivery would show as a second row)
CREATE TABLE IF NOT EXISTS shop.ledger (
    event_id        uuid NOT NULL,
    global_position bigint NOT NULL,
    order_id        text NOT NULL,
    kind            text NOT NULL,
    amount          numeric NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM evstore.subscriptions WHERE name = 'shop-ledger') THEN
        PERFORM evstore.create_subscription('shop-ledger', categories => ARRAY['order']);
    END IF;
END $$;
