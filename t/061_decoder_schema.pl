# The evstore output plugin never misreads a tuple: a dropped column of
# evstore.events is a clean error naming the column, the server stays up,
# and a slot created after the change decodes what it can.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('decoder_schema');
$node->safe_psql('postgres', q{
	SELECT 'ok' FROM pg_create_logical_replication_slot('before_drop', 'evstore');
	SELECT evstore.append_event('order-1', 'BeforeDrop', '{}');
});
$node->safe_psql('postgres',
	'ALTER TABLE evstore.events DROP COLUMN metadata');
$node->safe_psql('postgres', q{
	INSERT INTO evstore.events (global_position, stream_id, stream_version, event_id,
	                            event_type, data, recorded_at, category, stream_bucket)
	VALUES (nextval('evstore.global_position_seq'), 'order-2', 0,
	        evstore.uuid_generate_v7(), 'AfterDrop', '{}', now(), 'order', 1)});

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT data FROM pg_logical_slot_get_changes('before_drop', NULL, NULL)");
isnt($ret, 0, 'decoding an event written after the drop fails');
like($stderr, qr/column "metadata" of evstore.events does not exist/,
	'the error names the dropped column');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is still up');

($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT data FROM pg_logical_slot_peek_changes('before_drop', NULL, NULL)");
isnt($ret, 0, 'the slot cannot pass the change (peek fails the same way)');

# a new slot, after the drop: every event is an error too (the column the
# plugin prints is missing), never a crash or a shifted column
$node->safe_psql('postgres',
	"SELECT 'ok' FROM pg_create_logical_replication_slot('after_drop', 'evstore')");
$node->safe_psql('postgres', q{
	INSERT INTO evstore.events (global_position, stream_id, stream_version, event_id,
	                            event_type, data, recorded_at, category, stream_bucket)
	VALUES (nextval('evstore.global_position_seq'), 'order-3', 0,
	        evstore.uuid_generate_v7(), 'Later', '{}', now(), 'order', 1)});
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT data FROM pg_logical_slot_get_changes('after_drop', NULL, NULL)");
like($stderr, qr/column "metadata" of evstore.events does not exist/,
	'a slot created after the drop reports the missing column');
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), '3',
	'the events are all stored');

$node->stop;
done_testing();
