# The evstore output plugin never misreads a tuple: a dropped column of
# evstore.events is a clean error naming the column, the server stays up,
# and a slot created after the change decodes what it can.
#
# DDL on evstore.events is refused (sql/core_ddl_guard.sql), so the column
# is dropped the way a superuser still can: with the server started without
# evstore in shared_preload_libraries and evstore's event trigger disabled
# (docs/operations.md, "What a superuser still can do").  Once evstore is
# loaded again it refuses to append to the altered table.
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

my ($ret, $stdout, $stderr) = $node->psql('postgres',
	'ALTER TABLE evstore.events DROP COLUMN metadata');
like($stderr, qr/ALTER TABLE on evstore.events is not allowed/,
	'with evstore loaded, DROP COLUMN is refused');

# without evstore preloaded, a superuser can disable the event trigger and
# change the table (each statement in a backend that never loads evstore)
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->restart;
my $insert = q{
	INSERT INTO evstore.events (global_position, stream_id, stream_version, event_id,
	                            event_type, data, recorded_at, category, stream_bucket)
	VALUES (nextval('evstore.global_position_seq'), '%s', 0,
	        gen_random_uuid(), '%s', '{}', now(), 'order', 1)};
# the event trigger refuses the change too, in a backend that loads evstore
# only when it fires (the statement is rolled back)
($ret, $stdout, $stderr) = $node->psql('postgres',
	'ALTER TABLE evstore.events ADD COLUMN extra int');
like($stderr, qr/ALTER TABLE on evstore.events is not allowed/,
	'without evstore preloaded, the event trigger refuses ALTER TABLE');
($ret, $stdout, $stderr) = $node->psql('postgres',
	'ALTER SEQUENCE evstore.global_position_seq RESTART');
like($stderr, qr/ALTER SEQUENCE on evstore.global_position_seq is not allowed/,
	'and ALTER SEQUENCE');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_attribute WHERE attrelid = 'evstore.events'::regclass AND attname = 'extra'"),
	'0', 'nothing was changed');
$node->safe_psql('postgres', 'ALTER EVENT TRIGGER evstore_guard_ddl DISABLE');
$node->safe_psql('postgres', 'ALTER TABLE evstore.events DROP COLUMN metadata');
$node->safe_psql('postgres', sprintf($insert, 'order-2', 'AfterDrop'));
$node->safe_psql('postgres', 'ALTER EVENT TRIGGER evstore_guard_ddl ENABLE ALWAYS');

($ret, $stdout, $stderr) = $node->psql('postgres',
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
$node->safe_psql('postgres', sprintf($insert, 'order-3', 'Later'));
($ret, $stdout, $stderr) = $node->psql('postgres',
	"SELECT data FROM pg_logical_slot_get_changes('after_drop', NULL, NULL)");
like($stderr, qr/column "metadata" of evstore.events does not exist/,
	'a slot created after the drop reports the missing column');
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), '3',
	'the events are all stored');

# evstore loaded again: it refuses to work on a table of another shape
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'evstore'");
$node->restart;
($ret, $stdout, $stderr) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT evstore.append_event('order-4', 'Refused', '{}')");
like($stderr, qr/55000: evstore.events does not have the shape evstore expects/,
	'appending to the altered table is refused');
like($stderr, qr/Column 7 is "[^"]*pg\.dropped\.7[^"]*" of type \(dropped\); evstore expects "metadata" of type jsonb/,
	'the detail says what differs');

$node->stop;
done_testing();
