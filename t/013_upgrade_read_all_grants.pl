# The 0.3.0 update gives read_all three new parameters and
# subscription_fetch one, which drops the old functions with their grants:
# the update warns with the GRANT to repeat, for each role that had one, and
# read_all keeps working for calls with the old arguments.  The create
# functions of projections get an async argument: their grants are carried
# over.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('upgrade_grants', no_extension => 1);
$node->safe_psql('postgres', q{
	CREATE EXTENSION evstore VERSION '0.2.0';
	CREATE ROLE reader LOGIN;
	GRANT USAGE ON SCHEMA evstore TO reader;
	GRANT EXECUTE ON FUNCTION evstore.read_all(bigint, integer, text[], text[], integer, integer) TO reader;
	-- the create functions of projections get a trailing async argument
	CREATE ROLE modeller;
	GRANT EXECUTE ON FUNCTION evstore.create_projection(text, regprocedure, text[], text[], regprocedure),
	    evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[]),
	    evstore.projection_stats() TO modeller;
	GRANT EXECUTE ON FUNCTION evstore.subscription_fetch(text, integer, integer, text) TO reader;
	SELECT evstore.append_event('order-1', 'OrderPlaced', '{}');
	SELECT evstore.delete_stream('order-1');
});
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER EXTENSION evstore UPDATE');
is($rc, 0, 'the update runs');
like($err, qr/WARNING:  evstore\.read_all\(\) has a new signature: EXECUTE granted to reader is dropped/,
	'it warns about the grant it drops');
like($err, qr/GRANT EXECUTE ON FUNCTION evstore\.read_all\(bigint, integer, text\[\], text\[\], integer, integer, text\[\], boolean, interval\) TO reader;/,
	'and says what to run');
like($err, qr/WARNING:  evstore\.subscription_fetch\(\) has a new signature: EXECUTE granted to reader is dropped/,
	'it warns about the subscription_fetch grant too');
like($err, qr/GRANT EXECUTE ON FUNCTION evstore\.subscription_fetch\(text, integer, integer, text, interval\) TO reader;/,
	'with the GRANT of the new signature');
($rc, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM evstore.read_all()', extra_params => [ '-U', 'reader' ]);
like($err, qr/permission denied for function read_all/, 'the grant is gone');
$node->safe_psql('postgres', 'GRANT EXECUTE ON FUNCTION evstore.read_all TO reader');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.read_all(0, 100, '{order}', NULL, NULL, NULL);
	SELECT count(*) FROM evstore.read_all(include_system => false);
}, extra_params => [ '-U', 'reader' ]), "2\n1", 'after granting again: old calls and the new parameter work');

# the grants on the create functions of projections are carried over
is($node->safe_psql('postgres', q{
	SELECT string_agg(p::text, ' ' ORDER BY p::text) FROM (VALUES
	    ('evstore.create_projection(text, regprocedure, text[], text[], regprocedure, boolean)'::regprocedure),
	    ('evstore.create_sync_projection(text, regclass, name, text, text[], text[], jsonb, text[], boolean)'),
	    ('evstore.projection_async_status()')) v(p)
	WHERE has_function_privilege('modeller', p, 'EXECUTE')}),
	'evstore.create_projection(text,regprocedure,text[],text[],regprocedure,boolean) '
	. 'evstore.create_sync_projection(text,regclass,name,text,text[],text[],jsonb,text[],boolean) '
	. 'evstore.projection_async_status()',
	'EXECUTE on the old create functions and on projection_stats() carries over to the new signatures and projection_async_status()');

$node->stop;
done_testing();
