# A durable subscription survives a server crash and restart: its
# checkpoint is kept, nothing is skipped, and unacknowledged events are
# delivered again (at-least-once).
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use EvstoreTest;

my $node = evstore_node('lcrestart');
$node->safe_psql('postgres', q{
	SELECT evstore.create_subscription('shipper', ARRAY['cart'], NULL, 1, 0, '8 seconds');
	CREATE TABLE seen (global_position bigint, stream_id text, stream_version bigint);
	SELECT evstore.append_event('cart-' || (i % 3), 'ItemAdded', jsonb_build_object('i', i))
	  FROM generate_series(1, 10) i;
	SELECT evstore.append_event('other-1', 'Noise', '{}');
});

# One poll of a consumer: fetch, record, acknowledge, in one transaction.
sub poll_and_ack
{
	my ($consumer, $max) = @_;
	return $node->safe_psql('postgres', qq{
		BEGIN;
		CREATE TEMP TABLE batch ON COMMIT DROP AS
		  SELECT * FROM evstore.subscription_fetch('shipper', 0, $max, '$consumer');
		INSERT INTO seen SELECT global_position, stream_id, stream_version FROM batch;
		SELECT count(*) FROM batch;
		SELECT evstore.subscription_ack('shipper', 0, max(global_position), '$consumer') FROM batch HAVING count(*) > 0;
		COMMIT;
	});
}

like(poll_and_ack('w1', 4), qr/^4/, 'w1 processed and acknowledged 4 events');
my $acked = $node->safe_psql('postgres',
	"SELECT acked_position FROM evstore.subscriptions WHERE name = 'shipper'");
is($acked, $node->safe_psql('postgres', 'SELECT max(global_position) FROM seen'),
	'the checkpoint is the last processed position');

# w1 fetches and processes 3 more events but crashes before acknowledging
$node->safe_psql('postgres', q{
	INSERT INTO seen SELECT global_position, stream_id, stream_version
	FROM evstore.subscription_fetch('shipper', 0, 3, 'w1');
});
$node->stop('immediate');
$node->start;

is($node->safe_psql('postgres', "SELECT acked_position FROM evstore.subscriptions WHERE name = 'shipper'"),
	$acked, 'the checkpoint survives the crash');
$node->safe_psql('postgres', q{
	SELECT evstore.append_event('cart-' || (i % 3), 'ItemAdded', jsonb_build_object('i', i))
	  FROM generate_series(11, 15) i;
});

# w1's lease was durable: w2 must wait for it to expire
is($node->safe_psql('postgres', "SELECT count(*) FROM evstore.subscription_fetch('shipper', 0, 100, 'w2')"),
	'0', 'another consumer gets nothing while the lease of the crashed one runs');
my $waited = 0;
while ($node->safe_psql('postgres',
		"SELECT consumer IS NOT NULL FROM evstore.subscriptions WHERE name = 'shipper'") eq 't'
	&& $waited++ < 200)
{
	usleep(100_000);
}

# w2 takes over and drains the subscription
my $rounds = 0;
while ($rounds++ < 20)
{
	my $n = (split /\n/, poll_and_ack('w2', 4))[0];
	last if $n == 0;
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.events e WHERE e.category = 'cart'
	  AND NOT EXISTS (SELECT FROM seen s WHERE s.global_position = e.global_position)}),
	'0', 'nothing was skipped');
is($node->safe_psql('postgres', q{SELECT count(*) FROM seen WHERE stream_id NOT LIKE 'cart-%'}),
	'0', 'only the subscribed category was delivered');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT global_position FROM seen GROUP BY 1 HAVING count(*) > 1) d}),
	'3', 'exactly the three unacknowledged events were delivered again');
is($node->safe_psql('postgres', q{
	SELECT bool_and(ok) FROM (
	  SELECT stream_version > lag(stream_version, 1, -1::bigint)
	           OVER (PARTITION BY stream_id ORDER BY global_position) AS ok
	  FROM (SELECT DISTINCT global_position, stream_id, stream_version FROM seen) d) s}),
	't', 'each stream was delivered in order');
is($node->safe_psql('postgres', q{
	SELECT acked_position = (SELECT max(global_position) FROM evstore.events WHERE category = 'cart')
	       AND lag = 0
	FROM evstore.subscriptions WHERE name = 'shipper'}),
	't', 'the checkpoint reached the last event and the lag is zero');

$node->stop;
done_testing();
