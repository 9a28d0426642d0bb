# Stress: concurrent writers with random commit delays, rollbacks and
# version conflicts, and a poller that follows read_all with a checkpoint.
# The poller must end up with exactly the committed events, each once,
# with every stream's events in version order.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EvstoreTest;

my $writers = 6;
my $txns_per_writer = 150;
my $node = evstore_node('stress', extra_conf => "max_connections = 40\n");

$node->safe_psql('postgres', q{
CREATE TABLE seen (seq bigserial, pos bigint, stream_id text, version bigint);
CREATE TABLE writers_done (w int);
CREATE TABLE polls (n int);
CREATE PROCEDURE poll(writers int) LANGUAGE plpgsql AS $$
DECLARE
    checkpoint bigint := 0;
    got int;
    r record;
    finished boolean;
BEGIN
    LOOP
        SELECT count(*) = writers INTO finished FROM writers_done;
        got := 0;
        FOR r IN SELECT * FROM evstore.read_all(checkpoint, 50) LOOP
            INSERT INTO seen (pos, stream_id, version) VALUES (r.global_position, r.stream_id, r.stream_version);
            checkpoint := r.global_position;
            got := got + 1;
        END LOOP;
        INSERT INTO polls VALUES (got);
        COMMIT;
        -- all writers had finished before this poll started and it found nothing new
        EXIT WHEN finished AND got = 0;
        PERFORM pg_sleep(0.002);
    END LOOP;
END $$;
});

# writer scripts: random streams (shared between writers), random delays
# before commit, 10% rollbacks, some batches and some expected versions
srand(42);
my @files = writer_scripts($node, writers => $writers, txns => $txns_per_writer,
	streams => 12, checked => 0.15);

my $connstr = $node->connstr('postgres');
my ($pout, $perr) = ('', '');
my $poller = IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-c', "CALL poll($writers)"],
	'>', \$pout, '2>', \$perr);
my @harnesses;
for my $file (@files)
{
	my ($out, $err) = ('', '');
	push @harnesses, IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $connstr, '-f', $file],
		'>', \$out, '2>', \$err);
}
$_->finish for @harnesses;
ok($poller->finish, 'poller finished cleanly') or diag($perr);

my $committed = $node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events');
my $seen = $node->safe_psql('postgres', 'SELECT count(*) FROM seen');
cmp_ok($committed, '>', $writers * $txns_per_writer / 2, "writers committed $committed events");
is($seen, $committed, 'the poller saw as many events as were committed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM (SELECT pos FROM seen GROUP BY pos HAVING count(*) > 1) d'),
	'0', 'no event was delivered twice');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.events e FULL JOIN seen s ON s.pos = e.global_position
	WHERE s.pos IS NULL OR e.global_position IS NULL}),
	'0', 'the poller saw exactly the committed events');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM seen) s
	WHERE prev IS NOT NULL AND version <> prev + 1}),
	'0', 'each stream arrived in version order with no gaps');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.streams st
	WHERE st.version + 1 <> (SELECT count(*) FROM evstore.events e WHERE e.stream_id = st.stream_id)}),
	'0', 'stream versions are dense: no repeats, no skips');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT pos, lag(pos) OVER (ORDER BY seq) AS prev FROM seen) s WHERE pos <= prev}),
	'0', 'positions arrived strictly increasing');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM polls WHERE n > 0'), '>', 5,
	'the poller ran concurrently with the writers');
my $rolled_back_gaps = $node->safe_psql('postgres',
	q{SELECT max(global_position) - count(*) FROM evstore.events});
cmp_ok($rolled_back_gaps, '>', 0, "rollbacks left $rolled_back_gaps gaps in positions, and none was waited on forever");
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.appenders()'), '0', 'no appender left in the fence');

$node->stop;
done_testing();
