# ALTER EXTENSION evstore UPDATE from every released version: an upgraded
# database keeps its events, keeps working, and ends up with exactly the
# schema of a fresh install.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('upgrade', no_extension => 1);
my ($default) = slurp_file('evstore.control') =~ /default_version = '([^']+)'/;
my @released = map { m{history/evstore--(.+)\.sql$} ? $1 : () } glob('history/evstore--*.sql');
ok(@released > 0, 'there is at least one released version to upgrade from');

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION evstore');
my $fresh = catalog_description($node, 'fresh');
like($fresh, qr/evstore\.events/, 'fresh install describes its objects');
my $fresh_dump = schema_dump($node, 'fresh');
like($fresh_dump, qr/CREATE TABLE evstore\.events/, 'pg_dump --binary-upgrade shows the extension\'s objects');

foreach my $old (@released)
{
	my $db = "from_" . ($old =~ s/\W/_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, "CREATE EXTENSION evstore VERSION '$old'");
	$node->safe_psql($db, q{
		SELECT evstore.append_event('order-1', 'OrderPlaced', '{"n": 1}');
		SELECT evstore.append_event('order-1', 'OrderPaid', '{"n": 2}', NULL, 0);
		SELECT evstore.append_events('order-2', '[{"type": "OrderPlaced", "data": {}}]');
	});
	$node->safe_psql($db, 'ALTER EXTENSION evstore UPDATE');
	is($node->safe_psql($db, "SELECT extversion FROM pg_extension WHERE extname = 'evstore'"),
		$default, "$old updates to $default");
	is($node->safe_psql($db, "SELECT string_agg(event_type, ',' ORDER BY stream_version) FROM evstore.read_stream('order-1')"),
		'OrderPlaced,OrderPaid', "$old: events survive the update");
	is($node->safe_psql($db, "SELECT stream_version || '/' || global_position FROM evstore.append_event('order-1', 'OrderShipped', '{}', NULL, 1)"),
		'2/4', "$old: appends continue at the right version and position");
	# lifecycle features work on the updated database
	is($node->safe_psql($db, q{
		SELECT evstore.create_subscription('up-sub', ARRAY['order']);
		SELECT (evstore.delete_stream('order-2', 0)).stream_version;
		SELECT evstore.stream_version('order-2');
		SELECT evstore.save_snapshot('order-1', 2, '{"paid": true}');
		SELECT stream_version FROM evstore.load_snapshot('order-1');
		SELECT count(*) FROM evstore.subscription_fetch('up-sub', 0, 100, 'w');
		SELECT evstore.subscription_ack('up-sub', 0, evstore.read_all_horizon(), 'w');
		SELECT evstore.mark_processed('w', event_id) FROM evstore.events WHERE global_position = 1;
		SELECT evstore.mark_processed('w', event_id) FROM evstore.events WHERE global_position = 1;
		SELECT (evstore.tombstone_stream('order-3')).stream_version;
	}), "\n1\n-1\nt\n2\n5\nt\nt\nf\n0", "$old: lifecycle functions work after the update");
	is(catalog_description($node, $db), $fresh,
		"$old: updated schema equals a fresh $default install");
	my $dump = schema_dump($node, $db);
	$dump =~ s/\Q$db\E/fresh/g;
	my $base = $node->basedir;
	PostgreSQL::Test::Utils::append_to_file("$base/fresh.dump", $fresh_dump) unless -e "$base/fresh.dump";
	PostgreSQL::Test::Utils::append_to_file("$base/$db.dump", $dump);
	my ($diff) = PostgreSQL::Test::Utils::run_command([ 'diff', '-u', "$base/fresh.dump", "$base/$db.dump" ]);
	is($diff, '', "$old: pg_dump --schema-only of the updated database equals a fresh install's");
}

$node->stop;
done_testing();
