# Failure handling of a durable subscription end to end: a poison event
# that fails max_attempts times is parked while the other streams flow and
# the later events of its stream wait; after a fix and a replay they are
# delivered in stream order.  A consumer killed mid-transaction, or a
# server stopped immediately mid-transaction, loses and duplicates nothing:
# the nack/hold state is exactly what was committed.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('poison');
$node->safe_psql('postgres', q{
	SELECT evstore.create_subscription('orders', ARRAY['ord'], NULL, 1, 0, '5 minutes', 3, '0');
	-- the application: poison lists the events its handler fails on;
	-- processed is its read model (global_position UNIQUE: a duplicate
	-- would fail), written in the same transaction as the acknowledgement
	CREATE TABLE poison (global_position bigint PRIMARY KEY);
	CREATE TABLE processed (id bigserial, stream_id text, stream_version bigint,
	                        global_position bigint UNIQUE);
	CREATE TABLE failures (global_position bigint, outcome text);
	-- one batch in one transaction: handle each event in order; after a
	-- failure, leave the rest of that stream in the batch alone; then
	-- acknowledge the batch's last event
	CREATE FUNCTION consume(consumer text, max_count integer) RETURNS integer
	LANGUAGE plpgsql AS $$
	DECLARE
		e record;
		failed text[] := '{}';
		last bigint;
		n integer := 0;
	BEGIN
		FOR e IN SELECT * FROM evstore.subscription_fetch('orders', 0, max_count, consumer) LOOP
			n := n + 1;
			last := e.global_position;
			CONTINUE WHEN e.stream_id = ANY (failed);
			IF EXISTS (SELECT FROM poison p WHERE p.global_position = e.global_position) THEN
				INSERT INTO failures VALUES (e.global_position,
					evstore.subscription_nack('orders', 0, e.global_position,
						'cannot handle ' || e.stream_id || '@' || e.stream_version, '0', consumer));
				failed := failed || e.stream_id;
			ELSE
				INSERT INTO processed (stream_id, stream_version, global_position)
					VALUES (e.stream_id, e.stream_version, e.global_position);
			END IF;
		END LOOP;
		IF last IS NOT NULL THEN
			PERFORM evstore.subscription_ack('orders', 0, last, consumer);
		END IF;
		RETURN n;
	END $$;
	-- 5 streams, 4 events each, interleaved
	SELECT evstore.append_event('ord-' || s, 'Step', jsonb_build_object('v', v))
	  FROM generate_series(0, 3) v, generate_series(1, 5) s ORDER BY v, s;
	INSERT INTO poison SELECT global_position FROM evstore.events
	  WHERE stream_id = 'ord-2' AND stream_version = 1;
});

# fetch and handle batches until one comes back empty
sub drain
{
	my $rounds = 0;
	while ($rounds++ < 50)
	{
		last if $node->safe_psql('postgres', "SELECT consume('w', 7)") == 0;
	}
	return $rounds;
}

sub versions
{
	my ($stream) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(stream_version::text, ',' ORDER BY id) FROM processed WHERE stream_id = '$stream'");
}

sub state
{
	return $node->safe_psql('postgres', q{
		SELECT stream_id || '@' || stream_version || ' ' || state || ' ' || attempts || ' ' || coalesce(last_error, '')
		  FROM evstore.subscription_held ORDER BY global_position});
}

my $acked_sql = "SELECT acked_position FROM evstore.subscriptions WHERE name = 'orders'";

drain();
is($node->safe_psql('postgres', "SELECT string_agg(outcome, ',' ORDER BY outcome DESC) FROM failures"),
	'retry,retry,parked', 'the poison event failed 3 times (max_attempts) and was parked');
is($node->safe_psql('postgres', q{
	SELECT stream_id || '@' || stream_version || ' attempts=' || attempts || ' held_back=' || held_back
	       || ' ' || last_error || ' ' || (since IS NOT NULL)
	  FROM evstore.subscription_parked WHERE subscription = 'orders'}),
	'ord-2@1 attempts=3 held_back=2 cannot handle ord-2@1 true', 'evstore.subscription_parked shows it');
is(join(' ', map { versions("ord-$_") } 1, 3, 4, 5), '0,1,2,3 0,1,2,3 0,1,2,3 0,1,2,3',
	'the other streams flowed, in order');
is(versions('ord-2'), '0', 'the events of its stream after it wait');
is($node->safe_psql('postgres', $acked_sql),
	$node->safe_psql('postgres', "SELECT max(global_position) FROM evstore.events WHERE category = 'ord'"),
	'the checkpoint moved past the held-back events');

# more events: the other streams go on, the poison stream keeps waiting
$node->safe_psql('postgres', q{
	SELECT evstore.append_event('ord-' || s, 'Step', '{"v": 4}') FROM generate_series(1, 5) s;
});
drain();
is(join(' ', map { versions("ord-$_") } 1 .. 5), '0,1,2,3,4 0 0,1,2,3,4 0,1,2,3,4 0,1,2,3,4',
	'new events of the other streams are delivered; the parked stream still waits');
is($node->safe_psql('postgres', "SELECT held_back FROM evstore.subscription_parked"), '3',
	'three events of the stream wait behind the parked one');

# the handler is fixed; the operator replays the parked event
$node->safe_psql('postgres', q{
	DELETE FROM poison;
	SELECT evstore.subscription_replay('orders');
});
my $before = state();
like($before, qr/^ord-2\@1 ready 0 cannot handle/, 'the replayed event is ready, with fresh attempts');
my $acked_before = $node->safe_psql('postgres', $acked_sql);

# a consumer killed in the middle of its transaction: nothing it did stays
my $bg = $node->background_psql('postgres', on_error_stop => 1);
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_safe('BEGIN');
is($bg->query_safe("SELECT consume('w', 100)"), '4', 'the consumer got the held stream: its 4 waiting events');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
eval { $bg->quit };
is(versions('ord-2'), '0', 'killed mid-transaction: nothing of it was processed');
is(state(), $before, 'killed mid-transaction: the hold is as committed');
is($node->safe_psql('postgres', $acked_sql), $acked_before, 'killed mid-transaction: the checkpoint is as committed');

# the server stops immediately in the middle of a consumer's transaction
# that nacks (the poison is back): the committed state is what survives
$node->safe_psql('postgres', q{
	INSERT INTO poison SELECT global_position FROM evstore.events
	  WHERE stream_id = 'ord-2' AND stream_version = 1;
});
$bg = $node->background_psql('postgres', on_error_stop => 1);
$bg->query_safe('BEGIN');
is($bg->query_safe("SELECT consume('w', 100)"), '4', 'the consumer fetched the held stream again');
is($bg->query_safe("SELECT attempts FROM evstore.subscription_held"), '1', 'and nacked it, not committed');
$node->stop('immediate');
eval { $bg->quit };
$node->start;
is(state(), $before, 'after an immediate stop: the hold is as committed (ready, 0 attempts)');
is($node->safe_psql('postgres', $acked_sql), $acked_before, 'after an immediate stop: the checkpoint is as committed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM failures'), '3', 'after an immediate stop: no failure recorded twice');

# fixed for good: the held stream is delivered in order, then flows again
$node->safe_psql('postgres', 'DELETE FROM poison');
drain();
is(versions('ord-2'), '0,1,2,3,4', 'the parked event, then the held ones, in stream order');
is(state(), '', 'nothing is held any more');
$node->safe_psql('postgres', q{
	SELECT evstore.append_event('ord-' || s, 'Step', '{"v": 5}') FROM generate_series(1, 5) s;
});
drain();
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(DISTINCT global_position) FROM processed}),
	$node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(*) FROM evstore.events WHERE category = 'ord'}),
	'every event was processed exactly once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  SELECT stream_version, row_number() OVER (PARTITION BY stream_id ORDER BY id) - 1 AS nth
	  FROM processed) x WHERE stream_version <> nth}),
	'0', 'each stream was processed in stream order, without gaps');

# Random failures: handlers fail at random (every attempt 30%), batches
# have random sizes, a third of the transactions roll back, events keep
# coming, the consumer hands the member over now and then, and parked
# events are replayed.  Whatever happens, each event is processed exactly
# once and each stream in order.
$node->safe_psql('postgres', q{
	SELECT evstore.create_subscription('chaos', ARRAY['chs'], NULL, 1, 0, '5 minutes', 3, '0');
	CREATE TABLE chaos_done (id bigserial, stream_id text, stream_version bigint,
	                         global_position bigint UNIQUE);
	CREATE FUNCTION chaos(consumer text, max_count integer, fail_rate float8) RETURNS integer
	LANGUAGE plpgsql AS $$
	DECLARE
		e record;
		failed text[] := '{}';
		last bigint;
		n integer := 0;
	BEGIN
		FOR e IN SELECT * FROM evstore.subscription_fetch('chaos', 0, max_count, consumer) LOOP
			n := n + 1;
			last := e.global_position;
			CONTINUE WHEN e.stream_id = ANY (failed);
			IF random() < fail_rate THEN
				PERFORM evstore.subscription_nack('chaos', 0, e.global_position, 'random', '0', consumer);
				failed := failed || e.stream_id;
			ELSE
				INSERT INTO chaos_done (stream_id, stream_version, global_position)
					VALUES (e.stream_id, e.stream_version, e.global_position);
			END IF;
		END LOOP;
		IF last IS NOT NULL THEN
			PERFORM evstore.subscription_ack('chaos', 0, last, consumer);
		END IF;
		RETURN n;
	END $$;
});
srand($ENV{EVSTORE_CHAOS_SEED} // 22);
my $consumer = 'c1';
for my $round (1 .. 300)
{
	my $sql = '';
	$sql .= sprintf("SELECT evstore.append_event('chs-%d', 'E', '{}');
", int(rand(6))) for 1 .. int(rand(4));
	if ($round % 25 == 0)
	{
		$sql .= "SELECT evstore.subscription_release('chaos', 0, '$consumer');
";
		$consumer = $consumer eq 'c1' ? 'c2' : 'c1';
	}
	$sql .= "SELECT evstore.subscription_replay('chaos');
" if $round % 10 == 0;
	my $end = rand() < 0.33 ? 'ROLLBACK' : 'COMMIT';
	$sql .= sprintf("BEGIN;
SELECT setseed(%.6f);
SELECT chaos('%s', %d, 0.3);
%s;
",
		rand(), $consumer, 1 + int(rand(8)), $end);
	$node->safe_psql('postgres', $sql);
}
note('after the chaos: ', $node->safe_psql('postgres', q{
	SELECT count(*) || ' events, ' || (SELECT count(*) FROM chaos_done) || ' processed, '
	       || (SELECT count(*) FROM evstore.subscription_held) || ' streams held'
	FROM evstore.events WHERE category = 'chs'}));
$node->safe_psql('postgres', "SELECT evstore.subscription_replay('chaos')");
for my $round (1 .. 200)
{
	last if $node->safe_psql('postgres', "SELECT chaos('$consumer', 10, 0)") == 0
	  && $node->safe_psql('postgres', "SELECT count(*) FROM evstore.subscription_held") == 0;
	$node->safe_psql('postgres', "SELECT evstore.subscription_replay('chaos')");
}
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM chaos_done) || ' ' || (SELECT count(*) FROM evstore.events WHERE category = 'chs')}),
	$node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(*) FROM evstore.events WHERE category = 'chs'}),
	'random failures: every event was processed, none twice (global_position is unique)');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  SELECT stream_version, row_number() OVER (PARTITION BY stream_id ORDER BY id) - 1 AS nth
	  FROM chaos_done) x WHERE stream_version <> nth}),
	'0', 'random failures: each stream was processed in stream order, without gaps');

$node->stop;
done_testing();
