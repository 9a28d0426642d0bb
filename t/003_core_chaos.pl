# Subscription under chaos: writers with random commit delays, rollbacks
# and ES001 conflicts, plus a long unrelated transaction (it holds an xid
# and has written to another table) kept open for the whole run.  A poller
# follows read_all, storing what it sees and checkpointing its position in a
# table as it goes; its backend is terminated twice and the poller is
# restarted from its checkpoint.  At the end it has seen exactly the
# committed events (at least once; exactly once after dedupe on
# global_position), every stream in version order, and it caught up with
# the end of the log while the unrelated transaction was still open.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(sleep time);
use EvstoreTest;

my $writers = 6;
my $txns_per_writer = 250;
my $node = evstore_node('chaos', extra_conf => "max_connections = 40\n");

$node->safe_psql('postgres', q{
CREATE TABLE unrelated (x int);
CREATE TABLE seen (seq bigserial, run int, pos bigint, stream_id text, version bigint);
CREATE TABLE checkpoint (id int PRIMARY KEY, pos bigint NOT NULL);
INSERT INTO checkpoint VALUES (1, 0);
CREATE TABLE writers_done (w int);
-- The poller: read a page, store it, commit; then move the checkpoint and
-- commit again.  Killed between the two commits, it redelivers a page
-- (at-least-once); killed anywhere else, it resumes exactly.
CREATE PROCEDURE poll(run int, writers int) LANGUAGE plpgsql AS $$
DECLARE
    cp bigint;
    last bigint;
    got int;
    r record;
    finished boolean;
BEGIN
    SELECT pos INTO cp FROM checkpoint WHERE id = 1;
    LOOP
        SELECT count(*) = writers INTO finished FROM writers_done;
        got := 0;
        last := cp;
        FOR r IN SELECT * FROM evstore.read_all(cp, 40) LOOP
            INSERT INTO seen (run, pos, stream_id, version)
                VALUES (run, r.global_position, r.stream_id, r.stream_version);
            last := r.global_position;
            got := got + 1;
        END LOOP;
        COMMIT;
        PERFORM pg_sleep(0.003);
        UPDATE checkpoint SET pos = last WHERE id = 1;
        cp := last;
        COMMIT;
        -- done when every writer had finished before this poll, the poll
        -- found nothing, and the checkpoint is at the end of the log
        EXIT WHEN finished AND got = 0
             AND cp >= (SELECT coalesce(max(global_position), 0) FROM evstore.events);
        PERFORM pg_sleep(0.002);
    END LOOP;
END $$;
});

# the long unrelated transaction: an xid, a write, and then it just sits
my $long = $node->background_psql('postgres', on_error_stop => 1);
$long->query_safe('BEGIN');
my $long_xid = $long->query_safe('SELECT txid_current()');
$long->query_safe('INSERT INTO unrelated VALUES (1)');
my $long_pid = $long->query_safe('SELECT pg_backend_pid()');

srand(7003);
my @files = writer_scripts($node, writers => $writers, txns => $txns_per_writer,
	streams => 10, checked => 0.2, read_then_wait => 1,
	preamble => "\\set VERBOSITY verbose\n");

my $connstr = $node->connstr('postgres') . ' application_name=poller';
my $plain_connstr = $node->connstr('postgres');
my @pollers;
my @poll_err;
sub start_poller
{
	my ($run) = @_;
	my ($out, $err) = ('', '');
	push @poll_err, \$err;
	push @pollers,
	  IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr,
			'-c', "CALL poll($run, $writers)" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(240));
}

sub seen_count
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM seen');
}

sub wait_seen_above
{
	my ($n) = @_;
	my $deadline = time + 120;
	sleep(0.05) while seen_count() <= $n && time < $deadline;
	return seen_count() > $n;
}

# kill the poller's backend (found by its application_name; only the
# poller uses it) and wait for the psql we started to exit
sub kill_poller
{
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE application_name = 'poller'");
	return 0 unless $pid =~ /^\d+$/;
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	$pollers[-1]->finish;
	return $pollers[-1]->result != 0;
}

start_poller(1);
my @harnesses;
my @writer_err;
for my $file (@files)
{
	my ($out, $err) = ('', '');
	push @writer_err, \$err;
	push @harnesses,
	  IPC::Run::start([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $plain_connstr, '-f', $file ],
		'>', \$out, '2>', \$err);
}

ok(wait_seen_above(100), 'first poller made progress');
ok(kill_poller(), 'first poller killed mid-run');
my $seen1 = seen_count();
start_poller(2);
ok(wait_seen_above($seen1 + 100), 'second poller resumed from its checkpoint and made progress');
ok(kill_poller(), 'second poller killed mid-run');
start_poller(3);

$_->finish for @harnesses;
my $writers_done_at = time;
ok($pollers[-1]->finish, 'third poller caught up and finished cleanly') or diag(${ $poll_err[-1] });
my $catch_up = time - $writers_done_at;

# the unrelated transaction is still open: it did not stall the poller
is($node->safe_psql('postgres',
	"SELECT state || ' ' || (backend_xid::text = '$long_xid') FROM pg_stat_activity WHERE pid = $long_pid"),
	'idle in transaction true',
	sprintf('the long transaction (xid %s) was open the whole time; the poller caught up %.1fs after the writers', $long_xid, $catch_up));
cmp_ok($node->safe_psql('postgres',
	'SELECT evstore.read_all_horizon() >= max(global_position) FROM evstore.events'),
	'eq', 't', 'the read_all horizon is at the end of the log despite the open transaction');
$long->query_safe('COMMIT');
$long->quit;

my $committed = $node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events');
cmp_ok($committed, '>', $writers * $txns_per_writer / 2, "writers committed $committed events");
my $conflicts = 0;
$conflicts += () = $$_ =~ /ERROR:  ES001/g for @writer_err;
cmp_ok($conflicts, '>', 0, "writers hit $conflicts ES001 conflicts");
my $other_errors = 0;
$other_errors += () = $$_ =~ /ERROR:  (?!ES001|25P02)/g for @writer_err;
is($other_errors, 0, 'writers saw no error other than ES001 (and the aborted-transaction errors after it)');
my $gaps = $node->safe_psql('postgres', 'SELECT max(global_position) - count(*) FROM evstore.events');
cmp_ok($gaps, '>', 0, "rollbacks and conflicts left $gaps unused positions");

is($node->safe_psql('postgres', 'SELECT count(DISTINCT run) FROM seen'), '3', 'three poller runs delivered events');
my $dups = $node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT pos) FROM seen');
note("redelivered after kills (at-least-once): $dups");
is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT pos FROM seen GROUP BY pos HAVING count(DISTINCT run) = 1 AND count(*) > 1) d'),
	'0', 'within one poller run no event was delivered twice');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.events e FULL JOIN (SELECT DISTINCT pos FROM seen) s ON s.pos = e.global_position
	WHERE s.pos IS NULL OR e.global_position IS NULL}),
	'0', 'after dedupe on global_position the poller saw exactly the committed events');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM seen s JOIN evstore.events e ON e.global_position = s.pos
	WHERE e.stream_id <> s.stream_id OR e.stream_version <> s.version}),
	'0', 'every delivery carried the stored stream and version');
is($node->safe_psql('postgres', q{
	WITH first AS (SELECT DISTINCT ON (pos) seq, pos, stream_id, version FROM seen ORDER BY pos, seq)
	SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM first) s
	WHERE version <> coalesce(prev + 1, 0)}),
	'0', 'per stream, first deliveries came in version order from 0 with no gaps');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT run, pos, lag(pos) OVER (PARTITION BY run ORDER BY seq) AS prev FROM seen) s
	WHERE pos <= prev}),
	'0', 'within each run positions arrived strictly increasing');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT run, min(pos) AS lo FROM seen GROUP BY run) a
	JOIN (SELECT run, max(pos) AS hi FROM seen GROUP BY run) b ON b.run = a.run - 1
	WHERE a.lo > (SELECT min(global_position) FROM evstore.events e WHERE e.global_position > b.hi)}),
	'0', 'each restarted run resumed at or before the first event its predecessor had not stored');
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.appenders()'), '0', 'no appender left in the fence');

$node->stop;
done_testing();
