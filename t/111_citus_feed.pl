# Distributed mode on Citus, the feed side (docs/distributed.md), on
# 1 coordinator + 2 workers: the output plugin on every node (no FATAL on a
# Citus node, one slot per worker emits each event once, also across shard
# moves in both transfer modes), read_all_shard never skipping under
# concurrent appenders with late commits on a worker (the stress and hole
# tests of t/001_core_stress.pl and the fence, against a worker), the
# coordinator's merged feed, durable subscriptions whose checkpoint vector
# survives a shard move without skipping or duplicating, and projections
# created and dropped on the coordinator, on every worker.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use CitusCluster;
use EvstoreTest;

citus_skip_unless_available();

# Citus marks the rows it copies for shard moves and splits with a
# replication origin only with change data capture on (docs/distributed.md)
my ($coord, @workers) = citus_cluster('feed',
	extra_conf => "citus.enable_change_data_capture = on\nmax_replication_slots = 10\n");
my ($w1, $w2) = @workers;

my ($rc, $out, $err) = $coord->psql('postgres', 'SELECT evstore.distribute(shard_count => 8)');
is($rc, 0, 'evstore.distribute()') or diag $err;

# ---------------------------------------------------------------------------
# the output plugin on every node
# ---------------------------------------------------------------------------
for my $n ($coord, @workers)
{
	($rc, $out, $err) = $n->psql('postgres', q{
SELECT 'slot' FROM pg_create_logical_replication_slot('feed', 'evstore');
SELECT count(*) FROM pg_logical_slot_get_changes('feed', NULL, NULL)});
	is($rc, 0, 'the output plugin decodes on Citus node ' . $n->name) or diag $err;
	unlike($err, qr/relcache_callback_list/, 'no relcache callback overflow on ' . $n->name);
}

# events through the coordinator, one top-level call each (so Citus
# delegates it to the worker that owns the stream)
sub append_calls
{
	my (@calls) = @_;
	$coord->safe_psql('postgres', join('',
		map { "SELECT evstore.append_event('$_->[0]', '$_->[1]', '{\"n\": $_->[2]}');\n" } @calls));
}

sub append_many
{
	my ($prefix, $streams, $per) = @_;
	append_calls(map { my $n = $_; map { [ "$prefix-$_", 'Deposited', $n ] } 1 .. $streams } 1 .. $per);
}

# event ids a node's slot emitted since the last call
sub slot_events
{
	my ($n) = @_;
	my $ids = $n->safe_psql('postgres', q{
SELECT string_agg(data::jsonb ->> 'event_id', ' ')
  FROM pg_logical_slot_get_changes('feed', NULL, NULL)});
	return grep { $_ ne '' } split / /, $ids;
}

# every event of the store, by id, from the coordinator (routed to the shards)
sub all_event_ids
{
	my ($where) = @_;
	$where //= 'true';
	return split /\n/, $coord->safe_psql('postgres',
		"SELECT event_id FROM evstore.events WHERE $where ORDER BY event_id");
}

# each id in @$got exactly once, and exactly the ids of @$want
sub exactly_once
{
	my ($got, $want, $what) = @_;
	my %count;
	$count{$_}++ for @$got;
	my @dups = grep { $count{$_} > 1 } keys %count;
	my %want = map { $_ => 1 } @$want;
	my @missing = grep { !$count{$_} } @$want;
	my @extra = grep { !$want{$_} } keys %count;
	is(scalar(@dups) . ' ' . scalar(@missing) . ' ' . scalar(@extra), '0 0 0',
		"$what: each event once (duplicates, missing, unexpected)");
}

append_many('acct', 20, 3);
my @all = all_event_ids();
is(scalar @all, 60, '60 events appended through the coordinator');
my @w1_ids = slot_events($w1);
my @w2_ids = slot_events($w2);
is(scalar(slot_events($coord)), 0, 'the coordinator\'s slot emits nothing (it holds no shard)');
cmp_ok(scalar @w1_ids, '>', 0, 'worker 1\'s slot emitted its events');
cmp_ok(scalar @w2_ids, '>', 0, 'worker 2\'s slot emitted its events');
exactly_once([ @w1_ids, @w2_ids ], \@all, 'per-worker slots after delegated appends');

# the slot of a worker emits the events of its own shards
my $w1_port = $w1->port;
my @w1_local = split /\n/, $coord->safe_psql('postgres', qq{
SELECT e.event_id FROM evstore.events e JOIN evstore.shards s
    ON s.table_name = 'events' AND hashtext(e.stream_id) BETWEEN s.hash_min AND s.hash_max
 WHERE s.node_port = $w1_port ORDER BY 1});
is(join(',', sort @w1_ids), join(',', @w1_local), 'worker 1\'s slot emitted exactly its shards\' events');

# ---------------------------------------------------------------------------
# shard moves: the copied rows are not emitted again
# ---------------------------------------------------------------------------
# the shard of stream acct-1, and where it is
sub shard_of
{
	my ($s) = @_;
	return split /\|/, $coord->safe_psql('postgres', qq{
SELECT shardid, node_port FROM evstore.shards
 WHERE table_name = 'events' AND hashtext('$s') BETWEEN hash_min AND hash_max});
}

sub node_by_port
{
	my ($port) = @_;
	return (grep { $_->port == $port } @workers)[0];
}

for my $mode ('force_logical', 'block_writes')
{
	my ($shard, $port) = shard_of('acct-1');
	my $from = node_by_port($port);
	my $to = $from == $w1 ? $w2 : $w1;
	my $before = scalar all_event_ids();
	($rc, $out, $err) = $coord->psql('postgres', qq{
SELECT citus_move_shard_placement($shard, '127.0.0.1', ${\ $from->port}, '127.0.0.1', ${\ $to->port},
                                  shard_transfer_mode => '$mode')});
	is($rc, 0, "shard $shard moved ($mode)") or diag $err;
	is((shard_of('acct-1'))[1], $to->port, "the shard of acct-1 is on the other worker ($mode)");
	# appends after the move, to the moved shard and to the others
	append_many("moved-$mode", 10, 2);
	append_calls([ 'acct-1', "AfterMove-$mode", 0 ]);
	my @new = all_event_ids("event_type = 'AfterMove-$mode' OR stream_id LIKE 'moved-$mode-%'");
	my @got = (slot_events($w1), slot_events($w2), slot_events($coord));
	exactly_once(\@got, \@new, "per-worker slots across a shard move ($mode)");
	$coord->safe_psql('postgres', 'CALL citus_cleanup_orphaned_resources()');
	is(scalar(slot_events($w1)) + scalar(slot_events($w2)), 0,
		"dropping the old placement emits nothing ($mode)");
}

# ---------------------------------------------------------------------------
# read_all_shard on a worker: never skips under concurrent appenders
# ---------------------------------------------------------------------------
# streams whose shards are on worker 1, and worker 1's shards
my $w1_streams = $coord->safe_psql('postgres', qq{
SELECT string_agg(s, ' ') FROM (
  SELECT 'w1-' || i AS s FROM generate_series(1, 200) i) c
 WHERE EXISTS (SELECT FROM evstore.shards sh
                WHERE sh.table_name = 'events' AND sh.node_port = $w1_port
                  AND hashtext(c.s) BETWEEN sh.hash_min AND sh.hash_max)});
my @w1_streams = (split / /, $w1_streams)[ 0 .. 11 ];
is(scalar(grep { defined } @w1_streams), 12, '12 streams on worker 1');

# reading a shard that is not on this node is refused
my ($w2_shard) = split /\n/, $coord->safe_psql('postgres', qq{
SELECT shardid FROM evstore.shards WHERE table_name = 'events' AND node_port = ${\ $w2->port} LIMIT 1});
($rc, $out, $err) = $w1->psql('postgres', qq{
\\set VERBOSITY verbose
SELECT * FROM evstore.read_all_shard($w2_shard)});
like($err, qr/55000.*shard $w2_shard of evstore\.events is not placed on this node/,
	'read_all_shard of a shard on another node: 55000, says where it is');

# local objects on the worker, not propagated
$w1->safe_psql('postgres', q{
SET citus.enable_ddl_propagation = off;
CREATE TABLE seen (seq bigserial, shard bigint, pos bigint, stream_id text, version bigint);
CREATE TABLE writers_done (w int);
CREATE TABLE polls (n int);
CREATE PROCEDURE poll(writers int) LANGUAGE plpgsql AS $$
DECLARE
    ckpt jsonb := '{}';
    sh bigint;
    got int;
    r record;
    finished boolean;
BEGIN
    LOOP
        SELECT count(*) = writers INTO finished FROM writers_done;
        got := 0;
        FOR sh IN SELECT p.shardid FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                   WHERE s.logicalrelid = 'evstore.events'::regclass
                     AND p.groupid = (SELECT groupid FROM pg_dist_local_group) LOOP
            FOR r IN SELECT * FROM evstore.read_all_shard(sh, coalesce((ckpt ->> sh::text)::bigint, 0), 50) LOOP
                INSERT INTO seen (shard, pos, stream_id, version)
                    VALUES (sh, r.global_position, r.stream_id, r.stream_version);
                ckpt := evstore.checkpoint_advance(ckpt, sh, r.global_position);
                got := got + 1;
            END LOOP;
        END LOOP;
        INSERT INTO polls VALUES (got);
        COMMIT;
        EXIT WHEN finished AND got = 0;
        PERFORM pg_sleep(0.002);
    END LOOP;
END $$;
});
my $before_stress = $coord->safe_psql('postgres', 'SELECT count(*) FROM evstore.events');

srand(17);
my $writers = 4;
my @files = writer_scripts($w1, writers => $writers, txns => 80,
	stream_names => \@w1_streams, checked => 0.15);
my $connstr = $w1->connstr('postgres');
my ($pout, $perr) = ('', '');
my $poller = IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $connstr,
	'-c', "CALL poll($writers)"], '>', \$pout, '2>', \$perr);
my @harnesses;
my @werr = ('') x $writers;
for my $i (0 .. $#files)
{
	push @harnesses, IPC::Run::start(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', '-d', $connstr,
		'-f', $files[$i]], '>', \my $o, '2>', \$werr[$i]);
}
$_->finish for @harnesses;
ok($poller->finish, 'the per-shard poller on worker 1 finished cleanly') or diag($perr);
unlike(join('', @werr), qr/ES020|not.*on this node/, 'every append on worker 1 was to a local stream');

my $streams_list = join(',', map { "'$_'" } @w1_streams);
my $committed = $coord->safe_psql('postgres',
	"SELECT count(*) FROM evstore.events WHERE stream_id IN ($streams_list)");
cmp_ok($committed, '>', 100, "writers on worker 1 committed $committed events");
# what worker 1's shards hold: the stress's events and those of before
my $w1_all = $coord->safe_psql('postgres', qq{
SELECT string_agg(e.global_position::text, ',' ORDER BY e.global_position)
  FROM evstore.events e JOIN evstore.shards s
    ON s.table_name = 'events' AND hashtext(e.stream_id) BETWEEN s.hash_min AND s.hash_max
 WHERE s.node_port = $w1_port});
is($w1->safe_psql('postgres',
	'SELECT count(*) FROM (SELECT pos FROM seen GROUP BY pos HAVING count(*) > 1) d'),
	'0', 'no event was delivered twice');
is($w1->safe_psql('postgres', "SELECT string_agg(pos::text, ',' ORDER BY pos) FROM seen"),
	$w1_all, 'the poller saw exactly the events committed in worker 1\'s shards');
is($w1->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM seen) s
	WHERE prev IS NOT NULL AND version <> prev + 1}),
	'0', 'each stream arrived in version order with no gaps');
is($w1->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT pos, lag(pos) OVER (PARTITION BY shard ORDER BY seq) AS prev FROM seen) s
	WHERE pos <= prev}),
	'0', 'positions arrived strictly increasing per shard');
cmp_ok($w1->safe_psql('postgres', 'SELECT count(*) FROM polls WHERE n > 0'), '>', 3,
	'the poller ran concurrently with the writers');

# the hole test: a late commit holds back every shard of its node
my $holder = $w1->background_psql('postgres');
$holder->query_safe("BEGIN; SELECT evstore.append_event('$w1_streams[0]', 'Late', '{}')");
$w1->safe_psql('postgres', "SELECT evstore.append_event('$w1_streams[1]', 'Early', '{}')");
my $early = $w1->safe_psql('postgres', q{
SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid),
       LATERAL evstore.read_all_shard(p.shardid, 0, 100000) e
 WHERE s.logicalrelid = 'evstore.events'::regclass
   AND p.groupid = (SELECT groupid FROM pg_dist_local_group)
   AND e.event_type IN ('Early', 'Late')});
is($early, '0', 'an event committed after an in-flight append is held back on every shard of the node');
$holder->query_safe('COMMIT');
$holder->quit;
is($w1->safe_psql('postgres', q{
SELECT string_agg(e.event_type, ',' ORDER BY e.global_position)
  FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid),
       LATERAL evstore.read_all_shard(p.shardid, 0, 100000) e
 WHERE s.logicalrelid = 'evstore.events'::regclass
   AND p.groupid = (SELECT groupid FROM pg_dist_local_group)
   AND e.event_type IN ('Early', 'Late')}), 'Late,Early',
	'both are returned, in position order, once the late one commits');
is($w1->safe_psql('postgres', 'SELECT count(*) FROM evstore.appenders()'), '0',
	'no appender left in worker 1\'s fence');

# the slots saw the worker's own appends once
exactly_once([ slot_events($w1), slot_events($w2) ],
	[ all_event_ids("stream_id IN ($streams_list)") ], 'per-worker slots after the stress on worker 1');

# ---------------------------------------------------------------------------
# the coordinator's merged feed
# ---------------------------------------------------------------------------
my @all_now = all_event_ids();
my $feed = $coord->safe_psql('postgres', q{
CREATE TEMP TABLE got (seq bigserial, shard bigint, pos bigint, id uuid, stream_id text, version bigint);
DO $$
DECLARE
    ckpt jsonb := '{}';
    r record;
    n int;
BEGIN
    LOOP
        n := 0;
        FOR r IN SELECT * FROM evstore.read_all_distributed(ckpt, 37) LOOP
            INSERT INTO got (shard, pos, id, stream_id, version)
                VALUES (r.shard_id, (r.event).global_position, (r.event).event_id,
                        (r.event).stream_id, (r.event).stream_version);
            ckpt := evstore.checkpoint_advance(ckpt, r.shard_id, (r.event).global_position);
            n := n + 1;
        END LOOP;
        EXIT WHEN n = 0;
    END LOOP;
END $$;
SELECT string_agg(id::text, ' ') FROM got;
SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM got) s
 WHERE prev IS NOT NULL AND version <> prev + 1});
my ($feed_ids, $feed_gaps) = split /\n/, $feed;
exactly_once([ split / /, $feed_ids ], \@all_now, 'read_all_distributed in batches of 37');
is($feed_gaps, '0', 'read_all_distributed keeps each stream in version order');

# ---------------------------------------------------------------------------
# durable subscriptions with a checkpoint vector, across a shard move
# ---------------------------------------------------------------------------
$coord->safe_psql('postgres', q{
CREATE TABLE sub_seen (seq bigserial, id uuid, stream_id text, version bigint);
CREATE PROCEDURE drain(sub text) LANGUAGE plpgsql AS $$
DECLARE
    r record;
    vec jsonb;
    n int;
BEGIN
    LOOP
        n := 0;
        vec := '{}';
        FOR r IN SELECT * FROM evstore.subscription_fetch_shards(sub, 0, 25, 'c1') LOOP
            INSERT INTO sub_seen (id, stream_id, version)
                VALUES ((r.event).event_id, (r.event).stream_id, (r.event).stream_version);
            vec := evstore.checkpoint_advance(vec, r.shard_id, (r.event).global_position);
            n := n + 1;
        END LOOP;
        PERFORM evstore.subscription_ack_shards(sub, 0, vec, 'c1');
        COMMIT;
        EXIT WHEN n = 0;
    END LOOP;
END $$;
SELECT evstore.create_subscription('sub');
CALL drain('sub');
});
exactly_once([ split /\n/, $coord->safe_psql('postgres', 'SELECT id FROM sub_seen') ],
	[ all_event_ids() ], 'a durable subscription over every shard');

# The moved shard's new node must hand out positions above every one the
# shard holds, or a stream of it could get a position below the
# subscription's checkpoint: make the shard's current node far ahead, its
# target behind, and append after the move to a stream of the shard whose
# own last position is low.
my ($shard, $port) = shard_of('acct-2');
my $from = node_by_port($port);
my $to = $from == $w1 ? $w2 : $w1;
my @hot = grep { (shard_of($_))[0] == $shard } map { "hot-$_" } 1 .. 200;
my $hot = $hot[0];
my $seq = 'SELECT last_value FROM evstore.global_position_seq';
my $behind = ($to->safe_psql('postgres', $seq) - $from->safe_psql('postgres', $seq)) / 64;
append_calls(map { [ $hot, 'Hot', $_ ] } 1 .. ($behind > 0 ? int($behind) : 0) + 100);
cmp_ok($from->safe_psql('postgres', $seq), '>', $to->safe_psql('postgres', $seq) + 64 * 50,
	'the node the shard leaves has handed out positions far above the node it goes to');
$coord->safe_psql('postgres', "CALL drain('sub')");
my $vec_before = $coord->safe_psql('postgres', "SELECT evstore.subscription_vector('sub') ->> '$shard'");
($rc, $out, $err) = $coord->psql('postgres', qq{
SELECT citus_move_shard_placement($shard, '127.0.0.1', ${\ $from->port}, '127.0.0.1', ${\ $to->port})});
is($rc, 0, "shard $shard of acct-2 moved with a subscription's checkpoint in it") or diag $err;
is($coord->safe_psql('postgres', "SELECT evstore.subscription_vector('sub') ->> '$shard'"), $vec_before,
	'the checkpoint of the moved shard is kept (same shard id)');
append_calls(map { [ "acct-$_", 'AfterMove2', $_ ] } 2 .. 12);
$coord->safe_psql('postgres', "CALL drain('sub')");
exactly_once([ split /\n/, $coord->safe_psql('postgres', 'SELECT id FROM sub_seen') ],
	[ all_event_ids() ], 'the subscription across a shard move: nothing skipped, nothing twice');
cmp_ok($coord->safe_psql('postgres', q{
SELECT min(global_position) FROM evstore.events WHERE event_type = 'AfterMove2' AND stream_id = 'acct-2'}),
	'>', $vec_before, 'the first append after the move got a position above the shard\'s checkpoint');
is($coord->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT version, lag(version) OVER (PARTITION BY stream_id ORDER BY seq) AS prev FROM sub_seen) s
 WHERE prev IS NOT NULL AND version <> prev + 1}), '0', 'the subscription kept every stream in order');

# the old placement's copy is refused (Citus drops it later)
($rc, $out, $err) = $from->psql('postgres', "SELECT count(*) FROM evstore.read_all_shard($shard)");
like($err, qr/is not placed on this node/, 'read_all_shard refuses the copy a move left behind');

# a bad vector is refused clearly
($rc, $out, $err) = $coord->psql('postgres', qq{SELECT evstore.subscription_ack_shards('sub', 0, '{"1": 5}', 'c1')});
like($err, qr/shard 1 is not a shard of evstore\.events/, 'acknowledging an unknown shard is refused');

# ---------------------------------------------------------------------------
# projections created on the coordinator run on the workers
# ---------------------------------------------------------------------------
($rc, $out, $err) = $coord->psql('postgres', q{
CREATE TABLE public.proj_log (stream_id text, event_id uuid, PRIMARY KEY (stream_id, event_id));
SELECT create_distributed_table('public.proj_log', 'stream_id', colocate_with => 'evstore.events');
CREATE FUNCTION public.log_event(e evstore.events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.proj_log VALUES (e.stream_id, e.event_id) $$;
SELECT evstore.create_projection('logger', 'public.log_event(evstore.events)', NULL, ARRAY['Logged']);
CREATE TABLE public.balances (stream_id text PRIMARY KEY, n integer);
SELECT create_distributed_table('public.balances', 'stream_id', colocate_with => 'evstore.events');
SELECT evstore.create_sync_projection('bal', 'public.balances', 'stream_id', upsert_types => ARRAY['Logged']);
});
is($rc, 0, 'a handler and a sync projection created on the coordinator') or diag $err;
for my $n (@workers)
{
	is($n->safe_psql('postgres', 'SELECT string_agg(name, \',\' ORDER BY name) FROM evstore.projections_catalog'),
		'bal,logger', 'the projections exist on ' . $n->name);
}
append_calls(map { my $n = $_; map { [ "proj-$_", 'Logged', $n ] } 1 .. 10 } 1 .. 3);
is($coord->safe_psql('postgres', 'SELECT count(*) FROM public.proj_log'), '30',
	'the handler projection ran on the workers for each of 30 delegated appends');
is($coord->safe_psql('postgres', 'SELECT count(*), min(n), max(n) FROM public.balances'),
	'10|3|3', 'the sync projection upserted each stream\'s row (through SQL, routed by Citus)');
($rc, $out, $err) = $coord->psql('postgres', q{
SELECT evstore.drop_projection('logger');
SELECT evstore.drop_projection('bal');
SELECT evstore.drop_projection('bal', if_exists => true);});
is($rc, 0, 'the projections dropped on the coordinator') or diag $err;
for my $n (@workers)
{
	is($n->safe_psql('postgres', 'SELECT count(*) FROM evstore.projections_catalog'), '0',
		'and on ' . $n->name);
}
append_calls([ 'proj-1', 'Logged', 9 ]);
is($coord->safe_psql('postgres', 'SELECT count(*) FROM public.proj_log'), '30',
	'a dropped projection no longer runs on the workers');

$_->stop for ($coord, @workers);
done_testing();
