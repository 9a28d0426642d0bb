/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  The subscription fence: which global positions read_all may return.
 *
 * Global positions come from a sequence, so they are handed out before the
 * appending transaction commits, and transactions commit out of order.  A
 * poller that returned position 10 while position 9 was still in flight
 * would skip 9 forever once it checkpoints 10.
 *
 * Every appending transaction therefore publishes, in shared memory and
 * *before* it draws its first position, a lower bound on the positions it
 * can hold: the sequence's last value plus one.  The slot is cleared only
 * after the transaction's commit or abort is visible to new snapshots, or
 * after the rollback of the last (sub)transaction that still held one of
 * its events.  A reader reads the sequence's last value L first, then scans
 * the slots of its own database; the horizon is min(L, lowest published
 * bound - 1).  Every position at or below the horizon belongs to a
 * transaction that has finished, so a snapshot taken afterwards sees all of
 * them that will ever exist.
 *
 * Each database has its own sequence, so slots carry their database and
 * readers look only at their own.  Per database the fence also keeps a
 * high-water mark ("high": the highest position stored, and the highest
 * candidate horizon any reader computed) and the highest horizon ever
 * returned.  read_all never returns less than a horizon it returned before
 * (monotonic), and an append refuses a position at or below "high": the
 * sequence moved backwards (setval, RESTART), and the position could land
 * below one a subscriber has already passed, or on a stored one.  That
 * check is also what keeps the argument sound when the sequence misbehaves.
 *
 * Only appending transactions publish, so idle or long-running
 * transactions that never append do not hold read_all back.  See
 * docs/read_all.md for the full argument.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_sequence.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/condition_variable.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/*
 * One backend's slot.  Only its backend writes it: the database first,
 * then (after a write barrier) the bound.  A slot changes database only
 * when a new backend takes it over, after the old one cleared its bound.
 */
typedef struct FenceSlot
{
	pg_atomic_uint64 low;		/* lowest position this xact may hold; 0 = idle */
	pg_atomic_uint32 dboid;		/* database of the backend */
	int			pid;			/* for evstore.appenders(); informational */
} FenceSlot;

/*
 * One database's positions.  dboid and seqoid change only under the mutex
 * (an entry is claimed, reset for a re-created extension, or reclaimed
 * from a dropped database); high and horizon only ever grow.
 */
typedef struct FenceDatabase
{
	pg_atomic_uint32 dboid;		/* InvalidOid = free */
	Oid			seqoid;			/* its evstore.global_position_seq */
	pg_atomic_uint64 high;		/* highest position stored or horizon computed */
	pg_atomic_uint64 horizon;	/* highest horizon read_all returned */
	/* waiting read_all calls (read_all's timeout): see evstore_fence_wait_* */
	pg_atomic_uint64 ended;		/* appending (sub)transactions that ended */
	pg_atomic_uint32 waiters;	/* backends waiting on cv */
	ConditionVariable cv;		/* broadcast when "ended" grows and waiters > 0 */
} FenceDatabase;

typedef struct FenceShared
{
	slock_t		mutex;			/* for claiming database entries */
	int			nslots;
	FenceDatabase dbs[EVSTORE_FENCE_DATABASES];
	FenceSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} FenceShared;

static FenceShared *fence = NULL;
static bool exit_registered = false;

/* this transaction's publication */
static bool fence_published = false;
static int64 fence_bound = 0;	/* what we published */
static bool fence_shape_checked = false;	/* since we published */
static int64 fence_max_drawn = 0;	/* highest position this xact drew */

/*
 * Lowest (sub)transaction nesting level that still holds an event this
 * transaction appended; 0 when none does.  Events of a subtransaction that
 * commits pass to its parent; those of one that aborts are gone for good.
 */
static int	fence_level = 0;

/* this backend's database entry, and whether it has seeded "high" */
static FenceDatabase *my_db = NULL;
static Oid	my_db_seqoid = InvalidOid;
static bool my_db_seeded = false;

/* Size of the fence in shared memory: one slot per backend. */
Size
evstore_fence_shmem_size(void)
{
	return add_size(offsetof(FenceShared, slots),
					mul_size(MaxBackends, sizeof(FenceSlot)));
}

/*
 * Attach the fence (shmem.c calls this from evstore's shmem_startup_hook,
 * holding AddinShmemInitLock); the first process initializes it.
 */
void
evstore_fence_shmem_startup(void)
{
	bool		found;

	fence = ShmemInitStruct("evstore fence", evstore_fence_shmem_size(), &found);
	if (!found)
	{
		SpinLockInit(&fence->mutex);
		fence->nslots = MaxBackends;
		for (int i = 0; i < EVSTORE_FENCE_DATABASES; i++)
		{
			pg_atomic_init_u32(&fence->dbs[i].dboid, InvalidOid);
			fence->dbs[i].seqoid = InvalidOid;
			pg_atomic_init_u64(&fence->dbs[i].high, 0);
			pg_atomic_init_u64(&fence->dbs[i].horizon, 0);
			pg_atomic_init_u64(&fence->dbs[i].ended, 0);
			pg_atomic_init_u32(&fence->dbs[i].waiters, 0);
			ConditionVariableInit(&fence->dbs[i].cv);
		}
		for (int i = 0; i < MaxBackends; i++)
		{
			pg_atomic_init_u64(&fence->slots[i].low, 0);
			pg_atomic_init_u32(&fence->slots[i].dboid, InvalidOid);
			fence->slots[i].pid = 0;
		}
	}
}

/* Raise *ptr to at least v; returns the value it then has (>= v). */
static uint64
atomic_raise(pg_atomic_uint64 *ptr, uint64 v)
{
	uint64		cur = pg_atomic_read_u64(ptr);

	while (cur < v)
	{
		if (pg_atomic_compare_exchange_u64(ptr, &cur, v))
			return v;
	}
	return cur;
}

static FenceSlot *
my_slot(void)
{
	int			i = evstore_my_backend_slot();

	if (i < 0 || i >= fence->nslots)
		elog(ERROR, "evstore: backend slot %d has no fence slot", i);
	return &fence->slots[i];
}

/* Claim, under the mutex, the entry of this database; NULL when full. */
static FenceDatabase *
claim_database(Oid seqoid)
{
	FenceDatabase *found = NULL;
	FenceDatabase *free_entry = NULL;

	SpinLockAcquire(&fence->mutex);
	for (int i = 0; i < EVSTORE_FENCE_DATABASES; i++)
	{
		Oid			db = pg_atomic_read_u32(&fence->dbs[i].dboid);

		if (db == MyDatabaseId)
		{
			found = &fence->dbs[i];
			break;
		}
		if (db == InvalidOid && free_entry == NULL)
			free_entry = &fence->dbs[i];
	}
	if (found == NULL && free_entry != NULL)
	{
		found = free_entry;
		found->seqoid = InvalidOid;
		pg_atomic_write_u32(&found->dboid, MyDatabaseId);
	}
	if (found != NULL && found->seqoid != seqoid)
	{
		/*
		 * A new entry, or the extension was dropped and created again: its
		 * new sequence starts afresh.  The caller has the sequence open, so
		 * seqoid is the database's current one.
		 */
		found->seqoid = seqoid;
		pg_atomic_write_u64(&found->high, 0);
		pg_atomic_write_u64(&found->horizon, 0);
	}
	SpinLockRelease(&fence->mutex);
	return found;
}

/*
 * This database's entry.  The caller has just opened the sequence seqoid,
 * so it exists and is this database's evstore.global_position_seq.
 */
static FenceDatabase *
fence_database(Oid seqoid)
{
	FenceDatabase *db;

	if (likely(my_db != NULL && my_db_seqoid == seqoid &&
			   pg_atomic_read_u32(&my_db->dboid) == MyDatabaseId &&
			   my_db->seqoid == seqoid))
		return my_db;

	my_db = NULL;
	db = claim_database(seqoid);
	if (db == NULL)
	{
		/* reclaim the entries of databases that were dropped, and retry */
		for (int i = 0; i < EVSTORE_FENCE_DATABASES; i++)
		{
			Oid			other = pg_atomic_read_u32(&fence->dbs[i].dboid);

			if (other == InvalidOid || other == MyDatabaseId ||
				SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(other)))
				continue;
			SpinLockAcquire(&fence->mutex);
			if (pg_atomic_read_u32(&fence->dbs[i].dboid) == other)
			{
				fence->dbs[i].seqoid = InvalidOid;
				pg_atomic_write_u32(&fence->dbs[i].dboid, InvalidOid);
			}
			SpinLockRelease(&fence->mutex);
		}
		db = claim_database(seqoid);
	}
	if (db == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many databases use evstore on this server"),
				 errdetail("evstore's shared memory keeps the positions of at most %d databases; entries of dropped databases are reused.",
						   EVSTORE_FENCE_DATABASES),
				 errhint("Drop databases that no longer use evstore, or restart the server to forget them.")));
	my_db = db;
	my_db_seqoid = seqoid;
	my_db_seeded = false;
	return db;
}

/*
 * Our bound is gone: read_all's horizon may have moved.  Count the end and
 * wake the backends waiting in read_all (evstore_fence_wait_*), if any.  The
 * counter's atomic add is a full barrier between our cleared slot and the
 * read of "waiters"; a waiter adds itself to "waiters" (another full
 * barrier) before it reads the counter and the slots, so either it sees our
 * cleared slot, or we see it and broadcast.  With nobody waiting, an
 * appender pays one atomic add.
 */
static void
fence_wake_waiters(void)
{
	if (my_db == NULL)
		return;
	(void) pg_atomic_fetch_add_u64(&my_db->ended, 1);
	if (pg_atomic_read_u32(&my_db->waiters) > 0)
		ConditionVariableBroadcast(&my_db->cv);
}

static void
fence_clear(void)
{
	if (fence_published)
	{
		FenceSlot  *slot = my_slot();

		pg_atomic_write_u64(&slot->low, 0);
		slot->pid = 0;
		pg_memory_barrier();
		fence_published = false;
		fence_wake_waiters();
	}
	fence_level = 0;
	fence_max_drawn = 0;
}

static void
fence_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (fence_published)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that appended events"),
						 errdetail("A prepared transaction would hold positions that subscriptions cannot see past until COMMIT PREPARED."),
						 errhint("Append events in an ordinary transaction.")));
			break;
		case XACT_EVENT_PRE_COMMIT:
			/* our positions are about to be stored for good */
			if (fence_max_drawn > 0 && my_db != NULL)
				(void) atomic_raise(&my_db->high, (uint64) fence_max_drawn);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* called after ProcArrayEndTransaction: the outcome is visible */
			fence_clear();
			break;
		default:
			break;
	}
}

/*
 * A subtransaction ends.  Its callbacks run while it is still the current
 * one (GetCurrentTransactionNestLevel() is its level), and on abort after
 * RecordTransactionAbort: its xids are marked aborted and gone from the
 * proc array, so its events are invisible to every snapshot, for good, even
 * if the top transaction commits.  When no live level holds an event any
 * more, the bound is released; the next append publishes a fresh one
 * before it draws.
 */
static void
fence_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level;

	if (!fence_published)
		return;
	level = GetCurrentTransactionNestLevel();
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			/* its events now belong to the parent */
			if (fence_level == level)
				fence_level = level - 1;
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			/* events of this level and below are gone; outer ones stay */
			if (fence_level == 0 || fence_level >= level)
				fence_clear();
			break;
		default:
			break;
	}
}

static void
fence_shmem_exit(int code, Datum arg)
{
	if (fence != NULL)
		fence_clear();
}

/*
 * Whether evstore's shared memory is attached: it is only when the library
 * was preloaded (shmem.c installs the startup hook only then).
 */
bool
evstore_shmem_ready(void)
{
	return fence != NULL;
}

void
evstore_require_preload(void)
{
	if (!evstore_shmem_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore must be loaded via shared_preload_libraries"),
				 errdetail("Subscriptions that never skip a late commit need evstore's shared memory."),
				 errhint("Add 'evstore' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

PG_FUNCTION_INFO_V1(evstore_require_preload_sql);

/* evstore._require_preload() -> void (install-time check) */
Datum
evstore_require_preload_sql(PG_FUNCTION_ARGS)
{
	evstore_require_preload();
	PG_RETURN_VOID();
}

/* Called from _PG_init. */
void
evstore_fence_init(void)
{
	RegisterXactCallback(fence_xact_callback, NULL);
	RegisterSubXactCallback(fence_subxact_callback, NULL);
}

/*
 * Refuse a function that needs the fence on a hot standby: the fence lives
 * in the primary's shared memory, and a standby's sequence runs ahead of
 * the positions actually handed out (WAL logs it 32 values ahead).
 */
void
evstore_fence_refuse_on_standby(const char *funcname)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s is not available on a standby", funcname),
				 errdetail("The fence that keeps subscriptions from skipping late commits lives on the primary."),
				 errhint("Run subscriptions against the primary, or tail the log with the evstore output plugin.")));
}

/*
 * The sequence's last handed-out value, read straight from its buffer (no
 * privilege check: only evstore's own C code calls this).  0 when no value
 * has been handed out yet.
 */
int64
evstore_sequence_last_value(Oid seqoid)
{
	Relation	seqrel;
	Buffer		buf;
	Page		page;
	ItemId		lp;
	HeapTupleHeader th;
	Form_pg_sequence_data seq;
	int64		result;

	seqrel = relation_open(seqoid, AccessShareLock);
	if (seqrel->rd_rel->relkind != RELKIND_SEQUENCE)
		elog(ERROR, "evstore: relation %u is not a sequence", seqoid);
	buf = ReadBuffer(seqrel, 0);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buf);
	lp = PageGetItemId(page, FirstOffsetNumber);
	if (!ItemIdIsNormal(lp))
		elog(ERROR, "evstore: sequence %u has no tuple", seqoid);
	th = (HeapTupleHeader) PageGetItem(page, lp);
	seq = (Form_pg_sequence_data) ((char *) th + th->t_hoff);
	result = seq->is_called ? seq->last_value : seq->last_value - 1;
	UnlockReleaseBuffer(buf);
	relation_close(seqrel, AccessShareLock);
	return result;
}

/*
 * The highest global_position in heap (evstore.events or one of its
 * shards) that is committed or still in flight (rolled-back rows do not
 * count): one backward descent of position_idx, an index leading with
 * global_position; 0 when there is none.
 */
int64
evstore_highest_position(Relation heap, Oid position_idx)
{
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	SnapshotData dirty;
	int64		result = 0;

	InitDirtySnapshot(dirty);
	index = index_open(position_idx, AccessShareLock);
	slot = table_slot_create(heap, NULL);
	scan = evstore_index_beginscan(heap, index, &dirty, 0, 0);
	index_rescan(scan, NULL, 0, NULL, 0);
	if (index_getnext_slot(scan, BackwardScanDirection, slot))
	{
		bool		isnull;

		result = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	return result;
}

/* The highest global_position stored in evstore.events (see above). */
static int64
highest_stored_position(const EvstoreCatalog *cat)
{
	Relation	heap = table_open(cat->events_rel, AccessShareLock);
	int64		result = evstore_highest_position(heap, cat->events_pkey);

	table_close(heap, AccessShareLock);
	return result;
}

/*
 * The fence's argument needs positions handed out one by one, in order,
 * and durably: INCREMENT 1, CACHE 1 (a per-backend cache hands out numbers
 * below other backends' bounds), NO CYCLE, and a logged sequence.  Checked
 * once per publication, after the first nextval: from then on this
 * transaction holds the sequence's lock and ALTER SEQUENCE waits for it.
 */
static void
check_sequence_shape(Oid seqoid)
{
	HeapTuple	tup;
	Form_pg_sequence seq;
	int64		increment,
				cache;
	bool		cycle;
	char		persistence;

	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "evstore: cache lookup failed for sequence %u", seqoid);
	seq = (Form_pg_sequence) GETSTRUCT(tup);
	increment = seq->seqincrement;
	cache = seq->seqcache;
	cycle = seq->seqcycle;
	ReleaseSysCache(tup);
	persistence = get_rel_persistence(seqoid);

	/* distributed mode: each node hands out offset + k * stride (distributed.c) */
	if (increment > 1 && evstore_is_distributed())
		increment = 1;
	if (increment != 1 || cache != 1 || cycle || persistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_POSITION_SEQUENCE),
				 errmsg("evstore.global_position_seq has been altered: appends are refused"),
				 errdetail("It has INCREMENT %lld, CACHE %lld, %s and is %s; subscriptions need positions handed out one by one, in order, and durably: INCREMENT 1, CACHE 1, NO CYCLE, logged.",
						   (long long) increment, (long long) cache,
						   cycle ? "CYCLE" : "NO CYCLE",
						   persistence == RELPERSISTENCE_PERMANENT ? "logged" : "unlogged"),
				 errhint("Restore it with ALTER SEQUENCE evstore.global_position_seq INCREMENT 1 CACHE 1 NO CYCLE; and ALTER SEQUENCE evstore.global_position_seq SET LOGGED;")));
}

/*
 * Publish this transaction's lower bound before it draws its first position.
 */
void
evstore_fence_publish(void)
{
	const EvstoreCatalog *cat;
	FenceSlot  *slot;
	int64		last;

	if (fence_published)
		return;
	evstore_require_preload();
	if (!exit_registered)
	{
		before_shmem_exit(fence_shmem_exit, (Datum) 0);
		exit_registered = true;
	}
	slot = my_slot();
	cat = evstore_catalog();
	last = evstore_sequence_last_value(cat->position_seq);
	(void) fence_database(cat->position_seq);
	slot->pid = MyProcPid;
	pg_atomic_write_u32(&slot->dboid, MyDatabaseId);
	pg_write_barrier();
	pg_atomic_write_u64(&slot->low, (uint64) (last + 1));
	fence_bound = last + 1;
	fence_published = true;
	fence_shape_checked = false;
	pg_memory_barrier();
}

static void
refuse_position(int64 position, int64 floor)
{
	ereport(ERROR,
			(errcode(ERRCODE_EVSTORE_POSITION_SEQUENCE),
			 errmsg("evstore.global_position_seq moved backwards: position %lld is refused",
					(long long) position),
			 errdetail("Position %lld may already be stored or passed by read_all, so an event at %lld could land below positions subscribers have already processed. Nothing was appended.",
					   (long long) floor, (long long) position),
			 errhint("Move the sequence past every position already used: SELECT setval('evstore.global_position_seq', %lld); then find out what moved it (setval, ALTER SEQUENCE ... RESTART).",
					 (long long) floor)));
}

/*
 * Draw the next global position for an event of this transaction (after
 * evstore_fence_publish).  The position must be at or above our published
 * bound and above this database's high-water mark: every position stored
 * (committed, or in flight when this backend seeded it), every candidate
 * horizon a reader computed.  A well-behaved sequence always satisfies
 * that; one moved backwards is caught here, before anything is written.
 * Costs one atomic read and, once per transaction, two syscache lookups;
 * the commit raises the mark to our highest position (one atomic
 * compare-and-swap).
 */
int64
evstore_fence_next_position(void)
{
	const EvstoreCatalog *cat = evstore_catalog();
	FenceDatabase *db;
	uint64		floor;
	int64		position;
	int			level;

	if (!fence_published)
		elog(ERROR, "evstore: position drawn before the fence was published");
	db = fence_database(cat->position_seq);
	if (unlikely(!my_db_seeded))
	{
			/*
		 * In distributed mode the shell is empty and the shards are not
		 * looked at: a shard moved here holds positions of another node's
		 * sequence, which may be ahead of ours and must not block appends
		 * to this node's other streams (docs/distributed.md).
		 */
		(void) atomic_raise(&db->high, (uint64) highest_stored_position(cat));
		my_db_seeded = true;
	}
	/* after our publication (and its barrier): see docs/read_all.md */
	floor = pg_atomic_read_u64(&db->high);
	position = nextval_internal(cat->position_seq, false);
	if (unlikely(!fence_shape_checked))
	{
		check_sequence_shape(cat->position_seq);
		fence_shape_checked = true;
	}
	if (unlikely(position <= (int64) floor || position < fence_bound))
		refuse_position(position, Max((int64) floor, fence_bound - 1));
	if (position > fence_max_drawn)
		fence_max_drawn = position;

	level = GetCurrentTransactionNestLevel();
	if (fence_level == 0 || level < fence_level)
		fence_level = level;
	return position;
}

/* evstore_fence_next_position_after(): a jump shorter than this is drawn */
#define EVSTORE_POSITION_JUMP_MIN_STEPS 64

/*
 * Distributed mode: the next position for the first event of an append to
 * a stream whose last event is at position floor.  After a shard move the
 * stream's events may come from another node's sequence, ahead of ours: the
 * position drawn is then moved above floor (keeping this node's offset
 * modulo the stride) and the sequence set there, under the stream lock the
 * caller holds.  The sequence only grows, so the fence's argument holds.
 */
int64
evstore_fence_next_position_after(int64 floor)
{
	int64		position = evstore_fence_next_position();
	bool		jump_locked = false;

	while (unlikely(position <= floor))
	{
		Oid			seqoid = evstore_catalog()->position_seq;
		HeapTuple	tup;
		int64		stride;
		int64		steps;
		Oid			owner;
		Oid			save_userid;
		int			save_sec_context;

		tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqoid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "evstore: cache lookup failed for sequence %u", seqoid);
		stride = ((Form_pg_sequence) GETSTRUCT(tup))->seqincrement;
		ReleaseSysCache(tup);
		if (stride < 1)
			stride = 1;
		/* draws of the sequence it takes to pass floor */
		steps = (floor - position) / stride + 1;

		/*
		 * setval() is not a compare-and-set: a concurrent appender that drew
		 * above its target since our draw would be moved back over, and its
		 * position drawn again.  Short distances are therefore drawn one by
		 * one (every nextval is unique); only a long jump, which no number
		 * of concurrent draws could overtake in the moment between our draw
		 * and the setval, sets the sequence, to just below floor.
		 */
		if (steps > EVSTORE_POSITION_JUMP_MIN_STEPS && !jump_locked)
		{
			/*
			 * Two jumps at once could still cross (the lower one set last):
			 * jumps take turns, until the end of the transaction, and draw
			 * again after the turn came (an earlier jump may have passed
			 * floor already).
			 */
			LockDatabaseObject(RelationRelationId, seqoid, 1, ExclusiveLock);
			jump_locked = true;
			position = evstore_fence_next_position();
			continue;
		}
		if (steps > EVSTORE_POSITION_JUMP_MIN_STEPS)
		{
			/* as the sequence's owner: appenders need no UPDATE right on it */
			tup = SearchSysCache1(RELOID, ObjectIdGetDatum(seqoid));
			if (!HeapTupleIsValid(tup))
				elog(ERROR, "evstore: cache lookup failed for relation %u", seqoid);
			owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
			ReleaseSysCache(tup);
			GetUserIdAndSecContext(&save_userid, &save_sec_context);
			SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
			(void) DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seqoid),
									   Int64GetDatum(position + (steps - 1) * stride),
									   BoolGetDatum(true));
			SetUserIdAndSecContext(save_userid, save_sec_context);
		}
		position = evstore_fence_next_position();
	}
	return position;
}

/* min(upper, lowest bound published in this database - 1) */
static int64
scan_slots(int64 upper)
{
	int64		horizon = upper;

	for (int i = 0; i < fence->nslots; i++)
	{
		uint64		low = pg_atomic_read_u64(&fence->slots[i].low);

		if (low == 0)
			continue;
		pg_read_barrier();
		if (pg_atomic_read_u32(&fence->slots[i].dboid) != MyDatabaseId)
			continue;
		if ((int64) low - 1 < horizon)
			horizon = (int64) low - 1;
	}
	return horizon;
}

/*
 * Highest position that read_all may return now, in this database; never
 * less than one it returned before.
 */
int64
evstore_fence_horizon(void)
{
	const EvstoreCatalog *cat;
	FenceDatabase *db;
	int64		last;
	int64		horizon;

	evstore_require_preload();
	cat = evstore_catalog();
	last = evstore_sequence_last_value(cat->position_seq);
	db = fence_database(cat->position_seq);
	pg_memory_barrier();

	/*
	 * A candidate from a first scan, made known in "high" before a second
	 * scan decides: an appender that publishes after the second scan reads
	 * "high" after its publication and refuses any position at or below the
	 * candidate, even if the sequence was moved back meanwhile.
	 */
	horizon = scan_slots(last);
	(void) atomic_raise(&db->high, (uint64) horizon);
	pg_memory_barrier();
	horizon = scan_slots(horizon);

	/* a horizon once returned stays safe: never go below it */
	return (int64) atomic_raise(&db->horizon, (uint64) horizon);
}

/*
 * Waiting for the horizon to move (read_all's timeout).
 *
 * A waiter registers in its database's entry ("waiters"), reads the
 * "ended" counter and computes the horizon; before each sleep it puts itself
 * in the condition variable's wait list and looks at the counter once more.
 * It sleeps while the counter has not moved; every
 * appending transaction bumps it after its slot is cleared, that is after
 * its commit or abort is visible to new snapshots, and broadcasts when
 * someone waits.  A wake-up with the counter unchanged (a latch set for
 * another reason) costs an atomic read and a re-registration; one with the
 * counter moved costs a horizon computation, and a scan only when the
 * horizon moved (at most one per gap the caller gives, however fast
 * appends end).  The sleep
 * is the condition variable's latch wait: it ends at once on cancellation,
 * termination (CHECK_FOR_INTERRUPTS) and postmaster death.
 */
static FenceDatabase *wait_db = NULL;
static int	wait_depth = 0;		/* registrations of this backend in wait_db */
static bool wait_exit_registered = false;

static void
fence_wait_exit(int code, Datum arg)
{
	/* a FATAL error (termination) left a wait without its PG_FINALLY */
	if (wait_depth > 0 && wait_db != NULL)
		(void) pg_atomic_fetch_sub_u32(&wait_db->waiters, wait_depth);
	wait_depth = 0;
}

/*
 * Register as a waiter of this database; after evstore_fence_horizon() (it
 * attaches the entry).  Pair with evstore_fence_wait_end(), also on error.
 */
void
evstore_fence_wait_begin(void)
{
	if (my_db == NULL)
		elog(ERROR, "evstore: wait before the fence horizon was read");
	if (!wait_exit_registered)
	{
		before_shmem_exit(fence_wait_exit, (Datum) 0);
		wait_exit_registered = true;
	}
	if (wait_depth > 0 && wait_db != my_db)
		elog(ERROR, "evstore: nested waits on two fence entries");
	wait_db = my_db;
	wait_depth++;
	(void) pg_atomic_fetch_add_u32(&wait_db->waiters, 1);
	ConditionVariablePrepareToSleep(&wait_db->cv);
}

void
evstore_fence_wait_end(void)
{
	if (wait_depth == 0)
		return;
	ConditionVariableCancelSleep();
	(void) pg_atomic_fetch_sub_u32(&wait_db->waiters, 1);
	wait_depth--;
}

/* The "ended" counter, read before the horizon it is compared against. */
uint64
evstore_fence_wait_counter(void)
{
	uint64		v = pg_atomic_read_u64(&wait_db->ended);

	pg_memory_barrier();
	return v;
}

/*
 * Sleep until the "ended" counter differs from seen (true) or deadline
 * passes (false; deadline 0: no limit).  Not before not_before, though:
 * when appends end faster than that, the waiter lets them gather and
 * re-checks once for all of them (it is out of the condition variable's
 * wait list meanwhile, so they do not signal it either).
 */
bool
evstore_fence_wait_for_change(uint64 seen, TimestampTz not_before, TimestampTz deadline)
{
	static uint32 wait_event = 0;

	if (wait_event == 0)
		wait_event = evstore_wait_event("EvstoreReadAllWait");
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		ms = -1;

		if (deadline != 0 && now >= deadline)
			return false;
		if (deadline != 0)
			/* round up: a wait never ends before its deadline */
			ms = (long) Min((deadline - now + 999) / 1000, (TimestampTz) INT_MAX);
		if (pg_atomic_read_u64(&wait_db->ended) != seen)
		{
			long		gap;

			if (now >= not_before)
				return true;
			gap = (long) ((not_before - now + 999) / 1000);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ms < 0 ? gap : Min(gap, ms), wait_event);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			continue;
		}
		/*
		 * Into the wait list (again: a broadcast took us out, and whatever
		 * reset our latch since, a lock wait of the re-check or the pause
		 * above, consumed its wake-up), then a last look at the counter.
		 */
		ConditionVariablePrepareToSleep(&wait_db->cv);
		if (pg_atomic_read_u64(&wait_db->ended) != seen)
			continue;
		/* true on timeout; otherwise woken (perhaps spuriously): re-check */
		(void) ConditionVariableTimedSleep(&wait_db->cv, ms, wait_event);
	}
}

/* Whether this transaction holds read_all back (an append in flight). */
bool
evstore_fence_holds_back(void)
{
	return fence_published;
}

PG_FUNCTION_INFO_V1(evstore_read_all_horizon);

/* evstore.read_all_horizon() -> bigint */
Datum
evstore_read_all_horizon(PG_FUNCTION_ARGS)
{
	evstore_fence_refuse_on_standby("evstore.read_all_horizon()");
	PG_RETURN_INT64(evstore_fence_horizon());
}

PG_FUNCTION_INFO_V1(evstore_appenders);

/* evstore.appenders(OUT pid integer, OUT min_position bigint) -> SETOF record */
Datum
evstore_appenders(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	evstore_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < fence->nslots; i++)
	{
		uint64		low = pg_atomic_read_u64(&fence->slots[i].low);
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (low == 0)
			continue;
		pg_read_barrier();
		if (pg_atomic_read_u32(&fence->slots[i].dboid) != MyDatabaseId)
			continue;
		values[0] = Int32GetDatum(fence->slots[i].pid);
		values[1] = Int64GetDatum((int64) low);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
