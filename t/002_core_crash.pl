# Crash torture: 8 writers append with expected versions (each owns some
# streams and all race on a few shared ones); the postmaster is stopped with
# "immediate" (no shutdown checkpoint, backends killed: crash recovery on
# restart) in the middle of the load.  After restart every append that was
# acknowledged to a client must be there, stream versions must be dense,
# global positions unique, and read_all from 0 must return every event once.
#
# What "acknowledged" means here: each append is a single autocommit
# statement, and PostgreSQL commits the last statement of a simple query
# before it sends CommandComplete, so psql prints a result row only for an
# append whose commit has returned.  The writers' stdout files are the ack
# logs.  fsync = on and synchronous_commit = on (test/evstore.conf turns
# fsync off for speed; it is overridden here), so a returned commit is
# flushed to the WAL.  Honest limit: an immediate stop crashes the server
# processes, not the operating system, so the page cache survives; this
# test proves that evstore's WAL-logged writes and crash recovery lose no
# acknowledged append, not that the disk honours fsync.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(sleep);
use EvstoreTest;

my $writers = 8;
my $stmts_per_writer = 4000;    # far more than fit before the crash
my $own_per_writer = 4;
my $shared_streams = 3;

my $node = evstore_node('crash',
	extra_conf => "max_connections = 40\nfsync = on\nsynchronous_commit = on\n");
is($node->safe_psql('postgres', 'SHOW fsync'), 'on', 'fsync is on for this test');

# Writer scripts (fixed seed).  Own streams: the writer is their only
# writer, so it knows the expected version of every append in advance.
# Shared streams: expected version read in the same statement, so writers
# race and the losers get ES001.  Some appends are batches with ids.
srand(7002);
my $uuid_n = 0;
sub next_uuid
{
	$uuid_n++;
	return sprintf('00000000-0000-4000-8000-%012x', $uuid_n);
}
my @files;
my @acklogs;
for my $w (1 .. $writers)
{
	my @own_version = (-1) x $own_per_writer;
	my $sql = "SET client_min_messages = error;\n\\set VERBOSITY verbose\n";
	for my $i (1 .. $stmts_per_writer)
	{
		my $r = rand();
		if ($r < 0.25)
		{
			my $s = 'shared-' . int(rand($shared_streams));
			my $id = next_uuid();
			$sql .= "SELECT 'ACK', '$s', (r).stream_version, (r).global_position, '$id' "
			  . "FROM (SELECT evstore.append_event('$s', 'Raced', '{\"w\":$w,\"i\":$i}', NULL, "
			  . "evstore.stream_version('$s'), '$id') AS r) x;\n";
		}
		elsif ($r < 0.40)
		{
			my $k = int(rand($own_per_writer));
			my $s = "own$w-$k";
			my @ids = map { next_uuid() } 1 .. 3;
			my $events = join(',',
				map { "{\"type\":\"Batched\",\"data\":{\"w\":$w,\"i\":$i},\"id\":\"$_\"}" } @ids);
			$sql .= "SELECT 'ACK', '$s', (r).stream_version, (r).global_position, '"
			  . join(' ', @ids)
			  . "' FROM (SELECT evstore.append_events('$s', '[$events]', $own_version[$k]) AS r) x;\n";
			$own_version[$k] += 3;
		}
		else
		{
			my $k = int(rand($own_per_writer));
			my $s = "own$w-$k";
			my $id = next_uuid();
			$sql .= "SELECT 'ACK', '$s', (r).stream_version, (r).global_position, '$id' "
			  . "FROM (SELECT evstore.append_event('$s', 'Owned', '{\"w\":$w,\"i\":$i}', NULL, "
			  . "$own_version[$k], '$id') AS r) x;\n";
			$own_version[$k] += 1;
		}
	}
	my $file = $node->basedir . "/writer_$w.sql";
	open my $fh, '>', $file or die $!;
	print $fh $sql;
	close $fh;
	push @files, $file;
	push @acklogs, $node->basedir . "/ack_$w.log";
}

sub acked_lines
{
	my $n = 0;
	for my $f (@acklogs)
	{
		next unless -e $f;
		open my $fh, '<', $f or die $!;
		$n += grep { /^ACK\|/ } <$fh>;
		close $fh;
	}
	return $n;
}

my $connstr = $node->connstr('postgres');
my @harnesses;
for my $w (1 .. $writers)
{
	push @harnesses,
	  IPC::Run::start(
		[ 'psql', '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-d', $connstr, '-f', $files[ $w - 1 ] ],
		'>', $acklogs[ $w - 1 ], '2>', $node->basedir . "/err_$w.log");
}

# let the load run until a good number of appends are acknowledged
my $deadline = time + 60;
sleep(0.2) while acked_lines() < 4000 && time < $deadline;
my $before_crash = acked_lines();
cmp_ok($before_crash, '>=', 4000, "writers were acknowledged $before_crash appends before the crash");

$node->stop('immediate');
$_->finish for @harnesses;    # clients see the connection drop and exit
$node->start;

# every writer ended because of the crash, not because its script ran out
my $lost_conn = 0;
for my $w (1 .. $writers)
{
	my $err = slurp_file($node->basedir . "/err_$w.log");
	$lost_conn++ if $err =~ /terminat|connection|server closed/i;
}
is($lost_conn, $writers, 'every writer was cut off by the crash mid-load');
my $conflicts = 0;
$conflicts += () = slurp_file($node->basedir . "/err_$_.log") =~ /ERROR:  ES001/g for 1 .. $writers;
cmp_ok($conflicts, '>', 0, "writers raced on the shared streams ($conflicts ES001 conflicts)");
my $other = 0;
$other += () = slurp_file($node->basedir . "/err_$_.log") =~ /ERROR:  (?!ES001)/g for 1 .. $writers;
is($other, 0, 'no append failed with anything but ES001');

# parse the ack logs
my @acks;
for my $w (1 .. $writers)
{
	open my $fh, '<', $acklogs[ $w - 1 ] or die $!;
	while (my $line = <$fh>)
	{
		chomp $line;
		next unless $line =~ /^ACK\|/;
		my (undef, $stream, $version, $pos, $ids) = split /\|/, $line;
		push @acks, [ $w, $stream, $version, $pos, $ids ];
	}
	close $fh;
}
my $acked_events = 0;
$acked_events += scalar(split / /, $_->[4]) for @acks;
cmp_ok(scalar(@acks), '>=', $before_crash, 'ack logs read back: ' . scalar(@acks) . " appends, $acked_events events");

# load the acks into a table and compare with the store
my $copy = join("\n", map { join("\t", @$_) } @acks) . "\n";
$node->safe_psql('postgres',
	"CREATE TABLE acks (writer int, stream_id text, version bigint, pos bigint, ids text)");
my $ack_file = $node->basedir . '/acks.tsv';
open my $afh, '>', $ack_file or die $!;
print $afh $copy;
close $afh;
$node->safe_psql('postgres', "COPY acks FROM '$ack_file'");
$node->safe_psql('postgres', q{
CREATE TABLE acked_events AS
SELECT a.writer, a.stream_id, a.version - (n - o) AS version,
       CASE WHEN o = n THEN a.pos END AS pos, id::uuid AS event_id
FROM acks a, LATERAL (SELECT count(*) OVER () AS n, id, o
                      FROM unnest(string_to_array(a.ids, ' ')) WITH ORDINALITY u(id, o)) u
});

is($node->safe_psql('postgres', 'SELECT count(*) FROM acked_events'), $acked_events,
	'every acknowledged event id is accounted for');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM acked_events a
	LEFT JOIN evstore.events e ON e.event_id = a.event_id
	WHERE e.event_id IS NULL}), '0', 'no acknowledged event was lost in the crash');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM acked_events a
	JOIN evstore.events e ON e.event_id = a.event_id
	WHERE e.stream_id <> a.stream_id OR e.stream_version <> a.version
	   OR (a.pos IS NOT NULL AND e.global_position <> a.pos)}), '0',
	'each acknowledged event is at the stream, version and global position reported to the client');

# unacknowledged but committed events: at most the one append per writer
# whose commit was in flight when the server died
my $unacked = $node->safe_psql('postgres', q{
	SELECT count(DISTINCT (e.stream_id, e.recorded_at)) FROM evstore.events e
	LEFT JOIN acked_events a ON a.event_id = e.event_id WHERE a.event_id IS NULL});
cmp_ok($unacked, '<=', $writers, "at most one in-flight append per writer committed without an ack ($unacked)");

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT stream_id FROM evstore.events GROUP BY stream_id
	HAVING min(stream_version) <> 0 OR max(stream_version) <> count(*) - 1
	    OR count(DISTINCT stream_version) <> count(*)) s}), '0',
	'stream versions are 0..n with no gap and no duplicate');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.streams st
	LEFT JOIN (SELECT stream_id, max(stream_version) AS v FROM evstore.events GROUP BY stream_id) e
	  USING (stream_id)
	WHERE e.v IS DISTINCT FROM st.version}), '0', 'evstore.streams agrees with the events after recovery');
is($node->safe_psql('postgres',
	'SELECT count(*) - count(DISTINCT global_position) FROM evstore.events'), '0',
	'global positions are unique');
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.appenders()'), '0',
	'the read_all fence starts empty after the crash');

# read_all from 0, page by page, returns everything once, in order
$node->safe_psql('postgres', q{
CREATE TABLE readall AS SELECT 0::bigint AS pos WHERE false;
DO $$
DECLARE cp bigint := 0; r record; got int;
BEGIN
    LOOP
        got := 0;
        FOR r IN SELECT global_position FROM evstore.read_all(cp, 500) LOOP
            IF r.global_position <= cp THEN RAISE 'read_all went backwards at %', cp; END IF;
            INSERT INTO readall VALUES (r.global_position);
            cp := r.global_position; got := got + 1;
        END LOOP;
        EXIT WHEN got = 0;
    END LOOP;
END $$;
});
my $total = $node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events');
cmp_ok($total, '>=', $acked_events, "$total events stored");
is($node->safe_psql('postgres', 'SELECT count(*) FROM readall'), $total,
	'read_all from 0 returns as many events as are stored');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM readall r FULL JOIN evstore.events e ON e.global_position = r.pos
	WHERE r.pos IS NULL OR e.global_position IS NULL}), '0',
	'read_all from 0 returns every stored event exactly once');

# the store keeps working after recovery: versions continue where they were
my ($s, $v) = split /\|/, $node->safe_psql('postgres',
	"SELECT stream_id, version FROM evstore.streams WHERE stream_id LIKE 'own1-%' ORDER BY stream_id LIMIT 1");
is($node->safe_psql('postgres',
	"SELECT (evstore.append_event('$s', 'AfterCrash', '{}', NULL, $v)).stream_version"),
	$v + 1, 'appending with the recovered expected version works');
cmp_ok($node->safe_psql('postgres', 'SELECT evstore.read_all_horizon() >= max(global_position) FROM evstore.events'),
	'eq', 't', 'the read_all horizon covers every stored event');

$node->stop;
done_testing();
