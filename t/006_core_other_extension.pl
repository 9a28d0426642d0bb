# evstore's objects may be changed by evstore's own extension scripts only:
# another extension's script (test/extension/evstore_test_other, installed
# by scripts/test.sh) gets every change refused, as any other statement.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('other_extension');
if ($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_available_extensions WHERE name = 'evstore_test_other'") ne '1')
{
	plan skip_all => 'evstore_test_other is not installed (run scripts/test.sh)';
}
$node->safe_psql('postgres', q{SELECT evstore.append_event('order-1', 'Placed', '{}')});
my $before = $node->safe_psql('postgres',
	q{SELECT string_agg(e::text, '|' ORDER BY global_position) FROM evstore.events e});

$node->safe_psql('postgres', 'CREATE EXTENSION evstore_test_other');
my $results = $node->safe_psql('postgres',
	q{SELECT what || ' => ' || outcome FROM evstore_test_other_results ORDER BY what});
for my $line (split /\n/, $results)
{
	like($line, qr/ => 42501$/, "refused in another extension's script: $line");
}
is(scalar(split /\n/, $results), 6, 'every statement was tried');

is($node->safe_psql('postgres',
	q{SELECT string_agg(e::text, '|' ORDER BY global_position) FROM evstore.events e}),
	$before, 'the events are unchanged');
is($node->safe_psql('postgres',
	q{SELECT tgenabled FROM pg_trigger WHERE tgname = 'events_append_only'}),
	'A', 'the append-only trigger is still enabled ALWAYS');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_attribute WHERE attrelid = 'evstore.events'::regclass AND attnum > 0}),
	'10', 'evstore.events has its 10 columns');
is($node->safe_psql('postgres',
	q{SELECT stream_version FROM evstore.append_event('order-1', 'Shipped', '{}')}),
	'1', 'evstore works on');

$node->stop;
done_testing();
