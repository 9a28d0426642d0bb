# Schema evolution across pg_dump/pg_restore: registered schemas, upcasters
# (declarative and function) and validation modes travel with the dump
# (pg_extension_config_dump); the restored store upcasts and validates as
# before, and the stored events are restored as written.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('schema_dump');
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.cents(d jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
	    AS $$ SELECT (d - 'price') || jsonb_build_object('cents', (d->>'price')::numeric * 100) $$;
	SELECT evstore.append_event('lead-1', 'LeadCreated', '{"name": "Ada Lovelace"}');
	SELECT evstore.append_event('price-1', 'PriceSet', '{"price": 2}');
	SELECT evstore.register_upcaster('LeadCreated', 1, 2,
	    '[{"op": "split", "from": "/name", "to": ["/first", "/last"]}]', 'LeadOpened');
	SELECT evstore.register_upcaster('PriceSet', 1, 2, function => 'public.cents(jsonb)');
	SELECT evstore.register_event_schema('LeadOpened', 2,
	    '{"type": "object", "required": ["first"], "properties": {"first": {"type": "string"}}}');
	SELECT evstore.set_schema_validation('PriceSet', 'warn');
});

my $read = q{SELECT string_agg(event_type || ' ' || data::text, ' | ' ORDER BY global_position) FROM evstore.read_all(0)};
my $before = $node->safe_psql('postgres', $read);
is($before, 'LeadOpened {"last": "Lovelace", "first": "Ada"} | PriceSet {"cents": 200}',
	'upcast before the dump');

my $dump = $node->basedir . '/schema.dump';
$node->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres')], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok(['pg_restore', '-d', $node->connstr('restored'), $dump], 'pg_restore');

is($node->safe_psql('restored', q{SELECT string_agg(event_type || ':' || from_version || '->' || to_version || ':' || kind, ',' ORDER BY event_type) FROM evstore.upcasters}),
	'LeadCreated:1->2:declarative,PriceSet:1->2:function', 'upcasters survive dump and restore');
is($node->safe_psql('restored', q{SELECT string_agg(event_type || ':' || version || ':' || validation, ',') FROM evstore.event_schemas}),
	'LeadOpened:2:enforce', 'schemas survive dump and restore');
is($node->safe_psql('restored', q{SELECT mode FROM evstore.event_validation_modes WHERE event_type = 'PriceSet'}),
	'warn', 'validation modes survive dump and restore');
is($node->safe_psql('restored', $read), $before, 'the restored store upcasts as before');
is($node->safe_psql('restored', q{SELECT string_agg(data::text, ' | ' ORDER BY global_position) FROM evstore.events}),
	'{"name": "Ada Lovelace"} | {"price": 2}', 'stored events restored as written');

# validation works in the restored database
my ($rc, $out, $err) = $node->psql('restored',
	q{SELECT evstore.append_event('lead-2', 'LeadOpened', '{"first": 1}')});
like($err, qr/does not match its schema version 2/, 'the restored registry validates appends');
$node->safe_psql('restored', q{SELECT evstore.append_event('lead-2', 'LeadOpened', '{"first": "Grace"}')});
is($node->safe_psql('restored', q{SELECT metadata->>'schema_version' FROM evstore.events WHERE stream_id = 'lead-2'}),
	'2', 'the restored registry records the current version');

$node->stop;
done_testing();
