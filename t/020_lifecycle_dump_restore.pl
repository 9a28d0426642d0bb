# pg_dump -Fc / pg_restore into a fresh database keeps everything evstore
# stores (every table and sequence marked with pg_extension_config_dump),
# and evstore keeps working there: appends continue at the right stream
# versions and global positions, deleted and tombstoned streams stay so,
# snapshots, subscriptions (with the streams they hold back after a nack)
# and processed-message records carry over.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('lcdump');
my $src = 'lc_source';
$node->safe_psql('postgres', "CREATE DATABASE $src");
$node->safe_psql($src, 'CREATE EXTENSION evstore');

$node->safe_psql($src, q{
	SELECT evstore.append_events('order-1', '[{"type": "Placed", "data": {"n": 1}},
	                                          {"type": "Paid", "data": {"n": 2}}]');
	SELECT evstore.append_event('order-2', 'Placed', '{"n": 3}',
	                            '{"correlation_id": "c-1"}');
	SELECT evstore.append_event('order-2', 'Shipped', '{"n": 4}',
	                            '{"correlation_id": "c-1", "causation_id": "x"}');
	SELECT evstore.append_event('order-3', 'Placed', '{}');
	SELECT evstore.delete_stream('order-3');
	SELECT evstore.append_event('order-4', 'Placed', '{}');
	SELECT evstore.tombstone_stream('order-4');
	SELECT evstore.save_snapshot('order-1', 1, '{"total": 3}');
	SELECT evstore.create_subscription('mailer', ARRAY['order'], NULL, 2);
	SELECT evstore.create_subscription('audit');
	SELECT evstore.mark_processed('mailer', event_id) FROM evstore.events WHERE stream_id = 'order-1';
});
# move a checkpoint forward and take a lease
$node->safe_psql($src, q{
	SELECT evstore.subscription_ack('audit', 0,
	    (SELECT global_position FROM evstore.events WHERE stream_id = 'order-1' AND stream_version = 1), 'a1');
});
# a failed event holds its stream back (subscription failure handling)
$node->safe_psql($src, q{
	SELECT evstore.subscription_nack('mailer', evstore.stream_hash('order-2') % 256 % 2,
	    (SELECT global_position FROM evstore.events WHERE stream_id = 'order-2' AND stream_version = 0),
	    'smtp down', '1 hour');
});
# a rolled-back append leaves a gap in the positions: the sequence, not
# max(global_position), decides where appends continue
$node->safe_psql($src, q{
	BEGIN;
	SELECT evstore.append_event('order-9', 'Placed', '{}');
	ROLLBACK;
});

# every table and sequence the extension marked for dumping, with a digest of its contents
my $digest_sql = q{
	SELECT string_agg(format('%s=%s', cfg::regclass, evstore_lc_digest(cfg::regclass)), E'\n'
	                  ORDER BY cfg::regclass::text)
	FROM pg_extension, unnest(extconfig) AS cfg WHERE extname = 'evstore'
};
my $digest_fn = q{
	CREATE OR REPLACE FUNCTION evstore_lc_digest(t regclass) RETURNS text LANGUAGE plpgsql AS $$
	DECLARE r text;
	BEGIN
	    IF (SELECT relkind FROM pg_class WHERE oid = t) = 'S' THEN
	        EXECUTE format('SELECT last_value || ''/'' || is_called FROM %s', t) INTO r;
	    ELSE
	        EXECUTE format('SELECT count(*) || '':'' || coalesce(md5(string_agg(x::text, ''|'' ORDER BY x::text)), '''') FROM %s x', t)
	          INTO r;
	    END IF;
	    RETURN r;
	END $$;
};
$node->safe_psql($src, $digest_fn);
my $before = $node->safe_psql($src, $digest_sql);
foreach my $t ('evstore.events', 'evstore.streams', 'evstore.global_position_seq',
	'evstore.snapshots', 'evstore.subscription_checkpoints', 'evstore.processed_messages',
	'evstore.subscription_holds')
{
	like($before, qr/^\Q$t\E=/m, "$t is marked for dumping");
}
my $max_pos = $node->safe_psql($src, 'SELECT max(global_position) FROM evstore.events');
my $seq = $node->safe_psql($src, 'SELECT last_value FROM evstore.global_position_seq');
cmp_ok($seq, '>', $max_pos, 'the source has a gap after its last event');

my $dump = $node->basedir . '/lc.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr($src), '-f', $dump ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE lc_restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('lc_restored'), $dump ],
	'pg_restore into a fresh database');

my $db = 'lc_restored';
$node->safe_psql($db, $digest_fn);
is($node->safe_psql($db, $digest_sql), $before,
	'every dumped table and sequence has the same contents after restore');

# evstore works in the restored database
is($node->safe_psql($db, "SELECT stream_version || '/' || (global_position - $seq)
	FROM evstore.append_event('order-1', 'Refunded', '{}', NULL, 1)"),
	'2/1', 'appends continue at the next stream version and after the restored sequence');
is($node->safe_psql($db, "SELECT evstore.stream_version('order-3') || ',' ||
	(SELECT count(*) FROM evstore.read_stream('order-3'))"), '-1,0', 'a deleted stream stays deleted');
is($node->safe_psql($db, "SELECT stream_version FROM evstore.append_event('order-3', 'Placed', '{}', NULL, -1)"),
	'2', 'a deleted stream restarts after its deletion marker');
my ($rc, $out, $err) = $node->psql($db, "SELECT evstore.append_event('order-4', 'Placed', '{}')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ES002/, 'a tombstoned stream stays tombstoned');
is($node->safe_psql($db, "SELECT stream_version || ' ' || state FROM evstore.load_snapshot('order-1')"),
	'1 {"total": 3}', 'snapshots survive');
is($node->safe_psql($db, "SELECT evstore.mark_processed('mailer', event_id) FROM evstore.events
	WHERE stream_id = 'order-1' AND stream_version = 0"), 'f', 'processed-message records survive');
is($node->safe_psql($db, "SELECT string_agg(event_type, ',') FROM evstore.read_correlated('c-1')"),
	'Placed,Shipped', 'correlation lookups work');
is($node->safe_psql($db, "SELECT count(*) FROM evstore.subscriptions WHERE name = 'mailer'"),
	'2', 'subscriptions survive with their members');
is($node->safe_psql($db, "SELECT string_agg(stream_id || ':' || stream_version, ',' ORDER BY global_position)
	FROM evstore.subscription_fetch('audit', 0, 3, 'a1')"),
	'order-2:0,order-2:1,order-3:0', 'a subscription continues after its restored checkpoint');
is($node->safe_psql($db, "SELECT count(*) FROM evstore.subscription_fetch('audit', 0, 100, 'someone-else')"),
	'0', 'its lease survives too');
is($node->safe_psql($db, "SELECT stream_id || ' ' || stream_version || ' ' || state || ' ' || attempts || ' ' || last_error
	FROM evstore.subscription_held WHERE subscription = 'mailer'"),
	'order-2 0 waiting 1 smtp down', 'a held stream survives, waiting for its retry');
is($node->safe_psql($db, "SELECT count(*) FROM evstore.subscription_fetch('mailer',
	evstore.stream_hash('order-2') % 256 % 2) WHERE stream_id = 'order-2'"),
	'0', 'and its events are still held back');

$node->stop;
done_testing();
