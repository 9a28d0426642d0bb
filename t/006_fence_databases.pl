# The fence is per database: an append left open in one database holds back
# neither read_all nor read_all_horizon() in another (each has its own
# position sequence), and evstore.appenders() lists only its own database's
# backends.  The two databases also keep separate "highest position" and
# horizon records: a sequence far ahead in one refuses nothing in the other.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('fence_databases');
$node->safe_psql('postgres', 'CREATE DATABASE db_b');
$node->safe_psql('db_b', 'CREATE EXTENSION evstore');

# database A (postgres) is far ahead of B
$node->safe_psql('postgres', q{
SELECT count(evstore.append_event('a-' || i, 'A', '{}')) FROM generate_series(1, 50) i;
});
is($node->safe_psql('postgres', 'SELECT evstore.read_all_horizon()'), '50', 'A: horizon at 50');

# an append in B stays open (position 1 of B's own sequence)
my $b = $node->background_psql('db_b', on_error_stop => 1);
$b->query_safe('BEGIN');
is($b->query_safe(q{SELECT global_position FROM evstore.append_event('b-1', 'B', '{}')}), '1',
	'B: open append at position 1');
my $b_pid = $b->query_safe('SELECT pg_backend_pid()');

# A keeps reading, and keeps appending and reading its new events
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.read_all(0)'), '50',
	'A: read_all is not held back by the open append in B');
is($node->safe_psql('postgres', 'SELECT evstore.read_all_horizon()'), '50',
	'A: horizon not pulled down to B\'s position');
$node->safe_psql('postgres', q{SELECT evstore.append_event('a-new', 'A', '{}')});
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.read_all(50)'), '1',
	'A: a new event is returned while B\'s append is open');
is($node->safe_psql('postgres', "SELECT count(*) FROM evstore.appenders() WHERE pid = $b_pid"), '0',
	'A: appenders() does not list B\'s backend');
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.appenders()'), '0',
	'A: appenders() is empty');

# B itself is held back by its own open append, and lists it
is($node->safe_psql('db_b', 'SELECT evstore.read_all_horizon()'), '0', 'B: held back by its own append');
is($node->safe_psql('db_b', "SELECT string_agg(pid || ':' || min_position, ',') FROM evstore.appenders()"),
	"$b_pid:1", 'B: appenders() lists the open append with its bound');

# an append in A while B is open, in a transaction of A, holds back A only
my $a = $node->background_psql('postgres', on_error_stop => 1);
$a->query_safe('BEGIN');
$a->query_safe(q{SELECT evstore.append_event('a-open', 'A', '{}')});
$b->query_safe(q{SELECT evstore.append_event('b-2', 'B', '{}')});
is($node->safe_psql('postgres', 'SELECT evstore.read_all_horizon()'), '51', 'A: held at its own open append (52)');
is($node->safe_psql('db_b', 'SELECT evstore.read_all_horizon()'), '0', 'B: still held by its own append only');

$b->query_safe('COMMIT');
is($node->safe_psql('db_b', 'SELECT evstore.read_all_horizon()'), '2', 'B: released by its commit');
is($node->safe_psql('db_b', 'SELECT string_agg(stream_id, \',\' ORDER BY global_position) FROM evstore.read_all(0)'),
	'b-1,b-2', 'B: both events returned');
is($node->safe_psql('postgres', 'SELECT evstore.read_all_horizon()'), '51', 'A: unaffected by B\'s commit');
$a->query_safe('COMMIT');
is($node->safe_psql('postgres', 'SELECT evstore.read_all_horizon()'), '52', 'A: released by its commit');

# B's positions (far below A's) are not refused as "moved backwards"
is($node->safe_psql('db_b', q{SELECT global_position FROM evstore.append_event('b-3', 'B', '{}')}), '3',
	'B: appends below A\'s positions are fine');

$a->quit;
$b->quit;
$node->stop;
done_testing();
