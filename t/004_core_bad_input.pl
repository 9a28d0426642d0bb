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
# lifecycle (issue 3), when this build has it
my $U = q{'00000000-0000-4000-8000-00000000abcd'};
my @lifecycle = (
	[ 'evstore.delete_stream',    [qw(text bigint jsonb)], [ q{'del-1'},  'NULL', 'NULL' ], 0 ],
	[ 'evstore.tombstone_stream', [qw(text bigint jsonb)], [ q{'tomb-1'}, 'NULL', 'NULL' ], 0 ],
	[ 'evstore.save_snapshot',    [qw(text bigint jsonb)], [ q{'base-1'}, '1', q{'{"s":1}'} ], 0 ],
	[ 'evstore.load_snapshot',    ['text'], [q{'base-1'}], 1 ],
	[ 'evstore.delete_snapshot',  ['text'], [q{'base-1'}], 0 ],
	[
		'evstore.create_subscription',
		[qw(text text[] text[] integer bigint interval)],
		[ q{'sub-x'}, 'NULL', 'NULL', '1', '0', q{'30 seconds'} ], 0
	],
	[ 'evstore.drop_subscription',    [qw(text boolean)],             [ q{'sub-none'}, 'true' ], 0 ],
	[ 'evstore._subscription_member', [qw(text integer)],             [ q{'sub1'}, '0' ], 0 ],
	[ 'evstore.subscription_fetch',   [qw(text integer integer text)], [ q{'sub1'}, '0', '10', q{'c1'} ], 1 ],
	[ 'evstore.subscription_ack',     [qw(text integer bigint text)], [ q{'sub1'}, '0', '0', q{'c1'} ], 0 ],
	[ 'evstore.subscription_release', [qw(text integer text)],        [ q{'sub1'}, '0', q{'c1'} ], 0 ],
	[ 'evstore.mark_processed',       [qw(text uuid)],                [ q{'c1'}, $U ], 0 ],
	[ 'evstore.is_processed',         [qw(text uuid)],                [ q{'c1'}, $U ], 0 ],
	[ 'evstore.prune_processed',      [qw(text timestamptz)],         [ q{'c1'}, 'now()' ], 0 ],
	[ 'evstore.read_correlated',      [qw(text bigint integer)],      [ q{'corr-1'}, '0', '10' ], 1 ],
	[ 'evstore.causal_chain',         [qw(uuid integer)],             [ $U, '10' ], 1 ],
	[ 'evstore.causes',               [qw(uuid integer)],             [ $U, '10' ], 1 ],
);
my %exists = map { $_ => 1 } split /\n/, $node->safe_psql('postgres',
	q{SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'evstore'::regnamespace});
for my $f (@lifecycle)
{
	push @functions, $f if $exists{ $f->[0] =~ s/^evstore\.//r };
}
note('functions in the corpus: ' . join(' ', map { $_->[0] } @functions));

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
	interval => [ 'NULL::interval', q{'-1 second'}, q{'0'}, q{'1000000 years'}, q{'nope'::interval} ],
	timestamptz => [ 'NULL::timestamptz', q{'infinity'}, q{'-infinity'}, q{'nope'::timestamptz} ],
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
CREATE TABLE corpus_results (n int PRIMARY KEY, call text, outcome text, written bigint, rows_changed bigint);
-- rows in every table of the extension (events, streams, and whatever the
-- features add: snapshots, checkpoints, keys...), as a sum of counts
CREATE FUNCTION store_rows() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE t regclass; n bigint; total bigint := 0;
BEGIN
    FOR t IN SELECT c.oid::regclass FROM pg_class c
             JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
             JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'evstore'
             WHERE c.relkind = 'r' LOOP
        EXECUTE format('SELECT count(*) FROM %s', t) INTO n;
        total := total + n;
    END LOOP;
    RETURN total;
END $$;
CREATE FUNCTION try_call(n int, q text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    before_e bigint; before_r bigint; after_e bigint; after_r bigint; st text;
BEGIN
    SELECT count(*) INTO before_e FROM evstore.events;
    before_r := store_rows();
    BEGIN
        EXECUTE q;
        SELECT count(*) INTO after_e FROM evstore.events;
        INSERT INTO corpus_results VALUES (n, q, 'OK', after_e - before_e, store_rows() - before_r);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE;
        SELECT count(*) INTO after_e FROM evstore.events;
        INSERT INTO corpus_results VALUES (n, q, st, after_e - before_e, store_rows() - before_r);
    END;
END $$;
});

$node->safe_psql('postgres', q{SELECT evstore.create_subscription('sub1')})
  if $exists{create_subscription};

# the output plugin (issue 5), when this build has it: bad options to a
# slot that uses it, decoded with pg_logical_slot_peek_changes
my $has_plugin = $node->psql('postgres',
	q{SELECT pg_create_logical_replication_slot('bad_slot', 'evstore')}) == 0;
if ($has_plugin)
{
	$node->safe_psql('postgres', q{SELECT evstore.append_event('plug-1', 'Decoded', '{"x":1}')});
	my @option_sets = (
		[], [qw(format json)], [qw(format cloudevents)], [qw(format xml)], [ 'format', '' ],
		[ 'format', undef ], [qw(include-metadata maybe)], [qw(include-transaction 2)],
		[qw(include-transaction true include-transaction true)], [ 'categories', '' ],
		[ 'categories', ',' x 10000 ], [ 'categories', 'a,,b' ], [ 'event-types', ' ' ],
		[ 'cloudevents-source', 'x' x 100000 ], [qw(format cloudevents cloudevents-source), ''],
		[qw(nope 1)], ['categories'], [ undef, 'x' ], [ 'FORMAT', 'json' ],
		map({ [ 'format', 'x' . int(rand(1000)) ] } 1 .. 3),
	);
	for my $o (@option_sets)
	{
		my $arr = 'ARRAY[' . join(', ', map { defined $_ ? "'$_'" : 'NULL' } @$o) . ']::text[]';
		push @calls, [ '__raw__', 0,
			[ "SELECT count(*) FROM pg_logical_slot_peek_changes('bad_slot', NULL, NULL, VARIADIC $arr)" ] ];
	}
}
ok(1, 'output plugin ' . ($has_plugin ? 'present: bad options are in the corpus' : 'absent: not in the corpus'));

my $corpus = "SET client_min_messages = error;\n";
my $n = 0;
for my $c (@calls)
{
	my ($name, $srf, $args) = @$c;
	my $call = "$name(" . join(', ', @$args) . ')';
	my $q = $name eq '__raw__' ? $args->[0] : $srf ? "SELECT count(*) FROM $call" : "SELECT $call";
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
is($node->safe_psql('postgres', q{SELECT count(*) FROM corpus_results WHERE outcome <> 'OK' AND (written <> 0 OR rows_changed <> 0)}),
	'0', 'failing calls wrote nothing (row counts of every table of the extension unchanged)');
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
