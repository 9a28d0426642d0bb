# evstore.stats seen from a monitoring session: another backend's open
# appending transaction shows as horizon lag (positions and seconds) and as
# the oldest appender; counters are per database; every query of
# docs/postgres_exporter.yml runs as a pg_monitor member.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('stats');
$node->safe_psql('postgres', q{
	CREATE ROLE exporter LOGIN IN ROLE pg_monitor;
	GRANT USAGE ON SCHEMA evstore TO exporter;
	SELECT evstore.append_event('order-1', 'OrderPlaced', '{}');
	SELECT evstore.create_subscription('billing', ARRAY['order']);
});

# an appending transaction left open in another session
my $open = $node->background_psql('postgres', on_error_stop => 1);
$open->query_safe('BEGIN');
$open->query_safe(q{SELECT evstore.append_event('order-2', 'OrderPlaced', '{}')});
my $open_pid = $open->query_safe('SELECT pg_backend_pid()');
$node->safe_psql('postgres', q{SELECT evstore.append_event('order-3', 'OrderPlaced', '{}')});
$node->safe_psql('postgres', 'SELECT pg_sleep(1.1)');

is($node->safe_psql('postgres', q{
	SELECT last_position || ' ' || horizon || ' ' || horizon_lag_positions || ' ' ||
	       appenders || ' ' || (oldest_appender_pid = } . $open_pid . q{) || ' ' ||
	       (horizon_lag_seconds >= 1) || ' ' || subscription_max_lag
	FROM evstore.stats}, extra_params => [ '-U', 'exporter' ]),
	'3 1 2 1 true true 1',
	'an open appender in another session: horizon lag in positions and seconds, its pid');
is($node->safe_psql('postgres', q{SELECT name || ' ' || lag_positions FROM evstore.subscription_lag},
		extra_params => [ '-U', 'exporter' ]),
	'billing 1', 'subscription lag stops at the horizon');

$open->query_safe('COMMIT');
$open->quit;
is($node->safe_psql('postgres', q{
	SELECT horizon_lag_positions || ' ' || horizon_lag_seconds || ' ' || appenders || ' ' ||
	       subscription_max_lag
	FROM evstore.stats}), '0 0 0 3', 'after the commit nothing is held back');

# counters are per database
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION evstore');
$node->safe_psql('other', q{SELECT evstore.append_event('x-1', 'T', '{}')});
is($node->safe_psql('other', 'SELECT appends FROM evstore.stats'), '1', 'the other database counts its own appends');
is($node->safe_psql('postgres', 'SELECT appends FROM evstore.stats'), '3', 'this one its own');
$node->safe_psql('other', 'SELECT evstore.stats_reset()');
is($node->safe_psql('postgres', 'SELECT appends FROM evstore.stats'), '3', 'a reset in one database leaves the others');

# the ready query file for postgres_exporter
my $yml = slurp_file('docs/postgres_exporter.yml');
my @queries = $yml =~ /^  query: \|\n((?:    .*\n)+)/mg;
is(scalar(@queries), 3, 'docs/postgres_exporter.yml has its three queries');
$node->safe_psql('postgres', q{
	GRANT SELECT ON evstore.projections TO exporter;
	GRANT EXECUTE ON FUNCTION evstore.projection_stats(), evstore.projection_async_status(),
	    evstore.projection_rebuild_progress() TO exporter;
	GRANT SELECT ON evstore.projection_rebuilds TO exporter;
});
for my $q (@queries)
{
	my ($name) = $q =~ /FROM (evstore\.\w+)/;
	my ($rc, $out, $err) = $node->psql('postgres', $q, extra_params => [ '-U', 'exporter' ]);
	is($rc . $err, '0', "exporter query on $name runs as a pg_monitor member");
}

$node->stop;
done_testing();
