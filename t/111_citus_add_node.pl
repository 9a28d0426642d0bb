# Distributed mode (docs/distributed.md, "Adding a node"): a worker added to
# a distributed store gets evstore from Citus, evstore.distribute() run again
# prepares its sequence (stride, its group id as offset), a shard moved onto
# it serves appends through the coordinator, positions stay unique across
# the cluster and increasing in the moved stream, and the shells stay empty.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CitusCluster;

citus_skip_unless_available();

my ($coord, @workers) = citus_cluster('addnode');
$coord->safe_psql('postgres', 'SELECT evstore.distribute(shard_count => 4)');
# one call per statement: only those Citus delegates
$coord->safe_psql('postgres', join('', map { "SELECT evstore.append_event('acct-" . ($_ % 8) . "', 'Opened', '{}');\n" } 1 .. 40));

my $w3 = citus_node('addnode_w3');
$coord->safe_psql('postgres', "SELECT citus_add_node('127.0.0.1', " . $w3->port . ")");
is($w3->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'evstore'"),
	'0.3.0', 'Citus created evstore on the added node');
my $group = $coord->safe_psql('postgres', "SELECT groupid FROM pg_dist_node WHERE nodeport = " . $w3->port);

my ($rc, $out, $err) = $coord->psql('postgres', 'SELECT evstore.distribute(shard_count => 4)');
is($rc, 0, 'evstore.distribute() again after adding the node') or diag $err;
like($out, qr/0 events moved/, 'it moves nothing');
is($w3->safe_psql('postgres', q{
SELECT seqincrement FROM pg_sequence WHERE seqrelid = 'evstore.global_position_seq'::regclass}),
	'64', 'the new node\'s sequence has the stride');
is($w3->safe_psql('postgres', "SELECT pg_get_indexdef('evstore.events_pkey'::regclass) ~ 'global_position, stream_id'"),
	't', 'the new node has the distributed unique indexes');

# move the shard of acct-3 onto the new node, then append through the coordinator
my $shard = $coord->safe_psql('postgres', q{
SELECT shardid FROM evstore.shards WHERE table_name = 'events' AND hashtext('acct-3') BETWEEN hash_min AND hash_max});
my $from = $coord->safe_psql('postgres', "SELECT node_port FROM evstore.shards WHERE shardid = $shard");
($rc, $out, $err) = $coord->psql('postgres', qq{
SELECT citus_move_shard_placement($shard, '127.0.0.1', $from, '127.0.0.1', ${\ $w3->port}, shard_transfer_mode => 'block_writes')});
is($rc, 0, 'a shard moved onto the new node') or diag $err;
my $last = $coord->safe_psql('postgres', q{
SELECT stream_version || ',' || global_position FROM evstore.events WHERE stream_id = 'acct-3' ORDER BY stream_version DESC LIMIT 1});
my ($lv, $lp) = split /,/, $last;
my ($v, $p) = split /,/, $coord->safe_psql('postgres',
	"SELECT stream_version || ',' || global_position FROM evstore.append_event('acct-3', 'OnNewNode', '{}')");
is($v, $lv + 1, 'the append on the new node continues the version');
cmp_ok($p, '>', $lp, 'its position is above the stream\'s last one');
is($p % 64, $group % 64, 'and it is the new node\'s (group id modulo the stride)');
is($coord->safe_psql('postgres', "SELECT count(*) FROM evstore.read_stream('acct-3')"),
	$v + 1, 'read_stream through the coordinator reads the whole stream from the new node');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT global_position FROM evstore.events GROUP BY 1 HAVING count(*) > 1) d}),
	'0', 'positions are unique across the cluster');
for my $n ($coord, @workers, $w3)
{
	is(citus_shell_rows($n), '0', 'no shell holds rows on ' . $n->name);
}

done_testing();
