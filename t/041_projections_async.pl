# Async projections (docs/projections.md): a background worker runs them
# from their own checkpoint.  Under concurrent appends with late commits
# and rollbacks, an async projection (handler and attribute sync) ends with
# exactly the read model the same projection builds inline; also after its
# worker is killed and after an immediate server stop in the middle of its
# batches.  Pause and resume; a failing event is retried, then (with
# evstore.subscription_nack) parked while other streams go on, or (without
# it) stops the projection after its attempts.
use strict;
use warnings;
use lib 't';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use EvstoreTest;

my $writers = 6;
my $txns_per_writer = 120;
my $node = evstore_node('async', extra_conf => q{
max_connections = 40
max_worker_processes = 16
evstore.async_workers = 2
evstore.async_databases = 'postgres'
evstore.async_batch_size = 40
evstore.async_idle_wait = 20ms
evstore.async_retry_delay = 50ms
evstore.async_max_attempts = 3
});

# the same handler and the same attribute sync, inline and async; the
# handler also checks that each stream arrives in version order
$node->safe_psql('postgres', q{
CREATE TABLE writers_done (w int);
CREATE TABLE model_inline (stream_id text PRIMARY KEY, n int, last_version bigint, total bigint);
CREATE TABLE model_async (LIKE model_inline INCLUDING ALL);
CREATE FUNCTION apply_to(tbl regclass, e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    prev bigint;
BEGIN
    EXECUTE format('SELECT last_version FROM %s WHERE stream_id = $1', tbl) INTO prev USING e.stream_id;
    IF prev IS NOT NULL AND e.stream_version <> prev + 1 THEN
        RAISE EXCEPTION 'stream % out of order: % after %', e.stream_id, e.stream_version, prev;
    END IF;
    EXECUTE format('INSERT INTO %s VALUES ($1, 1, $2, $3) ON CONFLICT (stream_id) DO UPDATE
                    SET n = %s.n + 1, last_version = $2, total = %s.total + $3', tbl, tbl, tbl)
        USING e.stream_id, e.stream_version, coalesce((e.data->>'i')::bigint, 0);
END $$;
CREATE FUNCTION project_inline(e evstore.events) RETURNS void LANGUAGE sql
    AS $$ SELECT public.apply_to('public.model_inline', e) $$;
CREATE FUNCTION project_async(e evstore.events) RETURNS void LANGUAGE sql
    AS $$ SELECT public.apply_to('public.model_async', e) $$;
CREATE TABLE sync_inline (stream_id text PRIMARY KEY, w int, i int);
CREATE TABLE sync_async (LIKE sync_inline INCLUDING ALL);
SELECT evstore.create_projection('inline', 'project_inline(evstore.events)', ARRAY['acct']);
SELECT evstore.create_projection('async', 'project_async(evstore.events)', ARRAY['acct'], async => true);
SELECT evstore.create_sync_projection('sync_inline', 'sync_inline', 'stream_id',
    upsert_types => ARRAY['Deposited', 'B1']);
SELECT evstore.create_sync_projection('sync_async', 'sync_async', 'stream_id',
    upsert_types => ARRAY['Deposited', 'B1'], async => true);
});

sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'evstore async worker' AND datname = 'postgres'");
}

# the async projections have applied everything committed so far
sub caught_up
{
	my ($what) = @_;
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 2 FROM evstore.projections
		 WHERE async AND state = 'running' AND checkpoint >= (SELECT max(global_position) FROM evstore.events)}),
		"async projections caught up ($what)");
}

sub same_models
{
	my ($what) = @_;
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM model_inline i FULL JOIN model_async a USING (stream_id)
		 WHERE (i.*) IS DISTINCT FROM (a.*)}),
		'0', "handler: the async read model equals the inline one ($what)");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM sync_inline i FULL JOIN sync_async a USING (stream_id)
		 WHERE (i.*) IS DISTINCT FROM (a.*)}),
		'0', "attribute sync: the async read model equals the inline one ($what)");
	is($node->safe_psql('postgres', 'SELECT sum(n) FROM model_async'),
		$node->safe_psql('postgres', "SELECT count(*) FROM evstore.events WHERE category = 'acct'"),
		"every committed event applied exactly once ($what)");
}

ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'evstore async worker'"),
	'the launcher started one worker for the database');

# --- concurrent writers with late commits and rollbacks; the worker is
# killed while they run
srand(41);
my @files = writer_scripts($node, writers => $writers, txns => $txns_per_writer,
	streams => 12, checked => 0.15);
my $connstr = $node->connstr('postgres');
my @harnesses;
for my $file (@files)
{
	my ($out, $err) = ('', '');
	push @harnesses, IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $connstr, '-f', $file],
		'>', \$out, '2>', \$err);
}
ok($node->poll_query_until('postgres',
		"SELECT checkpoint > 50 FROM evstore.projections WHERE name = 'async'"),
	'the async projection follows the writers');
my $pid = worker_pid();
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'the worker is killed');
ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE backend_type = 'evstore async worker' AND pid <> $pid}),
	'the worker is restarted');
$_->finish for @harnesses;
is($node->safe_psql('postgres', 'SELECT count(*) FROM writers_done'), $writers, 'the writers finished');
cmp_ok($node->safe_psql('postgres', q{SELECT max(global_position) - count(*) FROM evstore.events}),
	'>', 0, 'rollbacks left gaps in the positions');
caught_up('after concurrent writers and a killed worker');
same_models('after concurrent writers and a killed worker');
is($node->safe_psql('postgres', "SELECT count(*) FROM evstore.projections WHERE last_error IS NOT NULL"),
	'0', 'no projection failed');

# --- an immediate server stop in the middle of the batches
$node->safe_psql('postgres', q{
	SELECT evstore.pause_projection('async');
	SELECT evstore.pause_projection('sync_async');
	SELECT evstore.append_event('acct-' || (i % 17), 'Deposited', jsonb_build_object('w', 0, 'i', i))
	  FROM generate_series(1, 20000) i;
	SELECT evstore.resume_projection('async');
	SELECT evstore.resume_projection('sync_async');
});
my $before = $node->safe_psql('postgres', "SELECT checkpoint FROM evstore.projections WHERE name = 'async'");
ok($node->poll_query_until('postgres',
		"SELECT checkpoint > $before + 100 FROM evstore.projections WHERE name = 'async'"),
	'the worker is working through the backlog');
$node->stop('immediate');
$node->start;
my $after = $node->safe_psql('postgres', "SELECT checkpoint FROM evstore.projections WHERE name = 'async'");
cmp_ok($after, '<', $node->safe_psql('postgres', 'SELECT max(global_position) FROM evstore.events'),
	'the server stopped before the projection had caught up');
caught_up('after an immediate stop');
same_models('after an immediate stop');

# --- pause and resume
$node->safe_psql('postgres', "SELECT evstore.pause_projection('async')");
my $paused_at = $node->safe_psql('postgres', "SELECT checkpoint FROM evstore.projections WHERE name = 'async'");
$node->safe_psql('postgres', "SELECT evstore.append_event('acct-1', 'Deposited', '{\"i\": 5}')");
ok($node->poll_query_until('postgres',
		"SELECT checkpoint = (SELECT max(global_position) FROM evstore.events) FROM evstore.projections WHERE name = 'sync_async'"),
	'the other async projection goes on');
is($node->safe_psql('postgres', "SELECT state || ' ' || checkpoint || ' ' || lag_positions FROM evstore.projections WHERE name = 'async'"),
	"paused $paused_at 1", 'a paused projection stays at its checkpoint, and shows its lag');
$node->safe_psql('postgres', "SELECT evstore.resume_projection('async')");
caught_up('after resume');
same_models('after resume');

# --- a failing event
my $have_nack = $node->safe_psql('postgres',
	"SELECT to_regprocedure('evstore.subscription_nack(text, integer, bigint, text, interval, text)') IS NOT NULL");
$node->safe_psql('postgres', q{
CREATE TABLE poison_model (seq bigserial, stream_id text, stream_version bigint);
CREATE FUNCTION project_poison(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data->>'poison' = 'yes' THEN
        RAISE EXCEPTION 'cannot handle event % of %', e.stream_version, e.stream_id;
    END IF;
    INSERT INTO public.poison_model (stream_id, stream_version) VALUES (e.stream_id, e.stream_version);
END $$;
SELECT evstore.create_projection('poison', 'project_poison(evstore.events)', ARRAY['pz'], async => true);
-- with nack: the subscription's failure settings apply
SELECT evstore.alter_subscription('projection:poison', max_attempts => 2, retry_delay => '0')
 WHERE to_regprocedure('evstore.subscription_nack(text, integer, bigint, text, interval, text)') IS NOT NULL;
SELECT evstore.append_event('pz-1', 'Ok', '{}');
SELECT evstore.append_event('pz-1', 'Bad', '{"poison": "yes"}');
SELECT evstore.append_event('pz-1', 'Ok', '{}');
SELECT evstore.append_event('pz-2', 'Ok', '{}');
});
if ($have_nack eq 't')
{
	ok($node->poll_query_until('postgres',
			"SELECT parked_events = 1 FROM evstore.projections WHERE name = 'poison'"),
		'nack: the failing event is retried, then parked');
	is($node->safe_psql('postgres', q{
		SELECT stream_id || '/' || stream_version || ' ' || attempts || ' ' || (last_error LIKE 'cannot handle event 1 of pz-1%')
		  FROM evstore.subscription_parked WHERE subscription = 'projection:poison'}),
		'pz-1/1 2 true', 'nack: the parked event, its attempts and error are in evstore.subscription_parked');
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 1 FROM poison_model WHERE stream_id = 'pz-2'"),
		'nack: the other stream goes on');
	$node->safe_psql('postgres', "SELECT evstore.append_event('pz-2', 'Ok', '{}')");
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 2 FROM poison_model WHERE stream_id = 'pz-2'"),
		'nack: and goes on after the event was parked');
	is($node->safe_psql('postgres', "SELECT string_agg(stream_id || '/' || stream_version, ',' ORDER BY 1) FROM poison_model"),
		'pz-1/0,pz-2/0,pz-2/1', 'nack: the later event of the failing stream waits');
	is($node->safe_psql('postgres', "SELECT state || ' ' || held_streams FROM evstore.projections WHERE name = 'poison'"),
		'running 1', 'nack: the projection runs on, holding one stream back');
}
else
{
	ok($node->poll_query_until('postgres',
			"SELECT state = 'failed' FROM evstore.projections WHERE name = 'poison'"),
		'without nack: the projection stops after its attempts');
	is($node->safe_psql('postgres', q{
		SELECT failing_attempts || ' ' || (failing_position = (SELECT global_position FROM evstore.events
		                                                        WHERE stream_id = 'pz-1' AND stream_version = 1))
		       || ' ' || (last_error LIKE 'cannot handle event 1 of pz-1%')
		  FROM evstore.projections WHERE name = 'poison'}),
		'3 true true', 'without nack: the attempts, the failing position and the error are shown');
	is($node->safe_psql('postgres', "SELECT string_agg(stream_id || '/' || stream_version, ',' ORDER BY 1) FROM poison_model"),
		'pz-1/0', 'without nack: the events before the failing one were applied, nothing after it');
}
# fixed, resumed: everything is applied once, in order
$node->safe_psql('postgres', q{
CREATE OR REPLACE FUNCTION project_poison(e evstore.events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.poison_model (stream_id, stream_version) VALUES (e.stream_id, e.stream_version) $$;
});
if ($have_nack eq 't')
{
	$node->safe_psql('postgres', "SELECT evstore.subscription_replay('projection:poison')");
}
$node->safe_psql('postgres', "SELECT evstore.resume_projection('poison')");
my $pz = $have_nack eq 't' ? 5 : 4;
ok($node->poll_query_until('postgres', "SELECT count(*) = $pz FROM poison_model"),
	'after the fix every event of the poisoned projection is applied');
is($node->safe_psql('postgres', "SELECT count(*) FROM (SELECT DISTINCT stream_id, stream_version FROM poison_model) d"),
	$pz, 'each of them once');
is($node->safe_psql('postgres', q{
	SELECT string_agg(stream_version::text, ',' ORDER BY seq) FROM poison_model WHERE stream_id = 'pz-1'}),
	'0,1,2', 'the failing stream in version order');
same_models('at the end');

# the worker runs every projection in the same session: one leaves nothing
# behind for the next (settings rolled back, session advisory locks refused)
$node->safe_psql('postgres', q{
CREATE TABLE session_seen (projection text, work_mem text);
CREATE FUNCTION a_setter(e evstore.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('work_mem', '77MB', false);
    INSERT INTO public.session_seen VALUES ('a_setter', current_setting('work_mem'));
    IF e.event_type = 'Lock' THEN
        PERFORM pg_advisory_lock(4242);
    END IF;
END $$;
CREATE FUNCTION b_reader(e evstore.events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.session_seen VALUES ('b_reader', current_setting('work_mem')) $$;
SELECT evstore.create_projection('a_setter', 'a_setter(evstore.events)', ARRAY['sess'], async => true);
SELECT evstore.create_projection('b_reader', 'b_reader(evstore.events)', ARRAY['sess'], async => true);
SELECT evstore.append_event('sess-1', 'Set', '{}');
SELECT evstore.append_event('sess-1', 'Lock', '{}');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM session_seen WHERE projection = 'b_reader'}),
	'both projections ran');
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT projection || '=' || work_mem, ' ') FROM session_seen"),
	'a_setter=77MB b_reader=4MB', 'a setting one projection made is rolled back before the next runs');
ok($node->poll_query_until('postgres', q{
	SELECT last_error LIKE '%took a session-level advisory lock%' FROM evstore.projections WHERE name = 'a_setter'}),
	'a session-level advisory lock fails the event');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE a.backend_type = 'evstore async worker' AND l.locktype = 'advisory'}),
	'0', 'and the worker holds no advisory lock');

# dropping an async projection drops its subscription
$node->safe_psql('postgres', "SELECT evstore.drop_projection('poison')");
is($node->safe_psql('postgres', "SELECT count(*) FROM evstore.subscriptions WHERE name = 'projection:poison'"),
	'0', 'drop_projection drops the subscription');

$node->stop;
done_testing();
