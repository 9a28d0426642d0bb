# Blue/green rebuilds (evstore.start_rebuild): during concurrent appends the
# rebuilt read models end equal to a fresh in-transaction rebuild, and a
# reader polling them the whole time never sees them empty or partial;
# cancelling and a server crash mid-rebuild leave the live read models
# untouched, and a crashed rebuild resumes.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EvstoreTest;

my $node = evstore_node('bluegreen');
my $connstr = $node->connstr('postgres');

$node->safe_psql('postgres', q{
	-- attribute sync: one row per account, never deleted
	CREATE TABLE acct (id text PRIMARY KEY, w integer, i integer, touched integer DEFAULT 1);
	COMMENT ON TABLE acct IS 'accounts';
	CREATE INDEX acct_w_idx ON acct (w);
	GRANT SELECT ON acct TO PUBLIC;
	SELECT evstore.create_sync_projection('acct', 'acct', 'id', 'stream_id');
	-- handler: events per stream; sum(n) only grows
	CREATE TABLE tally (stream_id text PRIMARY KEY, n integer NOT NULL);
	CREATE FUNCTION tally_apply(e evstore.events) RETURNS void LANGUAGE sql
	    AS 'INSERT INTO tally VALUES (e.stream_id, 1) ON CONFLICT (stream_id) DO UPDATE SET n = tally.n + 1';
	SELECT evstore.create_projection('tally', 'tally_apply(evstore.events)');
	SELECT count(*) FROM (SELECT evstore.append_event('acct-' || (g % 40), 'Deposited',
	    jsonb_build_object('w', 0, 'i', g)) FROM generate_series(1, 3000) g) s;
	CREATE TABLE writers_done (w integer);
	CREATE TABLE reader_log (model text, polls integer, violations integer, min_count bigint);
});

my $acct_sql = "SELECT string_agg(id || ':' || coalesce(w::text, '-') || ':' || coalesce(i::text, '-'), ',' ORDER BY id) FROM acct";
my $tally_sql = "SELECT string_agg(stream_id || '=' || n, ',' ORDER BY stream_id) FROM tally";

# A reader polls both read models until both rebuilds are done: the number
# of rows and sum(n) may only grow, and are never zero.
$node->safe_psql('postgres', q{
CREATE PROCEDURE poll_models() LANGUAGE plpgsql AS $$
DECLARE
    polls integer := 0; bad_acct integer := 0; bad_tally integer := 0;
    c bigint; s bigint; prev_c bigint := 0; prev_s bigint := 0;
    min_c bigint; min_s bigint;
BEGIN
    LOOP
        SELECT count(*) INTO c FROM acct;
        SELECT coalesce(sum(n), 0) INTO s FROM tally;
        IF c = 0 OR c < prev_c THEN bad_acct := bad_acct + 1; END IF;
        IF s = 0 OR s < prev_s THEN bad_tally := bad_tally + 1; END IF;
        min_c := least(min_c, c); min_s := least(min_s, s);
        prev_c := c; prev_s := s; polls := polls + 1;
        COMMIT;
        EXIT WHEN polls > 20 AND NOT EXISTS (SELECT FROM evstore.projection_rebuilds WHERE mode = 'blue-green');
        PERFORM pg_sleep(0.002);
    END LOOP;
    INSERT INTO reader_log VALUES ('acct', polls, bad_acct, min_c), ('tally', polls, bad_tally, min_s);
END $$;
});

srand(15);
my @files = writer_scripts($node, writers => 4, txns => 150, streams => 60, checked => 0.1);
my @writers;
for my $file (@files)
{
	my ($out, $err) = ('', '');
	push @writers, IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $connstr, '-f', $file],
		'>', \$out, '2>', \$err);
}

# small batches: many commits while the writers run
my $ids = $node->safe_psql('postgres', q{
	SELECT evstore.start_rebuild('acct', batch_size => 50);
	SELECT evstore.start_rebuild('tally', read_models => ARRAY['tally'::regclass], batch_size => 50);
});
like($ids, qr/^\d+\n\d+$/, 'start_rebuild returns at once with the ids of the rebuilds');
my ($rout, $rerr) = ('', '');
my $reader = IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr, '-c', 'CALL poll_models()'],
	'>', \$rout, '2>', \$rerr);

$node->poll_query_until('postgres',
	"SELECT NOT EXISTS (SELECT FROM evstore.projection_rebuild_jobs)")
  or diag($node->safe_psql('postgres', 'SELECT * FROM evstore.projection_rebuilds'));
ok($reader->finish, 'the reader ran through both rebuilds') or diag($rerr);
$_->finish for @writers;
is($node->safe_psql('postgres', 'SELECT count(*) FROM writers_done'), '4', 'the writers ran to the end');

is($node->safe_psql('postgres', q{SELECT string_agg(model || ':' || violations, ',' ORDER BY model) FROM reader_log}),
	'acct:0,tally:0', 'the reader never saw a read model empty or shrinking');
cmp_ok($node->safe_psql('postgres', 'SELECT min(polls) FROM reader_log'), '>', 20, 'the reader polled throughout');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'evstore_rebuild_%'}),
	'0', 'the shadow schemas are gone');
is($node->safe_psql('postgres', q{
	SELECT obj_description('acct'::regclass, 'pg_class') || ' ' || has_table_privilege('public', 'acct', 'SELECT')
	    || ' ' || (SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indrelid = 'acct'::regclass)
	    || ' ' || (SELECT target::text FROM evstore.projections WHERE name = 'acct')
	    || ' ' || (SELECT rebuilt_at IS NOT NULL FROM evstore.projections WHERE name = 'acct')}),
	'accounts true acct_pkey,acct_w_idx acct true', 'the new table keeps comment, grants, index names; the projection targets it');

# appends after the swap reach the new tables
$node->safe_psql('postgres', q{SELECT evstore.append_event('acct-new', 'Deposited', '{"w": 9, "i": 9}')});
my $acct_bg = $node->safe_psql('postgres', $acct_sql);
my $tally_bg = $node->safe_psql('postgres', $tally_sql);
like($acct_bg, qr/acct-new:9:9/, 'appends after the swap update the new read model');
# tally has no reset function: empty it in the rebuilding transaction
$node->safe_psql('postgres', q{
	SELECT evstore.rebuild_projection('acct', 0);
	BEGIN;
	TRUNCATE tally;
	SELECT evstore.rebuild_projection('tally', 0);
	COMMIT;
});
is($node->safe_psql('postgres', $acct_sql), $acct_bg, 'sync read model: blue/green equals a fresh rebuild');
is($node->safe_psql('postgres', $tally_sql), $tally_bg, 'handler read model: blue/green equals a fresh rebuild');
is($node->safe_psql('postgres', 'SELECT sum(n) FROM tally'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), 'the handler counted every event once');

# --- cancel: an append in flight holds the rebuild at its swap --------------
my ($hin, $hout, $herr) = ('', '', '');
my $holder = IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr],
	'<', \$hin, '>', \$hout, '2>', \$herr);
$hin .= "BEGIN;\nSELECT evstore.append_event('acct-held', 'Deposited', '{\"w\": 1}');\n";
$holder->pump while length $hin;
$node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM evstore.appenders()');
$node->safe_psql('postgres', q{SELECT evstore.start_rebuild('acct')});
$node->poll_query_until('postgres', q{
	SELECT phase = 'swapping' FROM evstore.projection_rebuilds WHERE name = 'acct'});
my $live = $node->safe_psql('postgres', "SELECT 'acct'::regclass::oid || ' ' || ($acct_sql)");
is($node->safe_psql('postgres', q{SELECT evstore.cancel_rebuild('acct')}), 't', 'cancel_rebuild stops the rebuild');
is($node->safe_psql('postgres', "SELECT 'acct'::regclass::oid || ' ' || ($acct_sql)"), $live,
	'cancelling leaves the live read model as it was');
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM evstore.projection_rebuilds) || ' ' ||
	       (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'evstore_rebuild_%')}),
	'0 0', 'the rebuild and its copies are gone');
$hin .= "COMMIT;\n\\q\n";
$holder->finish;
like($node->safe_psql('postgres', $acct_sql), qr/acct-held:1:/, 'the held append committed into the live model');

# --- crash mid-fill: the live model is untouched, the rebuild resumes -------
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION tally_apply(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
	BEGIN
	    IF current_schema() LIKE 'evstore_rebuild_%' THEN PERFORM pg_sleep(0.002); END IF;
	    INSERT INTO tally VALUES (e.stream_id, 1) ON CONFLICT (stream_id) DO UPDATE SET n = tally.n + 1;
	END $$;
});
$live = $node->safe_psql('postgres', "SELECT 'tally'::regclass::oid || ' ' || ($tally_sql)");
$node->safe_psql('postgres', q{SELECT evstore.start_rebuild('tally', ARRAY['tally'::regclass], 20)});
$node->poll_query_until('postgres', q{
	SELECT phase = 'filling' AND at_position > 100 FROM evstore.projection_rebuilds WHERE name = 'tally'});
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', "SELECT 'tally'::regclass::oid || ' ' || ($tally_sql)"), $live,
	'after a crash mid-rebuild the live read model is untouched');
is($node->safe_psql('postgres', q{SELECT phase FROM evstore.projection_rebuilds WHERE name = 'tally'}),
	'interrupted', 'the view shows the rebuild as interrupted');
$node->safe_psql('postgres', q{SELECT evstore.append_event('acct-late', 'Deposited', '{}')});
$node->safe_psql('postgres', q{SELECT evstore.start_rebuild('tally')});
$node->poll_query_until('postgres', "SELECT NOT EXISTS (SELECT FROM evstore.projection_rebuild_jobs)")
  or diag($node->safe_psql('postgres', 'SELECT * FROM evstore.projection_rebuilds'));
my $resumed = $node->safe_psql('postgres', $tally_sql);
$node->safe_psql('postgres', q{BEGIN; TRUNCATE tally; SELECT evstore.rebuild_projection('tally', 0); COMMIT;});
is($node->safe_psql('postgres', $tally_sql), $resumed, 'the resumed rebuild equals a fresh rebuild');
is($node->safe_psql('postgres', 'SELECT sum(n) FROM tally'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM evstore.events'), 'every event counted once after the resume');

# --- a handler that qualifies its table: refused before it writes ----------
$node->safe_psql('postgres', q{
	CREATE OR REPLACE FUNCTION tally_apply(e evstore.events) RETURNS void LANGUAGE sql
	    AS 'INSERT INTO public.tally VALUES (e.stream_id, 1) ON CONFLICT (stream_id) DO UPDATE SET n = public.tally.n + 1';
});
$live = $node->safe_psql('postgres', $tally_sql);
$node->safe_psql('postgres', q{SELECT evstore.start_rebuild('tally', ARRAY['tally'::regclass])});
$node->poll_query_until('postgres', q{SELECT phase = 'failed' FROM evstore.projection_rebuilds WHERE name = 'tally'});
like($node->safe_psql('postgres', q{SELECT error FROM evstore.projection_rebuilds WHERE name = 'tally'}),
	qr/wrote the live read model tally/, 'a handler writing the live table fails the rebuild');
is($node->safe_psql('postgres', $tally_sql), $live, 'and the live table is unchanged');
is($node->safe_psql('postgres', q{SELECT evstore.cancel_rebuild('tally')}), 't', 'a failed rebuild is cancelled');

$node->stop;
done_testing();
