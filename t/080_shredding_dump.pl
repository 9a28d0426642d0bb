# Crypto-shredding survives pg_dump / pg_restore, and forgetting survives it
# too: after forget(), a dump holds nothing that decrypts the subject's
# data, while the other subjects restore readable (same master key).
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('shredding');
my $tmp = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', q{
	SELECT evstore.append_event('user-alice', 'UserRegistered',
		evstore.protect('{"name": "Alice Liddell", "email": "alice@wonderland.example", "plan": "gold"}',
						'alice', '{name,email}'));
	SELECT evstore.append_event('user-bob', 'UserRegistered',
		evstore.protect('{"name": "Bob Builder", "email": "bob@site.example", "plan": "free"}',
						'bob', '{name,email}'));
	SELECT evstore.append_event('user-alice', 'AddressChanged',
		evstore.protect('{"address": {"street": "Rabbit Hole 1", "city": "Oxford"}}',
						'alice', '{address.street}'), NULL, 0);
});

my $reveal = q{SELECT string_agg(stream_id || ' ' || evstore.reveal(data)::text, E'\n' ORDER BY global_position)
			   FROM evstore.events};
is($node->safe_psql('postgres', $reveal),
	qq{user-alice {"name": "Alice Liddell", "plan": "gold", "email": "alice\@wonderland.example"}
user-bob {"name": "Bob Builder", "plan": "free", "email": "bob\@site.example"}
user-alice {"address": {"city": "Oxford", "street": "Rabbit Hole 1"}}},
	'protected events reveal before forget');
unlike($node->safe_psql('postgres', 'SELECT string_agg(data::text, \' \') FROM evstore.events'),
	qr/Alice|Bob B|Rabbit|wonderland/, 'no plaintext of protected fields is stored');

is($node->safe_psql('postgres', "SELECT evstore.forget('alice')"), 't', 'alice forgotten');

# plain-text dump: no plaintext of either subject, no key for alice
my $plain = "$tmp/plain.sql";
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', $plain ], 'pg_dump (plain)');
my $dump = slurp_file($plain);
unlike($dump, qr/Alice|Rabbit|wonderland|Bob B|bob\@site/, 'the dump holds no protected plaintext');
like($dump, qr/COPY evstore\.subject_keys/, 'the dump keeps the key table');
my ($keys) = $dump =~ /COPY evstore\.subject_keys [^\n]*\n(.*?)\n\\\.\n/s;
ok(defined $keys, 'key table rows found in the dump');
my @alice = grep { /\talice\t/ } split /\n/, $keys;
my @bob = grep { /\tbob\t/ } split /\n/, $keys;
is(scalar(@alice), 1, 'alice has one key row in the dump');
like($alice[0], qr/^-?\d+\talice\t\\N\t\\N\t[^\t]+\t[^\t\\]+$/,
	'alice\'s row in the dump has no wrapped key, only forgotten_at');
like($bob[0], qr/^-?\d+\tbob\t1\t\\\\x[0-9a-f]{122}\t/, 'bob\'s wrapped key (61 bytes) is in the dump');

# restore into a fresh database of the same server (same master key)
my $custom = "$tmp/db.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('postgres'), '-f', $custom ], 'pg_dump (custom)');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $custom ], 'pg_restore');

is($node->safe_psql('restored', $reveal),
	qq{user-alice {"name": null, "plan": "gold", "email": null}
user-bob {"name": "Bob Builder", "plan": "free", "email": "bob\@site.example"}
user-alice {"address": {"city": "Oxford", "street": null}}},
	'restored: alice reads as null, bob as plaintext');
is($node->safe_psql('restored', "SELECT evstore.is_forgotten('alice') || ' ' || evstore.is_forgotten('bob')"),
	'true false', 'restored: alice is still recorded as forgotten');
my ($ret, $out, $err) = $node->psql('restored',
	q{SELECT evstore.protect('{"a": 1}', 'alice', '{a}')});
like($err, qr/subject "alice" has been forgotten/, 'restored: protect for alice is refused');
is($node->safe_psql('restored',
	q{SELECT evstore.reveal(evstore.protect('{"a": "new"}', 'bob', '{a}'))}),
	'{"a": "new"}', 'restored: bob keeps working');

# another server with another master key reads nothing at all from the dump
my $other = evstore_node('shredding_other',
	extra_conf => "evstore.master_key_command = 'echo 1 " . ('ab' x 32) . "'\n");
$other->safe_psql('postgres', 'CREATE DATABASE restored');
$other->command_ok([ 'pg_restore', '-d', $other->connstr('restored'), $custom ], 'pg_restore on a server with another master key');
($ret, $out, $err) = $other->psql('restored', q{SELECT evstore.reveal(data) FROM evstore.events WHERE stream_id = 'user-bob'});
like($err, qr/could not unwrap data key/, 'another master key cannot unwrap bob\'s key');
is($other->safe_psql('restored', q{SELECT evstore.reveal(data) FROM evstore.events WHERE stream_id = 'user-alice' ORDER BY global_position LIMIT 1}),
	'{"name": null, "plan": "gold", "email": null}', 'alice reads as null anywhere');

$other->stop;
$node->stop;
done_testing();
