# Rebuilding an async projection (docs/projections.md, "Rebuilding an async
# projection"): evstore.rebuild_projection() and a blue/green
# evstore.start_rebuild(), each in the middle of concurrent appends with
# late commits and rollbacks, leave the async read model equal to the same
# projection run inline: the rebuild moves the projection's checkpoint to
# what it replayed, so the worker applies no event twice and misses none.
# And the idle worker wakes when an append ends (not only on its timer).
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use EvstoreTest;

my $node = evstore_node('async_rebuild', extra_conf => q{
max_connections = 40
max_worker_processes = 16
evstore.async_workers = 2
evstore.async_databases = 'postgres'
evstore.async_batch_size = 40
evstore.async_idle_wait = 20ms
});
my $connstr = $node->connstr('postgres');

# the same counting handler inline and async (counting shows an event
# applied twice); unqualified table names, so a blue/green rebuild's copy
# is found first on the search_path
$node->safe_psql('postgres', q{
CREATE TABLE writers_done (w int);
CREATE TABLE tally_inline (stream_id text PRIMARY KEY, n int NOT NULL, total bigint NOT NULL);
CREATE TABLE tally_async (LIKE tally_inline INCLUDING ALL);
CREATE FUNCTION count_inline(e evstore.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tally_inline VALUES (e.stream_id, 1, coalesce((e.data->>'i')::bigint, 0))
    ON CONFLICT (stream_id) DO UPDATE SET n = tally_inline.n + 1, total = tally_inline.total + excluded.total
$$;
CREATE FUNCTION count_async(e evstore.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tally_async VALUES (e.stream_id, 1, coalesce((e.data->>'i')::bigint, 0))
    ON CONFLICT (stream_id) DO UPDATE SET n = tally_async.n + 1, total = tally_async.total + excluded.total
$$;
CREATE FUNCTION reset_async() RETURNS void LANGUAGE sql AS $$ DELETE FROM tally_async $$;
SELECT evstore.create_projection('inline', 'count_inline(evstore.events)', ARRAY['acct']);
SELECT evstore.create_projection('async', 'count_async(evstore.events)', ARRAY['acct'],
    reset_function => 'reset_async()', async => true);
});

sub run_writers
{
	my ($seed) = @_;
	srand($seed);
	$node->safe_psql('postgres', 'TRUNCATE writers_done');
	my @h;
	for my $file (writer_scripts($node, writers => 4, txns => 150, streams => 20, checked => 0.15))
	{
		my ($out, $err) = ('', '');
		push @h, IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $connstr, '-f', $file],
			'>', \$out, '2>', \$err);
	}
	return @h;
}

sub same_models
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres', q{
		SELECT state = 'running' AND checkpoint >= (SELECT max(global_position) FROM evstore.events)
		  FROM evstore.projections WHERE name = 'async'}),
		"the async projection caught up ($what)");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM tally_inline i FULL JOIN tally_async a USING (stream_id)
		 WHERE (i.*) IS DISTINCT FROM (a.*)}),
		'0', "the async read model equals the inline one ($what)");
	is($node->safe_psql('postgres', 'SELECT sum(n) FROM tally_async'),
		$node->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE category = 'acct'"),
		"every committed event applied exactly once ($what)");
}

# --- rebuild_projection (in one transaction) while the writers and the worker run
my @writers = run_writers(43);
ok($node->poll_query_until('postgres',
		"SELECT checkpoint > 100 FROM evstore.projections WHERE name = 'async'"),
	'the async projection follows the writers');
my $replayed = $node->safe_psql('postgres', q{SELECT evstore.rebuild_projection('async', 0)});
cmp_ok($replayed, '>', 100, 'rebuild_projection replayed history');
ok($node->poll_query_until('postgres',
		"SELECT checkpoint > 300 FROM evstore.projections WHERE name = 'async'"),
	'the worker goes on after the rebuild');
$node->safe_psql('postgres', q{SELECT evstore.rebuild_projection('async', 0)});
$_->finish for @writers;
is($node->safe_psql('postgres', 'SELECT count(*) FROM writers_done'), '4', 'the writers finished');
same_models('after rebuild_projection during appends');

# --- a blue/green rebuild while the writers and the worker run
@writers = run_writers(44);
my $before = $node->safe_psql('postgres', 'SELECT max(global_position) FROM evstore.events');
ok($node->poll_query_until('postgres',
		"SELECT max(global_position) > $before + 200 FROM evstore.events"), 'the writers run');
like($node->safe_psql('postgres',
		q{SELECT evstore.start_rebuild('async', ARRAY['tally_async'::regclass], 30)}),
	qr/^\d+$/, 'a blue/green rebuild of the async projection starts');
ok($node->poll_query_until('postgres', 'SELECT NOT EXISTS (SELECT FROM evstore.projection_rebuild_jobs)'),
	'the blue/green rebuild swapped')
  or diag($node->safe_psql('postgres', 'SELECT * FROM evstore.projection_rebuilds'));
$_->finish for @writers;
is($node->safe_psql('postgres', 'SELECT count(*) FROM writers_done'), '4', 'the writers finished');
cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM evstore.events WHERE category = 'acct'}),
	'>', $replayed + 1000, 'appends ran during both rebuilds');
same_models('after a blue/green rebuild during appends');
is($node->safe_psql('postgres', "SELECT count(*) FROM evstore.projections WHERE last_error IS NOT NULL"),
	'0', 'no projection failed');

# --- the idle worker wakes when an append ends, not on its timer: with an
# idle wait of an hour, an append is still applied
$node->safe_psql('postgres', q{ALTER SYSTEM SET evstore.async_idle_wait = '1h'; SELECT pg_reload_conf();});
# one more round of the worker reads the setting (its old sleep was 20ms)
$node->safe_psql('postgres', q{SELECT pg_sleep(0.5)});
my $last = $node->safe_psql('postgres',
	q{SELECT global_position FROM evstore.append_event('acct-wake', 'Deposited', '{"i": 1}')});
ok($node->poll_query_until('postgres',
		"SELECT checkpoint >= $last FROM evstore.projections WHERE name = 'async'"),
	'an append wakes the idle worker');
$node->safe_psql('postgres', q{SELECT evstore.append_event('acct-wake', 'Deposited', '{"i": 2}')});
same_models('after appends woke the worker');

$node->stop;
done_testing();
