# The evstore output plugin through pg_recvlogical: events appended while it
# runs arrive in commit order; a killed consumer and a crashed server lose
# nothing (at-least-once: duplicates only, deduplicated on global_position).
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use EvstoreTest;

my $node = evstore_node('decoder');
my $connstr = $node->connstr('postgres');
my $out = $node->basedir . '/feed.jsonl';
my $bindir = $node->config_data('--bindir');

# create the slot with the command-line tool
my ($stdout, $stderr);
IPC::Run::run([ "$bindir/pg_recvlogical", '-d', $connstr, '--slot', 'feed',
		'--create-slot', '-P', 'evstore' ], '>', \$stdout, '2>', \$stderr);
is($?, 0, 'pg_recvlogical --create-slot -P evstore works');
is($node->safe_psql('postgres',
		"SELECT plugin FROM pg_replication_slots WHERE slot_name = 'feed'"),
	'evstore', 'the slot uses the evstore plugin');

my $consumer;
sub start_consumer
{
	my ($extra) = @_;
	$consumer = IPC::Run::start(
		[ "$bindir/pg_recvlogical", '-d', $connstr, '--slot', 'feed', '--start',
		  '--no-loop', '-s', '1', '-F', '1', '-o', 'include-transaction=true',
		  @{ $extra || [] }, '-f', $out ],
		'>', \my $o, '2>', \my $e);
}

sub stop_consumer
{
	my ($signal) = @_;
	$consumer->signal($signal);
	$consumer->finish;
}

# the records written so far, decoded
sub records
{
	return () unless -e $out;
	my @r;
	foreach my $line (split /\n/, slurp_file($out))
	{
		next if $line eq '';
		my %h;
		# the few fields we need, without a JSON module
		$h{kind} = $1 if $line =~ /^\{"kind":"(\w+)"/;
		$h{pos} = $1 if $line =~ /^\{"global_position":(\d+)/;
		$h{stream} = $1 if $line =~ /"stream_id":"([^"]*)"/;
		$h{xid} = $1 if $line =~ /"xid":(\d+)/;
		push @r, \%h;
	}
	return @r;
}

sub positions { return map { $_->{pos} // () } records(); }

sub wait_for_positions
{
	my ($n) = @_;
	my %seen;
	foreach (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
	{
		%seen = map { $_ => 1 } positions();
		return scalar(keys %seen) if keys %seen >= $n;
		usleep(100_000);
	}
	return scalar(keys %seen);
}

sub stored_positions
{
	return split /\n/, $node->safe_psql('postgres',
		'SELECT global_position FROM evstore.events ORDER BY global_position');
}

sub append_serial
{
	my ($prefix, $n) = @_;
	foreach my $i (1 .. $n)
	{
		$node->safe_psql('postgres',
			"SELECT evstore.append_event('$prefix-" . ($i % 3) . "', 'Happened', '{\"i\": $i}')");
	}
}

# --- events appended while the consumer runs arrive in commit order
start_consumer();
$node->safe_psql('postgres', 'CREATE TABLE noise (i int)');
append_serial('order', 20);

# commit order differs from position order: s1 draws a position first but
# commits after s2
my $s1 = $node->background_psql('postgres');
my $s2 = $node->background_psql('postgres');
$s1->query_safe("BEGIN; SELECT evstore.append_event('slow-1', 'First', '{}')");
$s2->query_safe("BEGIN; SELECT evstore.append_event('fast-1', 'Second', '{}'); INSERT INTO noise VALUES (1); COMMIT");
$s1->query_safe("COMMIT");
$s1->quit;
$s2->quit;
is(wait_for_positions(22), 22, 'all 22 events arrived while the consumer ran');

my @recs = records();
my @streams = map { $_->{stream} // () } @recs;
is_deeply([ @streams[20, 21] ], [ 'fast-1', 'slow-1' ],
	'events arrive in commit order, not position order');
my @pos = positions();
cmp_ok($pos[20], '>', $pos[21], 'the later-committed event has the smaller position');
is(scalar(grep { ($_->{kind} // '') eq 'begin' } @recs), 22, 'one begin record per transaction');
is(scalar(grep { ($_->{kind} // '') eq 'commit' } @recs), 22, 'one commit record per transaction');
ok(!(grep { ($_->{stream} // '') eq 'noise' } @recs), 'other tables are not emitted');

# --- kill the consumer without a goodbye, append, restart: nothing lost
stop_consumer('KILL');
append_serial('invoice', 30);
start_consumer();
my @stored = stored_positions();
is(wait_for_positions(scalar @stored), scalar @stored,
	'after a killed consumer restarts, every event arrives');
my %count;
$count{$_}++ foreach positions();
is_deeply([ sort { $a <=> $b } keys %count ], \@stored,
	'the feed holds exactly the stored events (deduplicated on global_position)');

# first occurrences follow commit order: serial appends commit in position
# order except the slow/fast pair above
my @first;
my %had;
foreach (positions()) { push @first, $_ unless $had{$_}++; }
my @expected = @stored;
@expected[20, 21] = @expected[21, 20];
is_deeply(\@first, \@expected, 'first occurrences are in commit order');

# --- the server crashes (immediate stop) while the consumer runs
append_serial('ship', 10);
wait_for_positions(scalar(@stored) + 10);
$node->stop('immediate');
$consumer->finish;    # --no-loop: it exits when the connection drops
$node->start;
append_serial('after', 10);
start_consumer();
@stored = stored_positions();
is(wait_for_positions(scalar @stored), scalar @stored,
	'after a server crash and restart, every event arrives');
%count = ();
$count{$_}++ foreach positions();
is_deeply([ sort { $a <=> $b } keys %count ], \@stored,
	'the feed still holds exactly the stored events');
my $dups = grep { $count{$_} > 1 } keys %count;
note("events delivered more than once so far: $dups");

# --- a slot whose transactions are all skipped still moves on: transactions
# without events report progress, and pg_recvlogical confirms what it got
my $before = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres', "INSERT INTO noise VALUES ($_)") foreach 1 .. 20;
ok($node->poll_query_until('postgres',
		"SELECT confirmed_flush_lsn > '$before' FROM pg_replication_slots WHERE slot_name = 'feed'"),
	'the slot confirms past the skipped transactions');

# --- a clean stop (SIGINT) confirms everything: a restart sends nothing new
stop_consumer('INT');
my $lines = () = slurp_file($out) =~ /\n/g;
start_consumer();
$node->poll_query_until('postgres',
	"SELECT active FROM pg_replication_slots WHERE slot_name = 'feed'")
  or die "consumer did not connect";
sleep 2;
stop_consumer('INT');
my $lines_after = () = slurp_file($out) =~ /\n/g;
is($lines_after, $lines, 'after a clean stop, a restart sends no duplicates');

# --- bad options are refused with a clear error
IPC::Run::run([ "$bindir/pg_recvlogical", '-d', $connstr, '--slot', 'feed', '--start',
		'--no-loop', '-o', 'format=xml', '-f', '-' ], '>', \$stdout, '2>', \$stderr);
like($stderr, qr/invalid value "xml" for evstore output plugin option "format"/,
	'a bad option value is reported to pg_recvlogical');
IPC::Run::run([ "$bindir/pg_recvlogical", '-d', $connstr, '--slot', 'feed', '--start',
		'--no-loop', '-o', 'categories', '-f', '-' ], '>', \$stdout, '2>', \$stderr);
like($stderr, qr/option "categories" requires a value/,
	'a list option without a value is refused');
IPC::Run::run([ "$bindir/pg_recvlogical", '-d', $connstr, '--slot', 'feed', '--start',
		'--no-loop', '-o', 'include-transaction', '-o', 'include-metadata=off',
		'--endpos', $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'),
		'-f', '-' ], '>', \$stdout, '2>', \$stderr);
is($?, 0, 'a bool option without a value means true');

$node->stop;
done_testing();
