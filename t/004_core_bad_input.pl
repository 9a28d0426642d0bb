# Bad input: a generated corpus (fixed seed) of malformed calls to every
# public function of evstore.  Each call runs as its own top-level
# transaction through try_call(), which records either OK (a well-defined
# result, and how many events it wrote) or the SQLSTATE of the error.
# Checks: every failing call has a SQLSTATE outside the internal-error
# classes (XX, 58), failing calls wrote nothing, the server never restarted,
# and the store is consistent afterwards.
#
# To cover a new function, add a row to @functions (its name, its argument
# types and one valid value per argument); values for a new argument type
# go in %bad.
use strict;
use warnings;
use utf8;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('badinput');

# name, argument types, one valid value per argument, set-returning?
my @functions = (
	[ 'evstore.category',         ['text'], [q{'order-1'}], 0 ],
	[ 'evstore.stream_hash',      ['text'], [q{'order-1'}], 0 ],
	[ 'evstore.uuid_generate_v7', [],       [],             0 ],
	[ 'evstore.stream_version',   ['text'], [q{'base-1'}],  0 ],
	[ 'evstore.read_all_horizon', [],       [],             0 ],
	[ 'evstore.appenders',        [],       [],             1 ],
	[
		'evstore.append_event',
		[qw(text text jsonb jsonb bigint uuid)],
		[ q{'bad-1'}, q{'Happened'}, q{'{"a":1}'}, q{'{"c":"x"}'}, 'NULL', 'NULL' ], 0
	],
	[
		'evstore.append_events',
		[qw(text jsonb bigint)],
		[ q{'bad-2'}, q{'[{"type":"T","data":{}}]'}, 'NULL' ], 0
	],
	[
		'evstore.read_stream',
		[qw(text bigint bigint boolean)],
		[ q{'base-1'}, '0', '10', 'false' ], 1
	],
	[
		'evstore.read_all',
		[qw(bigint integer text[] text[] integer integer)],
		[ '0', '100', 'NULL', 'NULL', 'NULL', 'NULL' ], 1
	],
);

srand(7004);

sub random_text
{
	my ($len) = @_;
	my $s = '';
	for (1 .. $len)
	{
		my $c;
		do { $c = 1 + int(rand(0x3000)) }
		  while ($c == ord('$') || ($c >= 0xD800 && $c <= 0xDFFF));
		$s .= chr($c);
	}
	return '$r$' . $s . '$r$';
}

sub random_hex
{
	my ($len) = @_;
	return join('', map { sprintf('%02x', int(rand(256))) } 1 .. $len);
}

# malformed (or edge) values per argument type
my %bad = (
	text => [
		'NULL::text', q{''}, q{repeat('x', 100000)}, q{repeat('-', 2000)}, q{E'\\x01\\x02\\x7f'},
		q{'-'}, q{'a-'}, q{E'\\t '}, q{123::text},
		q{'x'::int::text},    # the cast fails before the call
		map({ random_text(1 + int(rand(40))) } 1 .. 4),
		map({ "convert_from(decode('" . random_hex(1 + int(rand(30))) . "', 'hex'), 'UTF8')" } 1 .. 4),
	],
	bigint => [
		'NULL::bigint', '-1', '-2', '-3', '-4', '-5', '-9223372036854775808', '9223372036854775807',
		q{'99999999999999999999'::bigint}, q{'abc'::bigint}, q{1e30::bigint},
	],
	integer => [
		'NULL::integer', '-1', '0', '1', '257', '256', '2147483647', '-2147483648',
		q{'3000000000'::integer}, q{'x'::integer},
	],
	boolean => [ 'NULL::boolean', q{'maybe'::boolean} ],
	jsonb => [
		'NULL::jsonb', q{'null'}, q{'[]'}, q{'{}'}, q{'"s"'}, q{'1'}, q{'[1]'}, q{'[null]'},
		q{'[[]]'}, q{'[{}]'},
		q{'[{"type":1,"data":{}}]'}, q{'[{"type":"","data":{}}]'}, q{'[{"type":"x"}]'},
		q{'[{"data":{}}]'}, q{'[{"type":null,"data":{}}]'},
		q{'[{"type":"x","data":{},"id":"nope"}]'}, q{'[{"type":"x","data":{},"id":7}]'},
		q{'[{"type":"x","data":{},"metadata":[1]}]'}, q{'[{"type":"x","data":{},"metadata":"m"}]'},
		q{'[{"type":"x","data":{},"event_type":"typo"}]'},
		q{'[{"type":"x","data":{},"id":"00000000-0000-4000-8000-000000000001"},{"type":"y","data":{},"id":"00000000-0000-4000-8000-000000000001"}]'},
		q{(SELECT jsonb_agg(jsonb_build_object('type','T','data','{}'::jsonb)) FROM generate_series(1, 6000))},
		q{jsonb_build_object('pad', repeat('x', 2000000))},
		q{jsonb_build_array(jsonb_build_object('type','T','data',jsonb_build_object('pad', repeat('x', 2000000))))},
		q{jsonb_build_array(jsonb_build_object('type',repeat('t', 5000),'data','{}'::jsonb))},
		q{(repeat('[', 20000) || repeat(']', 20000))::jsonb},
		q<'{"a":'::jsonb>, q{'[{"type":"x","data":{}}'::jsonb},
		map({ "convert_from(decode('" . random_hex(1 + int(rand(30))) . "', 'hex'), 'UTF8')::jsonb" } 1 .. 4),
		map({ random_text(1 + int(rand(20))) . '::jsonb' } 1 .. 3),
	],
	uuid => [
		'NULL::uuid', q{'nope'::uuid}, q{'00000000-0000-0000-0000-000000000000'},
		q{'00000000-0000-4000-8000-00000000abcd'},    # stored in stream base-1 by the setup
		q{decode('} . random_hex(16) . q{', 'hex')::text::uuid},
	],
	'text[]' => [
		'NULL::text[]', q{'{}'::text[]}, q{ARRAY[NULL]::text[]}, q{'{{a,b},{c,d}}'::text[]},
		q{array_fill('x'::text, ARRAY[20000])}, q{'not an array'::text[]}, q{ARRAY['']},
		q{'[5:6]={a,b}'::text[]}, q{ARRAY[repeat('c', 100000)]},
	],
);

# The corpus: each argument replaced by each bad value, then random mixes.
my @calls;
for my $f (@functions)
{
	my ($name, $types, $valid, $srf) = @$f;
	push @calls, [ $name, $srf, [@$valid] ];
	for my $i (0 .. $#$types)
	{
		for my $v (@{ $bad{ $types->[$i] } })
		{
			my @args = @$valid;
			$args[$i] = $v;
			push @calls, [ $name, $srf, \@args ];
		}
	}
	if (@$types)
	{
		for (1 .. 40)
		{
			my @args = map { my $b = $bad{$_}; $b->[ int(rand(@$b)) ] } @$types;
			push @calls, [ $name, $srf, \@args ];
		}
	}
	# too many and wrongly typed arguments
	push @calls, [ $name, $srf, [ @$valid, 'NULL' ] ];
	push @calls, [ $name, $srf, [ map { q{'{}'::json} } @$types ] ] if @$types;
}
# named arguments that do not exist, and a mix of named and positional
push @calls, [ 'evstore.append_event', 0, [ q{stream_id => 'bad-3'}, q{evnt_type => 'T'}, q{data => '{}'} ] ];
push @calls, [ 'evstore.read_all', 1, [ q{group_member => 0} ] ];
push @calls, [ 'evstore.read_all', 1, [ q{group_size => 4} ] ];
push @calls, [ 'evstore.read_stream', 1, [ q{'base-1'}, q{backwards => NULL} ] ];

$node->safe_psql('postgres', q{
SELECT evstore.append_event('base-1', 'Seed', '{}', NULL, NULL, '00000000-0000-4000-8000-00000000abcd');
SELECT evstore.append_event('base-1', 'Seed', '{}');
CREATE TABLE corpus_results (n int PRIMARY KEY, call text, outcome text, written bigint);
CREATE FUNCTION try_call(n int, q text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    before_e bigint; before_s bigint; after_e bigint; after_s bigint; st text; msg text;
BEGIN
    SELECT count(*) INTO before_e FROM evstore.events;
    SELECT count(*) INTO before_s FROM evstore.streams;
    BEGIN
        EXECUTE q;
        SELECT count(*) INTO after_e FROM evstore.events;
        INSERT INTO corpus_results VALUES (n, q, 'OK', after_e - before_e);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        SELECT count(*) INTO after_e FROM evstore.events;
        SELECT count(*) INTO after_s FROM evstore.streams;
        INSERT INTO corpus_results VALUES (n, q, st, (after_e - before_e) + (after_s - before_s));
    END;
END $$;
});

my $corpus = "SET client_min_messages = error;\n";
my $n = 0;
for my $c (@calls)
{
	my ($name, $srf, $args) = @$c;
	my $call = "$name(" . join(', ', @$args) . ')';
	my $q = $srf ? "SELECT count(*) FROM $call" : "SELECT $call";
	$n++;
	$corpus .= "SELECT try_call($n, \$q\$$q\$q\$);\n";
}
my $corpus_file = $node->basedir . '/corpus.sql';
open my $fh, '>:encoding(UTF-8)', $corpus_file or die $!;
print $fh $corpus;
close $fh;

my $pid_before = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
my $start_before = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $events_before = $node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events');

my ($ret, $out, $err) = $node->psql('postgres', undef,
	extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', $corpus_file ]);
is($ret, 0, "the corpus of $n calls ran to the end on one connection") or diag($err);

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $start_before,
	'the server never restarted (same postmaster start time)');
my $pid_after = (split /\n/, slurp_file($node->data_dir . '/postmaster.pid'))[0];
is($pid_after, $pid_before, 'same postmaster pid');
unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated|PANIC/,
	'no backend crashed');

is($node->safe_psql('postgres', 'SELECT count(*) FROM corpus_results'), $n, 'every call has an outcome');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM corpus_results WHERE outcome <> 'OK' AND outcome !~ '^[0-9A-Z]{5}$'}),
	'0', 'every failing call ended with a SQLSTATE');
is($node->safe_psql('postgres', q{
	SELECT string_agg(n || ': ' || outcome || ' ' || call, E'\n') FROM corpus_results
	WHERE outcome ~ '^(XX|58)'}), '', 'no call hit an internal error (SQLSTATE class XX or 58)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM corpus_results WHERE outcome <> 'OK' AND written <> 0}),
	'0', 'failing calls wrote nothing');
my $ok_written = $node->safe_psql('postgres', q{SELECT coalesce(sum(written), 0) FROM corpus_results WHERE outcome = 'OK'});
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), $events_before + $ok_written,
	"the store grew by exactly the events of the successful calls ($ok_written)");

# a few outcomes the reference documents
my %expect = (
	q{SELECT evstore.append_event(NULL::text, 'Happened', '{"a":1}', '{"c":"x"}', NULL, NULL)} => '22004',
	q{SELECT evstore.append_event('bad-1', 'Happened', '{"a":1}', '{"c":"x"}', -3, NULL)} => '22023',
	q{SELECT evstore.append_event('bad-1', 'Happened', jsonb_build_object('pad', repeat('x', 2000000)), '{"c":"x"}', NULL, NULL)} => '54000',
	q{SELECT evstore.append_events('bad-2', (SELECT jsonb_agg(jsonb_build_object('type','T','data','{}'::jsonb)) FROM generate_series(1, 6000)), NULL)} => '54000',
	q{SELECT evstore.append_events('bad-2', '[{"type":"x","data":{},"event_type":"typo"}]', NULL)} => '22023',
	q{SELECT evstore.append_event('bad-1', 'Happened', '{"a":1}', '{"c":"x"}', NULL, '00000000-0000-4000-8000-00000000abcd')} => 'ES003',
	q{SELECT evstore.append_event('bad-1', 'Happened', '{"a":1}', '{"c":"x"}', NULL, 'nope'::uuid)} => '22P02',
	q{SELECT count(*) FROM evstore.read_all(0, 100, NULL, NULL, NULL, 257)} => '22023',
);
for my $q (sort keys %expect)
{
	is($node->safe_psql('postgres', "SELECT outcome FROM corpus_results WHERE call = \$q\$$q\$q\$"),
		$expect{$q}, "$expect{$q} for $q");
}

note($node->safe_psql('postgres',
	q{SELECT string_agg(outcome || ' x' || c, ', ' ORDER BY c DESC) FROM (SELECT outcome, count(*) c FROM corpus_results GROUP BY 1) s}));

# the store is consistent and nothing is held in the read_all fence
is($node->safe_psql('postgres', 'SELECT count(*) FROM evstore.appenders()'), '0', 'no appender left in the fence');
is($node->safe_psql('postgres',
	'SELECT evstore.read_all_horizon() >= max(global_position) FROM evstore.events'),
	't', 'the read_all horizon is at the end of the log');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM evstore.streams st
	LEFT JOIN (SELECT stream_id, max(stream_version) v, count(*) c FROM evstore.events GROUP BY stream_id) e USING (stream_id)
	WHERE e.v IS DISTINCT FROM st.version OR e.c <> e.v + 1}), '0', 'streams and events agree; versions are dense');

$node->stop;
done_testing();
