# read_all_horizon() never moves backwards, across sessions, while writers
# commit, roll back and roll back to savepoints concurrently: whenever one
# call returned before another started, the later one returns at least as
# much.  And every position read_all returned can be acknowledged: it is at
# or below the horizon read right after it.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EvstoreTest;

my $node = evstore_node('fence_monotonic');
$node->safe_psql('postgres', q{
CREATE TABLE writers_done (w int);
CREATE SEQUENCE tick;
CREATE UNLOGGED TABLE seen (reader int, before_t bigint, after_t bigint, h bigint);
CREATE UNLOGGED TABLE unackable (reader int, p bigint, h bigint);
});

srand(12);
my $writers = 4;
my @files = writer_scripts($node, writers => $writers, txns => 150, streams => 20, checked => 0.2,
	preamble => '');
# some writers also roll back to savepoints and append again
for my $w (1 .. 2)
{
	my $sql = "SET client_min_messages = error;\n";
	for my $i (1 .. 150)
	{
		$sql .= "BEGIN;\nSELECT evstore.append_event('sp-$w', 'Kept', '{}');\n";
		$sql .= "SAVEPOINT s;\nSELECT evstore.append_event('sp-$w', 'Undone', '{}');\n";
		$sql .= "ROLLBACK TO SAVEPOINT s;\n";
		$sql .= "SELECT evstore.append_event('sp-$w', 'Again', '{}');\n" if $i % 2;
		$sql .= (rand() < 0.2 ? "ROLLBACK;\n" : "COMMIT;\n");
	}
	$sql .= "INSERT INTO writers_done VALUES (" . ($writers + $w) . ");\n";
	my $file = $node->basedir . "/sp_writer_$w.sql";
	open my $fh, '>', $file or die $!;
	print $fh $sql;
	close $fh;
	push @files, $file;
}

my $readers = 3;
for my $r (1 .. $readers)
{
	my $file = $node->basedir . "/reader_$r.sql";
	open my $fh, '>', $file or die $!;
	print $fh qq{
DO \$\$
DECLARE
  b bigint; h bigint; p bigint; after bigint := 0;
BEGIN
  -- until every writer is done (each statement sees the latest commits)
  WHILE (SELECT count(*) FROM writers_done) < $writers + 2 LOOP
    b := nextval('tick');
    h := evstore.read_all_horizon();
    INSERT INTO seen VALUES ($r, b, nextval('tick'), h);
    SELECT max(global_position) INTO p FROM evstore.read_all(after, 50);
    IF p IS NOT NULL THEN
      after := p;
      h := evstore.read_all_horizon();
      IF p > h THEN INSERT INTO unackable VALUES ($r, p, h); END IF;
    END IF;
  END LOOP;
END \$\$;
};
	close $fh;
	push @files, $file;
}

my $connstr = $node->connstr('postgres');
my @harnesses;
my $i = 0;
for my $f (@files)
{
	$i++;
	push @harnesses,
	  IPC::Run::start([ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=0', '-d', $connstr, '-f', $f ],
		'>', $node->basedir . "/out_$i.log", '2>', $node->basedir . "/err_$i.log");
}
$_->finish for @harnesses;

is($node->safe_psql('postgres', 'SELECT count(*) FROM writers_done'), $writers + 2, 'all writers finished');
# a sequence that only grows never trips the "moved backwards" check
my $refused = 0;
for my $n (1 .. $i)
{
	my $err = slurp_file($node->basedir . "/err_$n.log");
	$refused++ while $err =~ /global_position_seq (moved backwards|has been altered)/g;
}
is($refused, 0, 'no append was refused as out of order');
is($node->safe_psql('postgres', 'SELECT count(DISTINCT reader) FROM seen'), $readers, 'all readers finished');
cmp_ok($node->safe_psql('postgres', 'SELECT count(DISTINCT h) FROM seen'), '>', 20,
	'the readers saw the horizon move');

$node->safe_psql('postgres', q{
CREATE TABLE running AS SELECT after_t, max(h) OVER (ORDER BY after_t) AS mx FROM seen;
CREATE INDEX ON running (after_t);
ANALYZE running;
});
is($node->safe_psql('postgres', q{
SELECT count(*) FROM seen b
WHERE b.h < (SELECT mx FROM running r WHERE r.after_t < b.before_t ORDER BY r.after_t DESC LIMIT 1)}),
	'0', 'no horizon is below one returned before the call started');
is($node->safe_psql('postgres', 'SELECT count(*) FROM unackable'), '0',
	'every position read_all returned is at or below the horizon read after it');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM evstore.events WHERE event_type = 'Undone'}), '0', 'no rolled-back event is stored');
cmp_ok($node->safe_psql('postgres', q{SELECT evstore.read_all_horizon() - max(global_position) FROM evstore.events}),
	'>=', 0, 'at the end the horizon covers every event');

$node->stop;
done_testing();
