# Crypto-shredding: evstore.rotate_master_key() works in bounded memory,
# whatever the number of keys.  100,000 subjects' keys are re-wrapped under
# a new master key version in one call; the backend's peak private memory
# (VmHWM less its shared and file-backed pages, from /proc/self/status) may
# grow by a few megabytes, not in proportion to the keys.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 't';
use EvstoreTest;

my $nkeys = 100_000;
my $k1 = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
my $k2 = '22' x 32;

my $node = evstore_node('shredding_memory');
# (a thousand per transaction: creating a key takes a per-subject lock)
$node->safe_psql('postgres', qq{
DO \$\$ BEGIN
    FOR b IN 0 .. $nkeys / 1000 - 1 LOOP
        PERFORM evstore.protect('{"x": 1}', 'subject-' || i, '{x}')
        FROM generate_series(b * 1000 + 1, b * 1000 + 1000) i;
        COMMIT;
    END LOOP;
END \$\$});
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.subject_keys'),
	$nkeys, "$nkeys subjects' keys created");
my $sample = $node->safe_psql('postgres',
	q{SELECT evstore.protect('{"x": "kept"}', 'subject-extra', '{x}')});

# version 2 added in the server's configuration (it cannot be SET)
$node->append_conf('postgresql.conf',
	qq{evstore.master_key_command = 'printf "1 $k1\\n2 $k2\\n"'\n});
$node->reload;

# private memory: what the backend has at its peak, less the pages of shared
# buffers and files it touched (those only grow, so the end values bound them)
my $out = $node->safe_psql('postgres', q{
CREATE FUNCTION pg_temp.kb(field text) RETURNS bigint LANGUAGE sql AS $$
    SELECT (regexp_match(pg_read_file('/proc/self/status'), field || ':\s+(\d+) kB'))[1]::bigint
$$;
CREATE FUNCTION pg_temp.private_peak_kb() RETURNS bigint LANGUAGE sql AS $$
    SELECT pg_temp.kb('VmHWM') - pg_temp.kb('RssShmem') - pg_temp.kb('RssFile')
$$;
SELECT pg_temp.private_peak_kb() AS before \gset
SELECT evstore.rotate_master_key() AS rewrapped \gset
SELECT :rewrapped, :before, pg_temp.private_peak_kb() - :before,
       (SELECT sum(total_bytes) / 1024 FROM pg_backend_memory_contexts);
});
my ($rewrapped, $before, $growth, $contexts_kb) = split /\|/, $out;
note("rotate_master_key of $rewrapped keys: private peak before ${before} kB, "
	  . "growth ${growth} kB; memory contexts after: ${contexts_kb} kB");
is($rewrapped, $nkeys + 1, 'every live key re-wrapped in one call');
cmp_ok($growth, '<', 8 * 1024,
	'the peak private memory of the backend grew by less than 8 MB');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM evstore.subject_keys WHERE master_version = 2}),
	$nkeys + 1, 'all keys are now wrapped under version 2');

# version 1 retired: the keys still unwrap
$node->append_conf('postgresql.conf',
	qq{evstore.master_key_command = 'echo 2 $k2'\n});
$node->reload;
is($node->safe_psql('postgres', "SELECT evstore.reveal('$sample')"),
	'{"x": "kept"}', 'a re-wrapped key unwraps under version 2 alone');

$node->stop;
done_testing();
