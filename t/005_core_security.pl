# Security: a role that does not own evstore cannot change or remove
# events (with or without table privileges), cannot read key material, and
# cannot make evstore's functions use its own objects by putting them
# earlier on the search_path (in a schema of its own and in pg_temp).
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('security');

$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
GRANT USAGE ON SCHEMA evstore TO mallory;
GRANT CREATE ON DATABASE postgres TO mallory;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evstore TO mallory;
GRANT SELECT ON evstore.events, evstore.streams TO mallory;
SELECT evstore.append_events('sec-1', '[{"type":"A","data":{"n":1}},{"type":"B","data":{"n":2}}]');
SELECT evstore.append_event('other-1', 'C', '{"n":3}');
});

sub events_digest
{
	return $node->safe_psql('postgres', q{
		SELECT count(*) || ':' || md5(string_agg(e::text, '|' ORDER BY global_position))
		FROM evstore.events e});
}
my $digest = events_digest();

# returns the SQLSTATE of a statement run as mallory ('' if it succeeded)
sub sqlstate_as
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET ROLE $role;\n$sql", on_error_stop => 1);
	return $ret == 0 ? '' : ($err =~ /ERROR:  ([0-9A-Z]{5}):/ ? $1 : "?? $err");
}

my @tamper = (
	q{UPDATE evstore.events SET data = '{"forged":true}'},
	q{DELETE FROM evstore.events},
	q{TRUNCATE evstore.events},
	q{UPDATE evstore.streams SET version = 0},
	q{DELETE FROM evstore.streams},
	q{TRUNCATE evstore.streams},
	q{INSERT INTO evstore.events SELECT global_position + 100, stream_id, stream_version + 100, gen_random_uuid(), event_type, data, metadata, recorded_at, category, stream_bucket FROM evstore.events},
	q{SELECT setval('evstore.global_position_seq', 1)},
	q{SELECT nextval('evstore.global_position_seq')},
	q{ALTER TABLE evstore.events DISABLE TRIGGER events_append_only},
	q{DROP TRIGGER events_append_only ON evstore.events},
	q{CREATE RULE r AS ON INSERT TO evstore.events DO INSTEAD NOTHING},
	q{DROP TABLE evstore.events},
);
for my $sql (@tamper)
{
	is(sqlstate_as('mallory', $sql), '42501', "non-owner refused (42501): $sql");
}
is(events_digest(), $digest, 'events unchanged after the attempts');

# even given every table privilege, the append-only guard refuses
$node->safe_psql('postgres',
	'GRANT UPDATE, DELETE, TRUNCATE, INSERT ON evstore.events, evstore.streams TO mallory');
for my $sql (@tamper[ 0 .. 6 ])
{
	is(sqlstate_as('mallory', $sql), '42501', "refused even with the table privilege: $sql");
}
is(events_digest(), $digest, 'events unchanged after the privileged attempts');
$node->safe_psql('postgres',
	'REVOKE UPDATE, DELETE, TRUNCATE, INSERT ON evstore.events, evstore.streams FROM mallory');

# every other table of the extension (features' state: snapshots,
# checkpoints, keys...) cannot be written directly by a non-owner either
my @other_tables = split /\n/, $node->safe_psql('postgres', q{
	SELECT c.oid::regclass FROM pg_class c
	JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
	JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'evstore'
	WHERE c.relkind = 'r' AND c.relname NOT IN ('events', 'streams') ORDER BY 1});
for my $t (@other_tables)
{
	for my $sql ("DELETE FROM $t", "TRUNCATE $t", "INSERT INTO $t DEFAULT VALUES")
	{
		is(sqlstate_as('mallory', $sql), '42501', "non-owner refused (42501): $sql");
	}
}

# key material: any table of the extension whose name says "key"
my @key_tables = split /\n/, $node->safe_psql('postgres', q{
	SELECT c.oid::regclass FROM pg_class c
	JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
	JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'evstore'
	WHERE c.relkind IN ('r', 'p', 'v', 'm') AND c.relname ~ 'key'});
SKIP:
{
	skip 'no key table in this version of evstore (crypto-shredding not installed)', 1
	  unless @key_tables;
	for my $t (@key_tables)
	{
		is(sqlstate_as('mallory', "SELECT * FROM $t"), '42501', "non-owner cannot read $t");
	}
}

# every SECURITY DEFINER function pins its search_path
my $secdef = $node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_proc p
	JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'evstore'
	WHERE p.prosecdef});
is($node->safe_psql('postgres', q{
	SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), '') FROM pg_proc p
	JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
	JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'evstore'
	WHERE p.prosecdef
	  AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)}),
	'', "all $secdef SECURITY DEFINER functions set search_path = pg_catalog, pg_temp");

# search_path hijack: mallory creates look-alikes of what evstore uses, in
# a schema searched before pg_catalog and evstore, and in pg_temp.  Any of
# them being used would raise 'hijacked' or change the results.
my $decoys = q{
CREATE SCHEMA evil;
CREATE TABLE evil.events (LIKE evstore.events);
CREATE TABLE evil.streams (LIKE evstore.streams);
CREATE SEQUENCE evil.global_position_seq START 1000000;
CREATE FUNCTION evil.hijacked() RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN RAISE 'hijacked'; END $$;
CREATE FUNCTION evil.category(text) RETURNS text LANGUAGE sql AS $$ SELECT 'evil' WHERE evil.hijacked() $$;
CREATE FUNCTION evil.stream_hash(text) RETURNS integer LANGUAGE sql AS $$ SELECT 0 WHERE evil.hijacked() $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'epoch'::timestamptz WHERE evil.hijacked() $$;
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE sql AS $$ SELECT 1::bigint WHERE evil.hijacked() $$;
CREATE FUNCTION evil.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'object' WHERE evil.hijacked() $$;
CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE sql AS $$ SELECT NULL::uuid WHERE evil.hijacked() $$;
CREATE FUNCTION evil.texteq_evil(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hijacked() $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq_evil);
CREATE FUNCTION evil.int8eq_evil(bigint, bigint) RETURNS boolean LANGUAGE sql AS $$ SELECT evil.hijacked() $$;
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8eq_evil);
CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8eq_evil);
CREATE TEMP TABLE events (LIKE evstore.events);
CREATE TEMP TABLE streams (LIKE evstore.streams);
CREATE TEMP SEQUENCE global_position_seq START 2000000;
};
my $calls = q{
SELECT evstore.category('abc-1');
SELECT evstore.stream_hash('abc-1');
SELECT evstore.stream_version('sec-1');
SELECT (r).stream_version || ',' || (r).global_position FROM (SELECT evstore.append_event('sec-1', 'D', '{"n":4}', NULL, 1) r) x;
SELECT (r).stream_version || ',' || (r).global_position FROM (SELECT evstore.append_events('hij-1', '[{"type":"E","data":{}},{"type":"F","data":{}}]', -1) r) x;
SELECT string_agg(stream_version || ':' || event_type || ':' || data::text, ' ') FROM evstore.read_stream('sec-1');
SELECT string_agg(stream_version || ':' || event_type, ' ') FROM evstore.read_stream('sec-1', 3, 10, true);
SELECT string_agg(global_position::text, ' ') FROM evstore.read_all(0, 100);
SELECT string_agg(global_position::text, ' ') FROM evstore.read_all(0, 100, ARRAY['sec', 'hij']);
SELECT string_agg(global_position::text, ' ') FROM evstore.read_all(0, 100, NULL, ARRAY['C', 'E']);
SELECT string_agg(global_position::text, ' ') FROM evstore.read_all(1, 100, NULL, NULL, 1, 2);
SELECT evstore.read_all_horizon() >= 6;
SELECT count(*) FROM evstore.appenders();
};
# SECURITY DEFINER functions of the features, when this build has them
my %has = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	q{SELECT proname FROM pg_proc WHERE pronamespace = 'evstore'::regnamespace});
$calls .= q{
SELECT evstore.save_snapshot('sec-1', 1, '{"s":1}');
SELECT stream_version || ' ' || state::text FROM evstore.load_snapshot('sec-1');
SELECT evstore.create_subscription('hsub');
SELECT string_agg(global_position::text, ' ') FROM evstore.subscription_fetch('hsub', 0, 10, 'c');
SELECT evstore.subscription_ack('hsub', 0, 2, 'c');
SELECT evstore.is_processed('c', '00000000-0000-0000-0000-000000000000');
SELECT count(*) FROM evstore.read_correlated('nothing');
} if $has{save_snapshot} && $has{subscription_fetch} && $has{read_correlated};
# reference run: the same calls by the superuser with a clean search_path,
# in a transaction that is rolled back (so both runs append the same)
my $reference = $node->safe_psql('postgres', "BEGIN;\n$calls\nROLLBACK;");
# the rolled-back appends used positions 4..6: set the sequence back so that
# the runs below get the same positions (nothing is stored above 3)
$node->safe_psql("postgres", q{SELECT setval('evstore.global_position_seq', 3)});

for my $path ('evil, pg_catalog, evstore', 'pg_temp, evil, pg_catalog, evstore, public')
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET ROLE mallory;\n$decoys\nSET search_path = $path;\nBEGIN;\n$calls\nROLLBACK;\n"
		  . "SELECT count(*) FROM evil.events UNION ALL SELECT count(*) FROM evil.streams;\n"
		  . "SELECT count(*) FROM pg_temp.events;\n"
		  . "RESET ROLE; DROP SCHEMA evil CASCADE;",
		on_error_stop => 1);
	is($ret, 0, "calls with search_path = $path ran without touching a decoy") or diag($err);
	# positive control: the decoys are live for anyone who resolves names
	# through this search_path
	my ($cret, $cout, $cerr) = $node->psql('postgres',
		"SET ROLE mallory;\n$decoys\nSET search_path = $path;\nSELECT category('abc-1');",
		on_error_stop => 1);
	like($cerr, qr/hijacked/, "an unqualified call with search_path = $path does reach the decoy");
	$node->safe_psql('postgres', 'DROP SCHEMA evil CASCADE');
	$node->safe_psql('postgres', q{SELECT setval('evstore.global_position_seq', 3)});
	my @got = split /\n/, $out;
	my @decoy_counts = splice(@got, -3);
	is(join("\n", @got), $reference, "results with search_path = $path are those of a clean search_path");
	is(join(',', @decoy_counts), '0,0,0', 'no decoy table was written');
}
is(events_digest(), $digest, 'the store is as it was');

$node->stop;
done_testing();
