# Waiting reads (read_all and subscription_fetch with a timeout): a waiting
# subscription_fetch holds no lock on its member's row and wakes when an
# append commits; a fast shutdown and the postmaster's death end a wait at
# once (the waits here are of an hour, the harness gives up long before).
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EvstoreTest;

my $node = evstore_node('read_all_wait');
my $connstr = $node->connstr('postgres');
$node->safe_psql('postgres', q{
	SELECT evstore.append_event('order-1', 'Placed', '{}');
	SELECT evstore.create_subscription('orders', ARRAY['order']);
	SELECT evstore.subscription_ack('orders', 0, 1);
});

# a psql running one statement in the background
sub start_waiter
{
	my ($sql) = @_;
	my %w = (out => '', err => '');
	$w{h} = IPC::Run::start([ 'psql', '-X', '-q', '-A', '-t', '-d', $connstr, '-c', $sql ],
		'>', \$w{out}, '2>', \$w{err}, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return \%w;
}

# until a backend other than ours sleeps in evstore's wait
sub await_waiting
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres', q{
		SELECT EXISTS (SELECT FROM pg_stat_activity
		               WHERE wait_event_type = 'Extension' AND state = 'active'
		                 AND query LIKE '%timeout%' AND pid <> pg_backend_pid())}),
		"$what is waiting");
}

# --- a waiting subscription_fetch
my $w = start_waiter(q{SELECT global_position FROM evstore.subscription_fetch('orders', 0, 10, 'c1', timeout => '1 hour')});
await_waiting('subscription_fetch');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	WHERE a.wait_event_type = 'Extension' AND l.locktype IN ('tuple', 'transactionid')}),
	'0', 'the waiting fetch holds no row lock and no transaction id');
is($node->safe_psql('postgres', q{
	UPDATE evstore.subscription_checkpoints SET updated_at = now()
	WHERE subscription = 'orders' AND member = 0 RETURNING member}),
	'0', 'the member\'s row can be updated while the fetch waits');
$node->safe_psql('postgres', q{SELECT evstore.append_event('order-2', 'Placed', '{}')});
$w->{h}->finish;
is($w->{out}, "2\n", 'the fetch returns the event committed while it waited');
is($node->safe_psql('postgres', q{SELECT consumer FROM evstore.subscription_checkpoints WHERE subscription = 'orders'}),
	'c1', 'and took the lease for its consumer');

# --- a fast shutdown ends a wait at once
$w = start_waiter(q{SELECT count(*) FROM evstore.read_all(2, timeout => '1 hour')});
await_waiting('read_all');
$node->stop('fast');
$w->{h}->finish;
like($w->{err}, qr/terminating connection due to administrator command/,
	'a fast shutdown terminates the waiting read_all');
$node->start;

# --- so does the postmaster's death
$w = start_waiter(q{SELECT count(*) FROM evstore.read_all(2, timeout => '1 hour')});
await_waiting('read_all');
my $postmaster = $node->{_pid};
$node->kill9;
$w->{h}->finish;
# the killed postmaster's process must be gone before a new one can start
for (my $i = 0; $i < 10 * $PostgreSQL::Test::Utils::timeout_default && kill(0, $postmaster); $i++)
{
	select(undef, undef, undef, 0.1);
}
isnt($w->{err}, '', 'the waiting read_all ends (its backend exits) when the postmaster dies');
# (and its other children, which leave the shared memory as they exit)
my $started = 0;
for (my $i = 0; $i < 10 * $PostgreSQL::Test::Utils::timeout_default && !$started; $i++)
{
	$started = $node->start(fail_ok => 1);
	select(undef, undef, undef, 0.1) unless $started;
}
ok($started, 'the server starts again');
is($node->safe_psql('postgres', q{SELECT string_agg(global_position::text, ',') FROM evstore.read_all(0, timeout => '1 hour')}),
	'1,2', 'after the restart, read_all with a timeout returns what is there at once');

$node->stop;
done_testing();
