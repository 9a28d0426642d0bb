# Crypto-shredding: an OpenSSL failure is reported with OpenSSL's reason.
# The server runs with an OpenSSL configuration whose default property query
# matches no provider, except for the random generator: RAND_bytes works,
# fetching AES-256-GCM fails with "unsupported".
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use EvstoreTest;

my $conf = PostgreSQL::Test::Utils::tempdir() . '/no-aes-gcm.cnf';
open my $fh, '>', $conf or die $!;
print $fh <<'CNF';
openssl_conf = openssl_init
[openssl_init]
alg_section = evp_properties
random = random_section
[evp_properties]
default_properties = "provider=evstore-test-none"
[random_section]
properties = "provider=default"
CNF
close $fh;

my $node;
{
	local $ENV{OPENSSL_CONF} = $conf;
	$node = evstore_node('shredding_openssl');
}

my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT evstore.protect('{"a": 1}', 'alice', '{a}')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/0A000: OpenSSL does not provide AES-256-GCM/,
	'protect() fails with a clear error');
like($err, qr/DETAIL:  OpenSSL reports: unsupported \(error:[0-9A-F]+:.*unsupported\)\./,
	'the DETAIL gives OpenSSL\'s reason');

# the error queue was emptied: the same call reports the same reason again
($ret, $out, $err) = $node->psql('postgres', q{
DO $$ BEGIN
    PERFORM evstore.protect('{"a": 1}', 'alice', '{a}');
EXCEPTION WHEN feature_not_supported THEN NULL;
END $$;
SELECT evstore.protect('{"a": 1}', 'alice', '{a}')});
like($err, qr/DETAIL:  OpenSSL reports: unsupported \(/,
	'a second failure in the session reports its own reason');

# what needs no cipher still works: forget() only draws random bytes
is($node->safe_psql('postgres', q{SELECT evstore.forget('bob')}), 'f',
	'forget() works without AES-256-GCM');

$node->stop;
done_testing();
