/*-------------------------------------------------------------------------
 *
 * projections_stats.c
 *	  Statistics of projections and rebuild progress in shared memory:
 *	  events applied by committed transactions, last position, last error,
 *	  how far a running rebuild has got, and the state of an async
 *	  projection's worker; the SQL functions that show them.
 *
 * A transaction counts what it applies in backend-local pending entries,
 * one per projection and transaction nesting level, and publishes them at
 * commit; the entries of an aborted subtransaction die with it.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#define PROJ_MAX_SLOTS		256

typedef struct ProjShared
{
	LWLock	   *lock;
	ProjStatSlot slots[PROJ_MAX_SLOTS];
} ProjShared;

static ProjShared *proj_shared = NULL;

/* pending statistics of the current transaction (PendingStat) */
static PendingStat *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;
static uint64 pending_gen = 1;
static bool rebuilding = false; /* this backend owns a rebuild_pid slot */

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */

/* What RequestAddinShmemSpace needs for the statistics. */
Size
evstore_projstats_shmem_size(void)
{
	return sizeof(ProjShared);
}

/* From the shmem_request_hook: the space and the lock. */
void
evstore_projstats_shmem_request(void)
{
	RequestAddinShmemSpace(evstore_projstats_shmem_size());
	RequestNamedLWLockTranche("evstore projections", 1);
}

/*
 * From the shmem_startup_hook (shmem.c, holding AddinShmemInitLock): attach
 * to (or create) the statistics.
 */
void
evstore_projstats_shmem_startup(void)
{
	bool		found;

	proj_shared = ShmemInitStruct("evstore projections", sizeof(ProjShared), &found);
	if (!found)
	{
		memset(proj_shared, 0, sizeof(ProjShared));
		proj_shared->lock = &(GetNamedLWLockTranche("evstore projections"))->lock;
		for (int i = 0; i < PROJ_MAX_SLOTS; i++)
		{
			pg_atomic_init_u64(&proj_shared->slots[i].processed, 0);
			pg_atomic_init_u64(&proj_shared->slots[i].last_pos, 0);
		}
	}
}

/* Slot of a projection of this database; caller holds the lock. */
static ProjStatSlot *
find_slot(const char *name, bool alloc)
{
	ProjStatSlot *free_slot = NULL;

	if (proj_shared == NULL)
		return NULL;
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
	{
		ProjStatSlot *s = &proj_shared->slots[i];

		if (s->dbid == MyDatabaseId && strcmp(s->name, name) == 0)
			return s;
		if (s->dbid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (!alloc || free_slot == NULL)
		return NULL;
	free_slot->dbid = MyDatabaseId;
	strlcpy(free_slot->name, name, NAMEDATALEN);
	pg_atomic_write_u64(&free_slot->processed, 0);
	pg_atomic_write_u64(&free_slot->last_pos, 0);
	free_slot->last_error[0] = '\0';
	free_slot->last_error_pos = 0;
	free_slot->last_error_at = 0;
	free_slot->rebuild_pid = 0;
	memset(&free_slot->async, 0, sizeof(ProjAsyncState));
	return free_slot;
}

/* An async projection's state (all zero: none recorded, "starting"). */
void
proj_async_state_get(const char *name, ProjAsyncState *st)
{
	ProjStatSlot *s;

	memset(st, 0, sizeof(ProjAsyncState));
	if (proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_SHARED);
	s = find_slot(name, false);
	if (s)
		*st = s->async;
	LWLockRelease(proj_shared->lock);
}

/* Record it (lost when the slots are all taken). */
void
proj_async_state_set(const char *name, const ProjAsyncState *st)
{
	ProjStatSlot *s;

	if (proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	s = find_slot(name, true);
	if (s)
		s->async = *st;
	LWLockRelease(proj_shared->lock);
}

/* Forget a projection's statistics (create and drop). */
void
proj_reset_slot(const char *name)
{
	ProjStatSlot *s;

	if (proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	s = find_slot(name, false);
	if (s)
		s->dbid = InvalidOid;
	LWLockRelease(proj_shared->lock);
}

void
proj_record_error(const char *name, int64 position, const char *message)
{
	ProjStatSlot *s;

	if (proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	s = find_slot(name, true);
	if (s)
	{
		strlcpy(s->last_error, message, PROJ_ERRLEN);
		s->last_error_pos = position;
		s->last_error_at = GetCurrentTimestamp();
	}
	LWLockRelease(proj_shared->lock);
}

static void
atomic_max_u64(pg_atomic_uint64 *v, uint64 x)
{
	uint64		cur = pg_atomic_read_u64(v);

	while (cur < x && !pg_atomic_compare_exchange_u64(v, &cur, x))
		;
}

/* ---------------------------------------------------------------------
 * Pending statistics: counted per transaction, published at commit
 * ---------------------------------------------------------------------
 */
PendingStat *
proj_pending_entry(Projection *p)
{
	int			level = GetCurrentTransactionNestLevel();
	PendingStat *e;

	if (p->pend_gen == pending_gen && p->pend_level == level)
		return &pending[p->pend_idx];

	for (int i = 0; i < npending; i++)
	{
		if (pending[i].level == level && strcmp(pending[i].name, p->name) == 0)
		{
			p->pend_idx = i;
			p->pend_level = level;
			p->pend_gen = pending_gen;
			return &pending[i];
		}
	}
	if (npending == maxpending)
	{
		maxpending = maxpending ? maxpending * 2 : 16;
		if (pending == NULL)
			pending = MemoryContextAlloc(TopMemoryContext, maxpending * sizeof(PendingStat));
		else
			pending = repalloc(pending, maxpending * sizeof(PendingStat));
	}
	e = &pending[npending];
	strlcpy(e->name, p->name, NAMEDATALEN);
	e->level = level;
	e->reset = false;
	e->count = 0;
	e->maxpos = 0;
	p->pend_idx = npending++;
	p->pend_level = level;
	p->pend_gen = pending_gen;
	return e;
}


void
proj_pending_publish(void)
{
	if (proj_shared == NULL || npending == 0)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < npending; i++)
	{
		PendingStat *e = &pending[i];
		ProjStatSlot *s;

		if (e->level == 0)
			continue;
		s = find_slot(e->name, true);
		if (s == NULL)
			continue;
		if (e->reset)
		{
			pg_atomic_write_u64(&s->processed, 0);
			pg_atomic_write_u64(&s->last_pos, 0);
		}
		pg_atomic_fetch_add_u64(&s->processed, e->count);
		atomic_max_u64(&s->last_pos, e->maxpos);
	}
	LWLockRelease(proj_shared->lock);
}

/* The transaction ended (and published at commit): its entries are gone. */
void
proj_pending_discard(void)
{
	npending = 0;
	pending_gen++;
}

/* A subtransaction ended: its entries die (abort) or join the parent's. */
void
proj_pending_subxact_end(SubXactEvent event)
{
	int			level;

	level = GetCurrentTransactionNestLevel();
	for (int i = 0; i < npending; i++)
	{
		if (pending[i].level < level)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
			pending[i].level = 0;
		else
			pending[i].level = level - 1;
	}
	pending_gen++;
}

/* A rebuild starts: show its progress; NULL without shared memory. */
ProjStatSlot *
proj_rebuild_progress_start(const char *name, int64 target_pos)
{
	ProjStatSlot *ps = NULL;

	if (proj_shared)
	{
		LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
		ps = find_slot(name, true);
		if (ps)
		{
			ps->rebuild_pid = MyProcPid;
			ps->rebuild_started = GetCurrentTimestamp();
			ps->rebuild_replayed = 0;
			ps->rebuild_position = 0;
			ps->rebuild_target = target_pos;
			rebuilding = true;
		}
		LWLockRelease(proj_shared->lock);
	}
	return ps;
}

void
proj_rebuild_progress_clear(void)
{
	if (!rebuilding || proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
		if (proj_shared->slots[i].rebuild_pid == MyProcPid)
			proj_shared->slots[i].rebuild_pid = 0;
	LWLockRelease(proj_shared->lock);
	rebuilding = false;
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(evstore_projection_stats);

/* evstore.projection_stats() -> SETOF (name text, events_processed bigint, last_position bigint, last_error text, last_error_position bigint, last_error_at timestamptz) */
Datum
evstore_projection_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (proj_shared == NULL)
		return (Datum) 0;
	LWLockAcquire(proj_shared->lock, LW_SHARED);
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
	{
		ProjStatSlot *s = &proj_shared->slots[i];
		Datum		v[6];
		bool		n[6] = {false, false, false, false, false, false};
		uint64		lp;

		if (s->dbid != MyDatabaseId)
			continue;
		lp = pg_atomic_read_u64(&s->last_pos);
		v[0] = CStringGetTextDatum(s->name);
		v[1] = Int64GetDatum((int64) pg_atomic_read_u64(&s->processed));
		v[2] = Int64GetDatum((int64) lp);
		n[2] = lp == 0;
		v[3] = CStringGetTextDatum(s->last_error);
		n[3] = s->last_error[0] == '\0';
		v[4] = Int64GetDatum(s->last_error_pos);
		n[4] = n[3];
		v[5] = TimestampTzGetDatum(s->last_error_at);
		n[5] = n[3];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	LWLockRelease(proj_shared->lock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(evstore_projection_rebuild_progress);

/* evstore.projection_rebuild_progress() -> SETOF (name text, pid integer, started_at timestamptz, events_replayed bigint, at_position bigint, target_position bigint) */
Datum
evstore_projection_rebuild_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (proj_shared == NULL)
		return (Datum) 0;
	LWLockAcquire(proj_shared->lock, LW_SHARED);
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
	{
		ProjStatSlot *s = &proj_shared->slots[i];
		Datum		v[6];
		bool		n[6] = {false, false, false, false, false, false};

		if (s->dbid != MyDatabaseId || s->rebuild_pid == 0)
			continue;
		v[0] = CStringGetTextDatum(s->name);
		v[1] = Int32GetDatum(s->rebuild_pid);
		v[2] = TimestampTzGetDatum(s->rebuild_started);
		v[3] = Int64GetDatum(s->rebuild_replayed);
		v[4] = Int64GetDatum(s->rebuild_position);
		v[5] = Int64GetDatum(s->rebuild_target);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	LWLockRelease(proj_shared->lock);
	return (Datum) 0;
}
