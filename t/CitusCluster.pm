# A Citus cluster for evstore's distributed-mode TAP tests (t/110_citus_*.pl):
# one coordinator and two workers on loopback, started with
# PostgreSQL::Test::Cluster, each with citus and evstore preloaded (citus
# first) and CREATE EXTENSION citus; evstore is created on the coordinator
# after the workers were added, so Citus creates it on every node.
#
#   use CitusCluster;
#   citus_skip_unless_available();       # plan skip_all when Citus is absent
#   my ($coord, @workers) = citus_cluster('core');
#
# Citus is not packaged for every platform: when its library is not
# installed for the server under test, every distributed test file skips
# with the reason (scripts/test.sh lists skipped files).
package CitusCluster;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Exporter 'import';

our @EXPORT = qw(citus_available citus_skip_unless_available citus_cluster
  citus_node citus_node_of_stream citus_shell_rows);

# pg_config of the server under test (scripts/test.sh exports PG_CONFIG)
sub _pkglibdir
{
	my $pg_config = $ENV{PG_CONFIG} || 'pg_config';
	my $dir = `$pg_config --pkglibdir`;
	chomp $dir;
	return $dir;
}

# true when citus.so is installed for this server
sub citus_available
{
	my $dir = _pkglibdir();
	return $dir ne '' && -f "$dir/citus.so";
}

sub citus_skip_unless_available
{
	return if citus_available();
	plan skip_all => 'Citus is not installed for this server (no citus.so in `pg_config --pkglibdir`: '
	  . _pkglibdir() . ')';
}

# Settings every node gets, after test/evstore.conf (later lines win).
sub _citus_conf
{
	return <<'EOF';
shared_preload_libraries = 'citus, evstore'
listen_addresses = '127.0.0.1'
max_connections = 60
max_prepared_transactions = 20
citus.node_conninfo = 'sslmode=prefer'
citus.shard_replication_factor = 1
citus.log_remote_commands = off
# without TLS in the tests: loopback only
citus.enable_statistics_collection = off
EOF
}

sub _node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf', slurp_file('test/evstore.conf'));
	$node->append_conf('postgresql.conf', _citus_conf());
	$node->append_conf('postgresql.conf', $opts{extra_conf}) if $opts{extra_conf};
	$node->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 trust\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	return $node;
}

# One more started node with citus created (not yet added to a cluster).
sub citus_node
{
	my ($name, %opts) = @_;
	return _node($name, %opts);
}

# Start a coordinator and $opts{workers} (2) workers; returns ($coord, @workers).
# With no_evstore => 1, evstore is not created (the caller does it).
sub citus_cluster
{
	my ($prefix, %opts) = @_;
	my $n = $opts{workers} // 2;
	my $coord = _node("${prefix}_coord", %opts);
	my @workers = map { _node("${prefix}_w$_", %opts) } 1 .. $n;

	$coord->safe_psql('postgres',
		"SELECT citus_set_coordinator_host('127.0.0.1', " . $coord->port . ")");
	for my $w (@workers)
	{
		$coord->safe_psql('postgres',
			"SELECT citus_add_node('127.0.0.1', " . $w->port . ")");
	}
	$coord->safe_psql('postgres', 'CREATE EXTENSION evstore') unless $opts{no_evstore};
	return ($coord, @workers);
}

# The worker (one of @workers) that holds the placement of stream $s.
sub citus_node_of_stream
{
	my ($coord, $s, @workers) = @_;
	my $port = $coord->safe_psql('postgres', qq{
SELECT n.nodeport FROM pg_dist_shard s
JOIN pg_dist_placement p USING (shardid)
JOIN pg_dist_node n USING (groupid)
WHERE s.logicalrelid = 'evstore.events'::regclass
  AND hashtext('$s') BETWEEN s.shardminvalue::int AND s.shardmaxvalue::int});
	for my $w (@workers)
	{
		return $w if $w->port == $port;
	}
	die "no worker holds stream $s (port '$port')";
}

# Bytes in the node-local shells of evstore's distributed tables on $node
# (a query would be routed to the shards: the shells' own files are
# measured); 0 when no row was ever written into a shell there.
sub citus_shell_rows
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
SELECT coalesce(sum(pg_relation_size(c.oid)), 0) FROM pg_class c
WHERE c.oid IN ('evstore.events'::regclass, 'evstore.streams'::regclass, 'evstore.snapshots'::regclass)});
}

1;
