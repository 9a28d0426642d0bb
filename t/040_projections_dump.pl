# Projections across pg_dump/pg_restore: definitions travel with the dump
# (pg_extension_config_dump), restoring evstore.events with COPY does not
# re-run projections on the restored read models, and the restored
# projections keep working for new appends.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('proj_dump');
$node->safe_psql('postgres', q{
	CREATE TABLE page (order_id text PRIMARY KEY, status text, total numeric);
	CREATE TABLE tally (stream_id text PRIMARY KEY, n integer NOT NULL);
	CREATE FUNCTION tally_apply(e evstore.events) RETURNS void LANGUAGE sql
	    AS 'INSERT INTO public.tally VALUES (e.stream_id, 1) ON CONFLICT (stream_id) DO UPDATE SET n = tally.n + 1';
	SELECT evstore.create_sync_projection('page', 'page', 'order_id', '$.order_id',
	    delete_types => ARRAY['OrderCancelled']);
	SELECT evstore.create_projection('tally', 'tally_apply(evstore.events)');
	SELECT evstore.append_event('order-1', 'OrderPlaced', '{"order_id": "o1", "total": 5}');
	SELECT evstore.append_event('order-1', 'OrderShipped', '{"order_id": "o1", "status": "shipped"}');
	SELECT evstore.append_event('order-2', 'OrderPlaced', '{"order_id": "o2", "total": 7}');
});

my $tally_sql = "SELECT string_agg(stream_id || '=' || n, ',' ORDER BY stream_id) FROM tally";
my $page_sql = "SELECT string_agg(order_id || ':' || coalesce(status, '-') || ':' || total, ',' ORDER BY order_id) FROM page";
is($node->safe_psql('postgres', $tally_sql), 'order-1=2,order-2=1', 'handler projection counted live appends');

my $dump = $node->basedir . '/proj.dump';
$node->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres')], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok(['pg_restore', '-d', $node->connstr('restored'), $dump], 'pg_restore');

is($node->safe_psql('restored', q{SELECT string_agg(name || ':' || kind, ',' ORDER BY name) FROM evstore.projections}),
	'page:sync,tally:handler', 'projection definitions survive dump and restore');
is($node->safe_psql('restored', 'SELECT count(*) FROM evstore.events'), '3', 'events restored');
is($node->safe_psql('restored', $tally_sql), 'order-1=2,order-2=1',
	'restoring the events did not run the projections again');
is($node->safe_psql('restored', $page_sql), 'o1:shipped:5,o2:-:7', 'sync read model restored as is');

$node->safe_psql('restored', q{
	SELECT evstore.append_event('order-2', 'OrderCancelled', '{"order_id": "o2"}');
	SELECT evstore.append_event('order-3', 'OrderPlaced', '{"order_id": "o3", "total": 1}');
});
is($node->safe_psql('restored', $tally_sql), 'order-1=2,order-2=2,order-3=1',
	'restored handler projection runs for new appends');
is($node->safe_psql('restored', $page_sql), 'o1:shipped:5,o3:-:1',
	'restored sync projection runs for new appends');

# a rebuild in the restored database reproduces the live read models
$node->safe_psql('restored', "SELECT evstore.rebuild_projection('page', 0)");
is($node->safe_psql('restored', $page_sql), 'o1:shipped:5,o3:-:1', 'rebuild after restore gives the same model');

# statistics live in shared memory: they survive a restart as zero, definitions stay
$node->restart;
is($node->safe_psql('restored', "SELECT string_agg(name || '=' || events_processed, ',' ORDER BY name) FROM evstore.projections"),
	'page=0,tally=0', 'counters restart from zero after a server restart');
$node->safe_psql('restored', q{SELECT evstore.append_event('order-4', 'OrderPlaced', '{"order_id": "o4", "total": 2}')});
is($node->safe_psql('restored', "SELECT string_agg(name || '=' || events_processed, ',' ORDER BY name) FROM evstore.projections"),
	'page=1,tally=1', 'counters count committed events again');

$node->stop;
done_testing();
