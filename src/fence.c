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
 * after the transaction's commit or abort is visible to new snapshots.
 * A reader reads the sequence's last value L first, then scans the slots;
 * the horizon is min(L, lowest published bound - 1).  Every position at or
 * below the horizon belongs to a transaction that has finished, so a
 * snapshot taken afterwards sees all of them that will ever exist.
 *
 * Only appending transactions publish, so idle or long-running
 * transactions that never append do not hold read_all back.  See
 * docs/read_all.md for the full argument.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"

#include "access/xact.h"
#include "access/relation.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/rel.h"

typedef struct FenceSlot
{
	pg_atomic_uint64 low;		/* lowest position this xact may hold; 0 = idle */
	int			pid;			/* for evstore.appenders(); informational */
} FenceSlot;

typedef struct FenceShared
{
	int			nslots;
	FenceSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} FenceShared;

static FenceShared *fence = NULL;
static bool fence_published = false;
static bool exit_registered = false;

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
		fence->nslots = MaxBackends;
		for (int i = 0; i < MaxBackends; i++)
		{
			pg_atomic_init_u64(&fence->slots[i].low, 0);
			fence->slots[i].pid = 0;
		}
	}
}

static FenceSlot *
my_slot(void)
{
	int			i = evstore_my_backend_slot();

	if (i < 0 || i >= fence->nslots)
		elog(ERROR, "evstore: backend slot %d has no fence slot", i);
	return &fence->slots[i];
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
	}
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
 * Publish this transaction's lower bound before it draws its first position.
 */
void
evstore_fence_publish(void)
{
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
	last = evstore_sequence_last_value(evstore_catalog()->position_seq);
	slot->pid = MyProcPid;
	pg_atomic_write_u64(&slot->low, (uint64) (last + 1));
	fence_published = true;
	pg_memory_barrier();
}

/*
 * Highest position that read_all may return now.
 */
int64
evstore_fence_horizon(void)
{
	int64		horizon;

	evstore_require_preload();
	horizon = evstore_sequence_last_value(evstore_catalog()->position_seq);
	pg_memory_barrier();
	for (int i = 0; i < fence->nslots; i++)
	{
		uint64		low = pg_atomic_read_u64(&fence->slots[i].low);

		if (low != 0 && (int64) low - 1 < horizon)
			horizon = (int64) low - 1;
	}
	return horizon;
}

PG_FUNCTION_INFO_V1(evstore_read_all_horizon);

/* evstore.read_all_horizon() -> bigint */
Datum
evstore_read_all_horizon(PG_FUNCTION_ARGS)
{
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
		values[0] = Int32GetDatum(fence->slots[i].pid);
		values[1] = Int64GetDatum((int64) low);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
