-- Distributed-mode feed functions on a node without Citus: clear errors,
-- and the checkpoint-vector helpers (docs/distributed.md).
\set VERBOSITY terse
\set ON_ERROR_STOP 0

-- without Citus every distributed-mode reader refuses, with SQLSTATE 0A000
DO $$
BEGIN
    PERFORM * FROM evstore.read_all_shard(102008);
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'read_all_shard: % %', SQLSTATE, SQLERRM;
END $$;
DO $$
BEGIN
    PERFORM * FROM evstore.read_all_distributed('{}');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'read_all_distributed: % %', SQLSTATE, SQLERRM;
END $$;
SELECT evstore.create_subscription('dist');
DO $$
BEGIN
    PERFORM * FROM evstore.subscription_fetch_shards('dist');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'subscription_fetch_shards: % %', SQLSTATE, SQLERRM;
END $$;
DO $$
BEGIN
    PERFORM evstore.subscription_ack_shards('dist', 0, '{"102008": 3}');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'subscription_ack_shards: % %', SQLSTATE, SQLERRM;
END $$;
-- per-shard checkpoints go with their subscription
INSERT INTO evstore.subscription_shard_checkpoints VALUES ('dist', 0, 102008, 5, now());
SELECT count(*) FROM evstore.subscription_shard_checkpoints;
SELECT evstore.drop_subscription('dist');
SELECT count(*) FROM evstore.subscription_shard_checkpoints;

-- bad arguments are refused before Citus is looked for
SELECT * FROM evstore.read_all_shard(NULL);
SELECT * FROM evstore.read_all_shard(1, -1);
SELECT * FROM evstore.read_all_shard(1, 0, 0);
SELECT * FROM evstore.read_all_distributed('{}', 0);

-- checkpoint vectors: shard id -> position, moved forward only
SELECT evstore.checkpoint_advance('{}', 102008, 7);
SELECT evstore.checkpoint_advance('{"102008": 9, "102009": 2}', 102008, 7);
SELECT evstore.checkpoint_advance('{"102008": 9, "102009": 2}', 102009, 7);
SELECT evstore.checkpoint_advance(NULL, 5, 1);
SELECT evstore.checkpoint_advance('[1]', 1, 1);
SELECT evstore.checkpoint_advance('{"x": 1}', 1, 1);
SELECT evstore.checkpoint_advance('{"1": -1}', 1, 1);
SELECT evstore.checkpoint_advance('{"1": 1.5}', 1, 1);
SELECT evstore.checkpoint_advance('{"1": "2"}', 1, 1);
