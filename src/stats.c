/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Store-wide counters per database in shared memory: appends, events,
 *	  ES001 conflicts, idempotent retries, read_all calls and events; the
 *	  evstore.track_stats setting; the SQL functions behind evstore.stats.
 *
 * One slot per database, taken by the first backend of that database that
 * counts something and found once per backend.  Counting is one
 * pg_atomic_fetch_add_u64 on the slot, no lock: the counters are monotonic
 * totals (like pg_stat_database's), counted when the operation happens, so
 * an append whose transaction later rolls back stays counted.  They live
 * as long as the server; evstore.stats_reset() zeroes a database's.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/* databases whose counters are kept; later ones are not counted */
#define STATS_MAX_DATABASES		128

typedef struct StatsSlot
{
	Oid			dbid;			/* InvalidOid: free */
	TimestampTz reset_at;		/* creation or last evstore.stats_reset() */
	pg_atomic_uint64 counters[EVSTORE_STAT_COUNT];
} StatsSlot;

typedef struct StatsShared
{
	slock_t		mutex;			/* taking a free slot, resetting */
	StatsSlot	slots[STATS_MAX_DATABASES];
} StatsShared;

bool		evstore_track_stats = true;

static StatsShared *stats = NULL;
static StatsSlot *my_slot = NULL;
static bool my_slot_searched = false;

/* Size of the counters in shared memory. */
Size
evstore_stats_shmem_size(void)
{
	return sizeof(StatsShared);
}

/*
 * Attach the counters (shmem.c calls this from evstore's shmem_startup_hook,
 * holding AddinShmemInitLock); the first process initializes them.
 */
void
evstore_stats_shmem_startup(void)
{
	bool		found;

	stats = ShmemInitStruct("evstore stats", sizeof(StatsShared), &found);
	if (!found)
	{
		SpinLockInit(&stats->mutex);
		for (int i = 0; i < STATS_MAX_DATABASES; i++)
		{
			stats->slots[i].dbid = InvalidOid;
			stats->slots[i].reset_at = 0;
			for (int c = 0; c < EVSTORE_STAT_COUNT; c++)
				pg_atomic_init_u64(&stats->slots[i].counters[c], 0);
		}
	}
}

/* Called from _PG_init. */
void
evstore_stats_init(void)
{
	DefineCustomBoolVariable("evstore.track_stats",
							 "Counts appends, conflicts and read_all calls in evstore.stats.",
							 NULL,
							 &evstore_track_stats,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/* This database's slot, taken when it has none; NULL when all are taken. */
static StatsSlot *
database_slot(void)
{
	StatsSlot  *free_slot = NULL;
	TimestampTz now;

	if (my_slot_searched)
		return my_slot;
	if (stats == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&stats->mutex);
	for (int i = 0; i < STATS_MAX_DATABASES; i++)
	{
		StatsSlot  *s = &stats->slots[i];

		if (s->dbid == MyDatabaseId)
		{
			my_slot = s;
			break;
		}
		if (s->dbid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (my_slot == NULL && free_slot != NULL)
	{
		/* counters of a free slot are zero (never used) */
		free_slot->dbid = MyDatabaseId;
		free_slot->reset_at = now;
		my_slot = free_slot;
	}
	SpinLockRelease(&stats->mutex);
	my_slot_searched = true;
	return my_slot;
}

/* Add n to a counter of this database (callers check evstore_track_stats). */
void
evstore_stats_add(EvstoreStat which, uint64 n)
{
	StatsSlot  *s = my_slot_searched ? my_slot : database_slot();

	if (s != NULL)
		pg_atomic_fetch_add_u64(&s->counters[which], n);
}

PG_FUNCTION_INFO_V1(evstore_stats_counters);

/* evstore._stats_counters() -> record (appends, events, conflicts, idempotent_retries, read_all_calls, read_all_events, last_position, horizon, stats_reset) */
Datum
evstore_stats_counters(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[EVSTORE_STAT_COUNT + 3];
	bool		nulls[EVSTORE_STAT_COUNT + 3];
	StatsSlot  *s;
	int64		horizon;
	int64		last;
	int			k = 0;

	evstore_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "evstore: return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));

	s = database_slot();
	for (int c = 0; c < EVSTORE_STAT_COUNT; c++, k++)
	{
		if (s)
			values[k] = Int64GetDatum((int64) pg_atomic_read_u64(&s->counters[c]));
		else
			nulls[k] = true;
	}

	/* the horizon first: the last value read after it is never below it */
	horizon = evstore_fence_horizon();
	last = evstore_sequence_last_value(evstore_catalog()->position_seq);
	values[k++] = Int64GetDatum(last);
	values[k++] = Int64GetDatum(horizon);
	if (s)
		values[k] = TimestampTzGetDatum(s->reset_at);
	else
		nulls[k] = true;
	k++;
	Assert(k == tupdesc->natts);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(evstore_stats_reset);

/* evstore.stats_reset() -> void */
Datum
evstore_stats_reset(PG_FUNCTION_ARGS)
{
	StatsSlot  *s;
	TimestampTz now = GetCurrentTimestamp();

	evstore_require_preload();
	s = database_slot();
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("evstore keeps statistics for at most %d databases", STATS_MAX_DATABASES),
				 errdetail("This database has no statistics slot.")));
	SpinLockAcquire(&stats->mutex);
	for (int c = 0; c < EVSTORE_STAT_COUNT; c++)
		pg_atomic_write_u64(&s->counters[c], 0);
	s->reset_at = now;
	SpinLockRelease(&stats->mutex);
	PG_RETURN_VOID();
}
