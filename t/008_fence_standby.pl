# On a hot standby, read_all and read_all_horizon() are refused with the
# same error (0A000): the fence lives in the primary's shared memory, and a
# standby's copy of the position sequence runs up to 32 values ahead of the
# positions actually handed out.  Reading streams still works there.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $primary = evstore_node('fence_primary', allows_streaming => 1);
$primary->safe_psql('postgres', q{
SELECT evstore.append_event('st-1', 'A', '{}');
SELECT evstore.append_event('st-1', 'B', '{}');
});
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('fence_standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', q{SELECT evstore.append_event('st-1', 'C', '{}')});
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby is in recovery');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM evstore.read_stream('st-1')}), '3',
	'read_stream works on the standby');
cmp_ok($standby->safe_psql('postgres', q{SELECT last_value FROM evstore.global_position_seq}), '>', 3,
	'the standby\'s sequence runs ahead of the positions handed out');

sub sqlstate_on
{
	my ($node, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	return $ret == 0 ? 'ok' : ($err =~ /ERROR:  ([0-9A-Z]{5}):/ ? $1 : "?? $err");
}

is(sqlstate_on($standby, 'SELECT evstore.read_all_horizon()'), '0A000', 'read_all_horizon() refused on the standby');
is(sqlstate_on($standby, 'SELECT count(*) FROM evstore.read_all(0)'), '0A000', 'read_all refused on the standby');
is(sqlstate_on($standby, q{SELECT count(*) FROM evstore.read_all(3, timeout => '1 hour')}), '0A000',
	'a waiting read_all is refused on the standby at once');
my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT evstore.read_all_horizon()');
like($err, qr/evstore\.read_all_horizon\(\) is not available on a standby/, 'the error names the function');
is(sqlstate_on($primary, 'SELECT evstore.read_all_horizon()'), 'ok', 'read_all_horizon() works on the primary');
is($primary->safe_psql('postgres', 'SELECT evstore.read_all_horizon()'), '3', 'primary horizon is 3');

$standby->stop;
$primary->stop;
done_testing();
