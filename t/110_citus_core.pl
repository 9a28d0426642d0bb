# Distributed mode on Citus (docs/distributed.md), on 1 coordinator + 2
# workers: evstore.distribute() with events already stored and run twice,
# appends delegated to the worker that owns the stream, shells empty on
# every node, ES020 for calls that reach a node without the stream's shard,
# a cross-node transaction failing cleanly, idempotent retries per stream,
# and a shard move followed by appends that continue versions and keep
# positions increasing in the stream.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CitusCluster;
use IPC::Run;

citus_skip_unless_available();

my ($coord, @workers) = citus_cluster('core');
my ($w1, $w2) = @workers;

# every node runs the same evstore
for my $n ($coord, @workers)
{
	is($n->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'evstore'"),
		'0.3.0', 'evstore is installed on ' . $n->name);
}

# a store that already holds events before it is distributed
$coord->safe_psql('postgres', q{
SELECT evstore.append_event('acct-' || i, 'Opened', jsonb_build_object('i', i))
  FROM generate_series(1, 20) i;
SELECT evstore.append_event('acct-1', 'Deposited', '{"n": 1}');
SELECT evstore.save_snapshot('acct-1', 1, '{"balance": 1}');
});

# refused: on a worker; while a node runs another evstore version
my ($rc, $out, $err) = $w1->psql('postgres', "\\set VERBOSITY verbose\nSELECT evstore.distribute()");
like($err, qr/55000: evstore\.distribute\(\) runs on the coordinator/, 'evstore.distribute() on a worker is refused');
$w2->safe_psql('postgres', q{SET allow_system_table_mods = on;
UPDATE pg_extension SET extversion = '0.2.0' WHERE extname = 'evstore'});
($rc, $out, $err) = $coord->psql('postgres', "\\set VERBOSITY verbose\nSELECT evstore.distribute(shard_count => 8)");
like($err, qr/55000: every node must run evstore 0\.3\.0/, 'a node with another evstore version is refused');
like($err, qr/127\.0\.0\.1:${\ $w2->port} has 0\.2\.0/, 'the error names the node and its version');
is($coord->safe_psql('postgres', "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text LIKE 'evstore.%'"),
	'0', 'and nothing was distributed');
$w2->safe_psql('postgres', q{SET allow_system_table_mods = on;
UPDATE pg_extension SET extversion = '0.3.0' WHERE extname = 'evstore'});

($rc, $out, $err) = $coord->psql('postgres',
	"SELECT evstore.distribute(shard_count => 8)", on_error_die => 0);
is($rc, 0, 'evstore.distribute() succeeds on a store with events') or diag $err;
like($out, qr/8 shards of evstore\.events on 2 workers, 21 events moved/, 'it says what it did');

($rc, $out, $err) = $coord->psql('postgres', "SELECT evstore.distribute(shard_count => 8)");
is($rc, 0, 'evstore.distribute() a second time succeeds (idempotent)') or diag $err;
like($out, qr/0 events moved/, 'and moves nothing the second time');

is($coord->safe_psql('postgres', q{
SELECT string_agg(DISTINCT table_name, ',' ORDER BY table_name) || ' ' || count(*)
  FROM evstore.shards}), 'events,snapshots,streams 24', 'evstore.shards lists the colocated shards');

# the events moved: counted through Citus (routed to the shards)
is($coord->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), '21',
	'the existing events are in the shards');
is($coord->safe_psql('postgres', "SELECT evstore.stream_version('acct-1')"), '1',
	'stream_version of an existing stream, delegated');

# appends through the coordinator, delegated
for my $i (1 .. 30)
{
	my $s = 'acct-' . ($i % 10 + 1);
	$coord->safe_psql('postgres', "SELECT evstore.append_event('$s', 'Deposited', '{\"n\": $i}')");
}
is($coord->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), '51',
	'30 delegated appends are in the shards');
is($coord->safe_psql('postgres', "SELECT version FROM evstore.streams WHERE stream_id = 'acct-1'"),
	'4', 'the streams row of acct-1 has version 4');

# shells: nothing was ever written into them on any node
for my $n ($coord, @workers)
{
	is(citus_shell_rows($n), '0', 'every shell is empty on ' . $n->name);
}

# shard row counts (on the workers) add up to what was appended
my $total = 0;
for my $w (@workers)
{
	my @shards = split /\n/, $w->safe_psql('postgres', qq{
SELECT shard_name FROM evstore.shards WHERE table_name = 'events' AND node_port = ${\ $w->port}});
	for my $sh (@shards)
	{
		$total += $w->safe_psql('postgres', "SELECT count(*) FROM evstore.$sh");
	}
}
is($total, 51, 'the workers\' events shards hold the 51 events');

# the stream's owner and the other worker
my $owner = citus_node_of_stream($coord, 'acct-1', @workers);
my $other = $owner == $w1 ? $w2 : $w1;

# directly on the owning worker: works, also inside a transaction block
is($owner->safe_psql('postgres', q{
BEGIN;
SELECT stream_version FROM evstore.append_event('acct-1', 'Deposited', '{"direct": true}');
COMMIT;}), '5', 'an append on the owning worker, in a transaction block');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.read_stream('acct-1')"), '6',
	'read_stream in a FROM clause with a constant argument on the coordinator is delegated');
is($owner->safe_psql('postgres', "SELECT count(*) FROM evstore.read_stream('acct-1')"), '6',
	'read_stream in a FROM clause on the owning worker');

# non-delegated calls fail with ES020 and write nothing
for my $case (
	[ $coord, "BEGIN; SELECT evstore.append_event('acct-1', 'X', '{}'); COMMIT;", 'append in a transaction block on the coordinator' ],
	[ $coord, "BEGIN; SELECT * FROM evstore.read_stream('acct-1'); COMMIT;", 'read_stream in a transaction block on the coordinator' ],
	# (not tested: a distributed function called with a FROM clause of its
	# own, e.g. FROM (VALUES ...) v(s), crashes the backend in Citus 13.2.2's
	# delegation deparser, for any STABLE STRICT SQL function too)
	[ $other, "BEGIN; SELECT evstore.append_event('acct-1', 'X', '{}'); COMMIT;", 'append in a transaction block on the other worker' ],
	[ $other, "BEGIN; SELECT evstore.delete_stream('acct-1'); COMMIT;", 'delete_stream in a transaction block on the other worker' ])
{
	my ($node, $sql, $what) = @{$case};
	my ($r, $o, $e) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	like($e, qr/ES020: stream "acct-1" is not stored on this node/, "ES020: $what");
	like($e, qr/HINT:  Call the function on its own/, "the error says how to call it ($what)") if $what =~ /coordinator/;
}
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE stream_id = 'acct-1'"),
	'6', 'the refused calls wrote nothing');
for my $n ($coord, @workers)
{
	is(citus_shell_rows($n), '0', 'the shells are still empty on ' . $n->name);
}

# a transaction appending to streams on two nodes fails cleanly
my $s2 = 'acct-1';
for my $i (2 .. 40)
{
	my $n = citus_node_of_stream($coord, "acct-$i", @workers);
	if ($n != $owner) { $s2 = "acct-$i"; last; }
}
isnt($s2, 'acct-1', "$s2 lives on the other worker");
my ($r2, $o2, $e2) = $owner->psql('postgres', qq{\\set VERBOSITY verbose
BEGIN;
SELECT evstore.append_event('acct-1', 'Moved', '{}');
SELECT evstore.append_event('$s2', 'Moved', '{}');
COMMIT;});
like($e2, qr/ES020: stream "$s2" is not stored on this node/,
	'a transaction appending on two nodes fails with ES020');
is($owner->safe_psql('postgres', "SELECT count(*) FROM evstore.read_stream('acct-1') WHERE event_type = 'Moved'"),
	'0', 'and its first append rolled back');
for my $n ($coord, @workers)
{
	is($n->safe_psql('postgres', 'SELECT count(*) FROM pg_prepared_xacts'), '0',
		'nothing is left prepared on ' . $n->name);
}

# append_multi over streams of two nodes: ES020, nothing written
($r2, $o2, $e2) = $owner->psql('postgres', qq{\\set VERBOSITY verbose
SELECT * FROM evstore.append_multi('[{"stream_id": "acct-1", "events": [{"type": "Multi", "data": {}}]},
                                    {"stream_id": "$s2", "events": [{"type": "Multi", "data": {}}]}]')});
like($e2, qr/ES020: stream "$s2" is not stored on this node/, 'append_multi over two nodes fails with ES020');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE event_type = 'Multi'"),
	'0', 'and writes nothing on either node');

# the shells refuse rows: INSERT, COPY
($rc, $out, $err) = $coord->psql('postgres', q{COPY evstore.events FROM PROGRAM 'true'});
like($err, qr/COPY into evstore\.events is not allowed in distributed mode/, 'COPY into the shell is refused');
for my $n ($coord, $owner)
{
	for my $sql (
		q{INSERT INTO evstore.events SELECT 999999, 'acct-1', 99, gen_random_uuid(), 'X', '{}', NULL, now(), 'acct', 0},
		q{INSERT INTO evstore.events VALUES (999999, 'acct-1', 99, gen_random_uuid(), 'X', '{}', NULL, now(), 'acct', 0)},
		q{INSERT INTO evstore.streams VALUES ('acct-1', 'acct', 99, 0, now(), now(), NULL, false)})
	{
		($rc, $out, $err) = $n->psql('postgres', $sql);
		like($err, qr/INSERT on evstore\.(events|streams) is not allowed/,
			'a direct INSERT through Citus is refused on ' . $n->name . ': ' . substr($sql, 0, 40));
	}
}
my $shard_name = $owner->safe_psql('postgres', q{
SELECT shard_name FROM evstore.shards WHERE table_name = 'events' AND hashtext('acct-1') BETWEEN hash_min AND hash_max});
($rc, $out, $err) = $owner->psql('postgres',
	"INSERT INTO evstore.$shard_name VALUES (999999, 'acct-1', 99, gen_random_uuid(), 'X', '{}', NULL, now(), 'acct', 0)");
like($err, qr/INSERT on evstore\.events_\d+ is not allowed/, 'a direct INSERT into a shard is refused');
for my $sql ("UPDATE evstore.$shard_name SET data = '{}'", "DELETE FROM evstore.$shard_name",
	"UPDATE evstore.events SET data = '{}'", "DELETE FROM evstore.streams", 'TRUNCATE evstore.events')
{
	($rc, $out, $err) = $owner->psql('postgres', $sql);
	like($err, qr/(UPDATE|DELETE|TRUNCATE) on evstore\.(events|streams)(_\d+)? is not allowed/,
		"refused on the worker: $sql");
}
($rc, $out, $err) = $owner->psql('postgres', "TRUNCATE evstore.$shard_name");
like($err, qr/ERROR/, 'TRUNCATE of a shard is refused');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE stream_id = 'acct-1'"),
	'6', 'the refused INSERTs, UPDATEs, DELETEs and TRUNCATEs changed nothing');

# idempotency by event id, per stream
my $id = '01890000-0000-7000-8000-000000000001';
my $first = $coord->safe_psql('postgres',
	"SELECT stream_version || ',' || global_position FROM evstore.append_event('acct-2', 'Paid', '{}', NULL, NULL, '$id')");
my $again = $coord->safe_psql('postgres',
	"SELECT stream_version || ',' || global_position FROM evstore.append_event('acct-2', 'Paid', '{}', NULL, NULL, '$id')");
is($again, $first, 'an idempotent retry returns the original result');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE event_id = '$id'"), '1',
	'the retry wrote nothing');
my $v2 = $coord->safe_psql('postgres', "SELECT evstore.stream_version('acct-3')");
my $elsewhere = $coord->safe_psql('postgres',
	"SELECT stream_version FROM evstore.append_event('acct-3', 'Paid', '{}', NULL, NULL, '$id')");
is($elsewhere, $v2 + 1, 'the same id in another stream is a new event (ids are unique per stream)');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE event_id = '$id'"), '2',
	'the id is stored once per stream');

# positions: unique across the cluster, increasing in each stream
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT global_position FROM evstore.events GROUP BY 1 HAVING count(*) > 1) d}),
	'0', 'positions are unique across the cluster');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT stream_id, global_position,
                             lag(global_position) OVER (PARTITION BY stream_id ORDER BY stream_version) AS prev
                        FROM evstore.events) e WHERE prev >= global_position}),
	'0', 'positions increase with the version in every stream');

# a shard move, then appends continue the stream
my $shard = $coord->safe_psql('postgres', q{
SELECT shardid FROM evstore.shards WHERE table_name = 'events' AND hashtext('acct-1') BETWEEN hash_min AND hash_max});
my ($from, $to) = ($owner->port, $other->port);
# push the target's sequence behind the source's: the moved stream's last
# position is then above every position the target would hand out
$owner->safe_psql('postgres', q{
SELECT evstore.append_event('acct-1', 'Bulk', '{}') FROM generate_series(1, 1) });
$owner->safe_psql('postgres', "SELECT evstore.append_events('acct-1', (SELECT jsonb_agg(jsonb_build_object('type', 'Bulk', 'data', '{}'::jsonb)) FROM generate_series(1, 50)))");
my $before = $coord->safe_psql('postgres', q{
SELECT stream_version || ',' || global_position FROM evstore.events WHERE stream_id = 'acct-1' ORDER BY stream_version DESC LIMIT 1});
($rc, $out, $err) = $coord->psql('postgres', qq{
SELECT citus_move_shard_placement($shard, '127.0.0.1', $from, '127.0.0.1', $to, shard_transfer_mode => 'block_writes')});
is($rc, 0, 'citus_move_shard_placement of the stream\'s shard') or diag $err;
$coord->safe_psql('postgres', 'CALL citus_cleanup_orphaned_resources()');
is(citus_node_of_stream($coord, 'acct-1', @workers)->port, $to, 'the stream now lives on the other worker');
my ($bv, $bp) = split /,/, $before;
my $after = $coord->safe_psql('postgres',
	"SELECT stream_version || ',' || global_position FROM evstore.append_event('acct-1', 'AfterMove', '{}')");
my ($av, $ap) = split /,/, $after;
is($av, $bv + 1, 'the append after the move continues the version');
cmp_ok($ap, '>', $bp, 'and its position is above the stream\'s last one');
my $after2 = $coord->safe_psql('postgres',
	"SELECT stream_version || ',' || global_position FROM evstore.append_event('acct-1', 'AfterMove', '{}')");
my ($av2, $ap2) = split /,/, $after2;
ok($av2 == $av + 1 && $ap2 > $ap, 'and the next one too');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT global_position FROM evstore.events GROUP BY 1 HAVING count(*) > 1) d}),
	'0', 'positions are still unique across the cluster');
($rc, $out, $err) = $owner->psql('postgres', "\\set VERBOSITY verbose\nBEGIN; SELECT evstore.append_event('acct-1', 'X', '{}'); COMMIT;");
like($err, qr/ES020/, 'the old owner now refuses the stream (ES020)');
for my $n ($coord, @workers)
{
	is(citus_shell_rows($n), '0', 'the shells are empty after the move on ' . $n->name);
}

# delete and tombstone, delegated through the coordinator
is($coord->safe_psql('postgres', "SELECT stream_version FROM evstore.delete_stream('acct-4')"), '4',
	'delete_stream through the coordinator');
is($coord->safe_psql('postgres', "SELECT evstore.stream_version('acct-4')"), '-1',
	'the deleted stream reads as empty');
is($coord->safe_psql('postgres', "SELECT stream_version FROM evstore.tombstone_stream('acct-5')"), '4',
	'tombstone_stream through the coordinator');
($rc, $out, $err) = $coord->psql('postgres', "\\set VERBOSITY verbose\nSELECT evstore.append_event('acct-5', 'X', '{}')");
like($err, qr/ES002/, 'an append to the tombstoned stream fails with ES002');

# snapshots are distributed too
is($coord->safe_psql('postgres', "SELECT evstore.save_snapshot('acct-2', 1, '{\"b\": 2}')"), 't',
	'save_snapshot through the coordinator');
is($coord->safe_psql('postgres', "SELECT state->>'b' FROM evstore.load_snapshot('acct-2')"), '2',
	'load_snapshot reads it back');
is($coord->safe_psql('postgres', "SELECT stream_version FROM evstore.load_snapshot('acct-1')"), '1',
	'a snapshot saved before distribute() is loaded from its shard');

# an append waits for Citus's shard metadata lock, as Citus's own writes
# do: a shard move holds it (ExclusiveLock, on every node) before its final
# catch-up, so no append can commit into the old placement after that
{
	my $holder = citus_node_of_stream($coord, 'acct-8', @workers);
	my $sh8 = $coord->safe_psql('postgres', q{
SELECT shardid FROM evstore.shards WHERE table_name = 'events' AND hashtext('acct-8') BETWEEN hash_min AND hash_max});
	my $n8 = $coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE stream_id = 'acct-8'");
	my ($lo, $le, $ao, $ae) = ('', '', '', '');
	my $locker = IPC::Run::start(
		[ 'psql', '-X', '-At', '-d', $holder->connstr('postgres'), '-c',
		  "BEGIN; SELECT lock_shard_metadata(7, ARRAY[$sh8]::bigint[]); SELECT pg_sleep(300); COMMIT;" ],
		'>', \$lo, '2>', \$le);
	$holder->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'BEGIN; SELECT lock_shard_metadata%' AND wait_event = 'PgSleep'")
	  or die 'the locker did not start';
	my $app = IPC::Run::start(
		[ 'psql', '-X', '-At', '-d', $holder->connstr('postgres'), '-c',
		  "SELECT evstore.append_event('acct-8', 'AfterLock', '{}')" ],
		'>', \$ao, '2>', \$ae);
	ok($holder->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'SELECT evstore.append_event(''acct-8''%' AND wait_event_type = 'Lock'"),
		'an append waits while the shard\'s metadata lock is held exclusively');
	is($holder->safe_psql('postgres', "SELECT count(*) FROM evstore.read_stream('acct-8')"), $n8,
		'and has written nothing yet');
	$holder->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'BEGIN; SELECT lock_shard_metadata%'");
	$locker->finish;
	$app->finish;
	like($ao, qr/^\(\d+,\d+\)$/m, 'once the lock is released the append goes through');
}

# a shard move by logical replication (Citus's default) while appends run
# through the coordinator: every append that succeeded is stored once, the
# versions have no gap, positions keep increasing in the stream
my $mover = citus_node_of_stream($coord, 'acct-7', @workers);
my $target = $mover == $w1 ? $w2 : $w1;
my $shard7 = $coord->safe_psql('postgres', q{
SELECT shardid FROM evstore.shards WHERE table_name = 'events' AND hashtext('acct-7') BETWEEN hash_min AND hash_max});
my $before7 = $coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE stream_id = 'acct-7'");
my $script = $coord->basedir . '/appends7.sql';
open my $fh, '>', $script or die $!;
print $fh "SELECT evstore.append_event('acct-7', 'During', '{}');\n" for 1 .. 300;
close $fh;
my ($aout, $aerr) = ('', '');
my $appender = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $coord->connstr('postgres'), '-f', $script ],
	'>', \$aout, '2>', \$aerr);
($rc, $out, $err) = $coord->psql('postgres', qq{
SELECT citus_move_shard_placement($shard7, '127.0.0.1', ${\ $mover->port}, '127.0.0.1', ${\ $target->port})});
is($rc, 0, 'a shard move by logical replication while appends run') or diag $err;
$appender->finish;
my $ok7 = () = $aout =~ /^\(\d+,\d+\)$/mg;
my @errs = $aerr =~ /ERROR:  (.*)/g;
my @unexpected = grep { !/stream "acct-7" is not stored on this node|placed on this node but its relations are missing/ } @errs;
is_deeply(\@unexpected, [], 'appends during the move fail only with ES020 (to be retried)');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE stream_id = 'acct-7'"),
	$before7 + $ok7, "every one of the $ok7 appends that succeeded is stored, once");
is($coord->safe_psql('postgres', q{
SELECT count(*) = max(stream_version) + 1 FROM evstore.events WHERE stream_id = 'acct-7'}), 't',
	'the stream\'s versions have no gap');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT global_position, lag(global_position) OVER (ORDER BY stream_version) AS prev
                        FROM evstore.events WHERE stream_id = 'acct-7') e WHERE prev >= global_position}),
	'0', 'and its positions increase');
for my $n ($coord, @workers)
{
	is(citus_shell_rows($n), '0', 'the shells are empty after the logical move on ' . $n->name);
}

done_testing();
