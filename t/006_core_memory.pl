# Robustness of large operations: an append's memory stays bounded in the
# size of its batch, a read_stream of a large stream can be cancelled, and
# a mistyped evstore.* setting in the configuration file is not kept.
#
# Memory is measured inside the append itself: a projection handler that
# sees only the first and the last event of a 200,000-event batch records
# the backend's memory (sum of used_bytes of pg_backend_memory_contexts) at
# each.  What the batch's input takes is allocated before the first event;
# everything the writer allocates per event shows as growth between the two
# samples.  Before per-event memory was reset, the growth was about 580
# bytes per event (index expressions of correlation_id/causation_id, the
# event id, ...): over 100 MB for this batch.  The bound asserted here is
# generous (a tenth of that); it is a bound on memory, not a timing.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('memory',
	extra_conf => "evstore.max_batch_evnts = 5\n");

# --- a mistyped evstore.* setting in postgresql.conf is removed, with a warning
like(slurp_file($node->logfile),
	qr/invalid configuration parameter name "evstore\.max_batch_evnts", removing it/,
	'a mistyped evstore.* setting in the configuration file is reported');
my ($ret, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSHOW evstore.max_batch_evnts", on_error_stop => 1);
like($err, qr/ERROR:  42704:/, 'and not kept as a placeholder (SHOW: 42704)');

# --- memory of a 200,000-event append
my $n = 200_000;
$node->safe_psql('postgres', q{
CREATE TABLE mem_samples (i integer, used bigint);
CREATE FUNCTION mem_probe(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.mem_samples
        SELECT (e.data ->> 'i')::integer, sum(m.used_bytes)
        FROM pg_catalog.pg_backend_memory_contexts m;
END $$;
SELECT evstore.create_projection('mem_probe', 'mem_probe(evstore.events)',
                                 NULL, ARRAY['Probe']);
});
$node->safe_psql('postgres', qq{
SET evstore.max_batch_events = $n;
SELECT evstore.append_events('mem-1', (
    SELECT jsonb_agg(jsonb_build_object(
        'type', CASE WHEN g IN (1, $n) THEN 'Probe' ELSE 'Deposited' END,
        'data', jsonb_build_object('i', g),
        'metadata', jsonb_build_object('correlation_id', 'corr-' || (g % 1000),
                                       'causation_id', 'cause-' || g))
      ORDER BY g)
    FROM generate_series(1, $n) g));
});
is($node->safe_psql('postgres', 'SELECT evstore.stream_version(\'mem-1\')'),
	$n - 1, "the $n-event batch was appended");
my ($first, $last) = split /\|/, $node->safe_psql('postgres', qq{
SELECT (SELECT used FROM mem_samples WHERE i = 1) || '|' ||
       (SELECT used FROM mem_samples WHERE i = $n)});
my $growth = $last - $first;
diag(sprintf('backend memory at event 1: %.1f MB, at event %d: %.1f MB, growth %.1f MB (%.0f bytes/event)',
	$first / 1048576, $n, $last / 1048576, $growth / 1048576, $growth / ($n - 1)));
cmp_ok($growth, '<', 10 * 1048576,
	"memory grows by less than 10 MB over a $n-event append");

# --- a read_stream of the large stream is cancelled by statement_timeout
for my $backwards ('false', 'true')
{
	($ret, $out, $err) = $node->psql('postgres', qq{\\set VERBOSITY verbose
SET statement_timeout = '10ms';
SELECT count(*) FROM evstore.read_stream('mem-1', NULL, NULL, $backwards);},
		on_error_stop => 1);
	like($err, qr/ERROR:  57014:/,
		"read_stream (backwards = $backwards) of $n events is cancelled by statement_timeout (57014)");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM evstore.read_stream('mem-1')}),
	$n, 'and reads the whole stream without a timeout');

done_testing();
