/*-------------------------------------------------------------------------
 *
 * projections_async.c
 *	  Async projections: projections that run in a background worker of
 *	  evstore instead of inside the appending transaction
 *	  (docs/projections.md, "Inline or async").
 *
 * Each async projection owns a durable subscription named
 * 'projection:<name>', created and dropped with it: its checkpoint is the
 * projection's, and its failure handling (nack, parking, replay) is the
 * subscriptions'.  Workers:
 *
 *	 launcher	a static background worker, registered in _PG_init when
 *				evstore is preloaded and evstore.async_workers > 0; it
 *				keeps one database worker running per database named in
 *				evstore.async_databases (at most evstore.async_workers).
 *	 worker		one per database (a dynamic background worker, restarted
 *				by the postmaster when it dies).  In rounds, it runs each
 *				async projection that is not paused: one batch of at most
 *				evstore.async_batch_size events, fetched through
 *				subscription_fetch (read_all's never-skip rule), applied
 *				as the projection's owner by proj_apply_one() -- the code
 *				inline dispatch uses, with its session protections -- and
 *				acknowledged, read-model changes and checkpoint in ONE
 *				transaction.  With nothing to do it sleeps until an
 *				appending transaction of its database ends (fence.c's
 *				wake-up of waiting read_all calls), at most
 *				evstore.async_idle_wait.
 *
 * A batch runs in one subtransaction.  When an event fails, the
 * subtransaction is rolled back, the events before it are applied again in
 * a new one, and the failing event is handled alone: with
 * evstore.subscription_nack() installed it is nacked (retried later, then
 * parked; later events of its stream wait, other streams go on); without
 * it the projection retries the event with a growing delay and stops after
 * evstore.async_max_attempts (state 'failed') until resumed.
 *
 * Shared memory holds the workers (database, pid, latch); each async
 * projection's state (attempts, next retry) lives in its statistics slot
 * (projections_stats.c).  evstore.projection_async_status() shows them,
 * and the evstore.projections view.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#define ASYNC_MAX_WORKERS	64
#define ASYNC_CONSUMER		"evstore async worker"
#define ASYNC_MAX_DELAY_MS	60000

/* settings */
static int	async_workers = 2;
static char *async_databases = NULL;
static int	async_batch_size = 500;
static int	async_idle_wait = 100;

/* the worker: evstore_fence_horizon() attached this database's fence entry */
static bool fence_attached = false;
/* the worker: it has registered as a fence waiter once (the counter is readable) */
static bool have_counter = false;
static int	async_max_attempts = 5;
static int	async_retry_delay = 1000;

typedef enum AsyncState
{
	ASYNC_STARTING = 0,
	ASYNC_RUNNING,
	ASYNC_FAILING,
	ASYNC_FAILED
} AsyncState;

static const char *const state_names[] = {"starting", "running", "failing", "failed"};

typedef struct AsyncWorkerSlot
{
	Oid			dbid;			/* InvalidOid: free */
	int			pid;
	Latch	   *latch;
	char		dbname[NAMEDATALEN];
} AsyncWorkerSlot;

typedef struct AsyncShared
{
	slock_t		mutex;
	AsyncWorkerSlot workers[ASYNC_MAX_WORKERS];
} AsyncShared;

static AsyncShared *async_shared = NULL;
static AsyncWorkerSlot *my_worker = NULL;

PGDLLEXPORT void evstore_async_launcher_main(Datum arg);
PGDLLEXPORT void evstore_async_worker_main(Datum arg);

/* ---------------------------------------------------------------------
 * Settings, launcher registration, shared memory
 * ---------------------------------------------------------------------
 */

/* From _PG_init: the settings and, when preloaded, the launcher. */
void
evstore_projections_async_init(void)
{
	BackgroundWorker bgw;

	/* a library loaded after startup cannot define a PGC_POSTMASTER setting */
	DefineCustomIntVariable("evstore.async_workers",
							"Maximum number of databases whose async projections run at once (one background worker each).",
							"0 disables async projections and their launcher. Needs max_worker_processes >= this + 1 (the launcher) + other workers.",
							&async_workers, 2, 0, ASYNC_MAX_WORKERS,
							process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_INTERNAL,
							0, NULL, NULL, NULL);
	DefineCustomStringVariable("evstore.async_databases",
							   "Databases whose async projections evstore runs, comma-separated.",
							   NULL, &async_databases, "",
							   PGC_SIGHUP, GUC_LIST_INPUT, NULL, NULL, NULL);
	DefineCustomIntVariable("evstore.async_batch_size",
							"Events an async projection applies per transaction.",
							NULL, &async_batch_size, 500, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evstore.async_idle_wait",
							"Longest sleep of an async projection worker when no projection had work; an append ending in its database wakes it sooner.",
							NULL, &async_idle_wait, 100, 1, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("evstore.async_max_attempts",
							"Attempts at a failing event before an async projection stops (when evstore.subscription_nack is not installed).",
							NULL, &async_max_attempts, 5, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("evstore.async_retry_delay",
							"First delay before an async projection retries a failing event; it doubles with each attempt, up to one minute.",
							NULL, &async_retry_delay, 1000, 1, ASYNC_MAX_DELAY_MS,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress || async_workers == 0)
		return;
	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "evstore", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "evstore_async_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "evstore async launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "evstore async launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/* What RequestAddinShmemSpace needs for the workers. */
Size
evstore_projasync_shmem_size(void)
{
	return sizeof(AsyncShared);
}

/* From the shmem_startup_hook (shmem.c, holding AddinShmemInitLock). */
void
evstore_projasync_shmem_startup(void)
{
	bool		found;

	async_shared = ShmemInitStruct("evstore async projections", sizeof(AsyncShared), &found);
	if (!found)
	{
		memset(async_shared, 0, sizeof(AsyncShared));
		SpinLockInit(&async_shared->mutex);
	}
}

/* The worker of this database, or NULL; caller holds the mutex. */
static AsyncWorkerSlot *
db_worker(Oid dbid, const char *dbname)
{
	for (int i = 0; i < ASYNC_MAX_WORKERS; i++)
	{
		AsyncWorkerSlot *w = &async_shared->workers[i];

		if (w->pid != 0 &&
			(dbname ? strcmp(w->dbname, dbname) == 0 : w->dbid == dbid))
			return w;
	}
	return NULL;
}

/* Wake this database's worker (a projection was resumed or created). */
static void
wake_worker(void)
{
	AsyncWorkerSlot *w;

	if (async_shared == NULL)
		return;
	SpinLockAcquire(&async_shared->mutex);
	w = db_worker(MyDatabaseId, NULL);
	if (w && w->latch)
		SetLatch(w->latch);
	SpinLockRelease(&async_shared->mutex);
}

/* ---------------------------------------------------------------------
 * The launcher
 * ---------------------------------------------------------------------
 */

static void
launcher_start_worker(const char *dbname, BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "evstore", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "evstore_async_worker_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "evstore async worker for database %s", dbname);
	strlcpy(bgw.bgw_type, "evstore async worker", BGW_MAXLEN);
	strlcpy(bgw.bgw_extra, dbname, BGW_EXTRALEN);
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, handle))
	{
		*handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the evstore async worker for database \"%s\"", dbname),
				 errhint("Raise max_worker_processes: evstore needs one worker per database in evstore.async_databases, plus its launcher.")));
	}
}

/* The launcher: one worker per listed database, at most async_workers. */
void
evstore_async_launcher_main(Datum arg)
{
	char		names[ASYNC_MAX_WORKERS][NAMEDATALEN];
	BackgroundWorkerHandle *handles[ASYNC_MAX_WORKERS];
	int			n = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memset(handles, 0, sizeof(handles));

	for (;;)
	{
		char	   *raw;
		List	   *list = NIL;
		ListCell   *lc;
		int			k = 0;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		raw = pstrdup(async_databases ? async_databases : "");
		if (!SplitIdentifierString(raw, ',', &list))
		{
			ereport(LOG,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid list syntax in evstore.async_databases")));
			list = NIL;
		}

		/* stop the workers of databases no longer listed */
		for (int i = 0; i < n; i++)
		{
			bool		listed = false;

			foreach(lc, list)
				if (strcmp(lfirst(lc), names[i]) == 0)
					listed = true;
			if (!listed && handles[i])
			{
				TerminateBackgroundWorker(handles[i]);
				pfree(handles[i]);
				handles[i] = NULL;
			}
		}

		/* start those that do not run */
		foreach(lc, list)
		{
			const char *db = lfirst(lc);
			int			slot = -1;
			pid_t		pid;
			bool		running;

			if (k >= async_workers)
			{
				ereport(LOG,
						(errmsg("evstore.async_databases lists more than evstore.async_workers (%d) databases; \"%s\" and the rest get no async worker",
								async_workers, db)));
				break;
			}
			k++;
			for (int i = 0; i < n; i++)
				if (strcmp(names[i], db) == 0)
					slot = i;
			if (slot < 0)
			{
				if (n == ASYNC_MAX_WORKERS)
					break;
				slot = n++;
				strlcpy(names[slot], db, NAMEDATALEN);
				handles[slot] = NULL;
			}
			if (handles[slot] &&
				GetBackgroundWorkerPid(handles[slot], &pid) != BGWH_STOPPED)
				continue;
			/* one left running by an earlier launcher */
			SpinLockAcquire(&async_shared->mutex);
			running = db_worker(InvalidOid, db) != NULL;
			SpinLockRelease(&async_shared->mutex);
			if (running)
				continue;
			if (handles[slot])
				pfree(handles[slot]);
			launcher_start_worker(db, &handles[slot]);
		}
		list_free(list);
		pfree(raw);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 5000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ---------------------------------------------------------------------
 * The database worker
 * ---------------------------------------------------------------------
 */

static void
worker_detach(int code, Datum arg)
{
	if (my_worker == NULL)
		return;
	SpinLockAcquire(&async_shared->mutex);
	my_worker->pid = 0;
	my_worker->dbid = InvalidOid;
	my_worker->latch = NULL;
	SpinLockRelease(&async_shared->mutex);
	my_worker = NULL;
}

/* Take this database's worker slot; false when another worker has it. */
static bool
worker_attach(const char *dbname)
{
	AsyncWorkerSlot *free_slot = NULL;

	SpinLockAcquire(&async_shared->mutex);
	if (db_worker(InvalidOid, dbname) != NULL)
	{
		SpinLockRelease(&async_shared->mutex);
		return false;
	}
	for (int i = 0; i < ASYNC_MAX_WORKERS && free_slot == NULL; i++)
		if (async_shared->workers[i].pid == 0)
			free_slot = &async_shared->workers[i];
	if (free_slot)
	{
		free_slot->pid = MyProcPid;
		free_slot->dbid = InvalidOid;
		free_slot->latch = MyLatch;
		strlcpy(free_slot->dbname, dbname, NAMEDATALEN);
		my_worker = free_slot;
	}
	SpinLockRelease(&async_shared->mutex);
	if (free_slot)
		before_shmem_exit(worker_detach, (Datum) 0);
	return free_slot != NULL;
}

/* Is evstore installed here, at a version with async projections? */
static bool
async_installed(void)
{
	Oid			nsp;
	Oid			rel;

	if (!OidIsValid(get_extension_oid("evstore", true)))
		return false;
	nsp = get_namespace_oid("evstore", true);
	rel = OidIsValid(nsp) ? get_relname_relid("projections_catalog", nsp) : InvalidOid;
	return OidIsValid(rel) && get_attnum(rel, "async") != InvalidAttrNumber;
}

/* Is evstore.subscription_nack() installed? */
static bool
nack_installed(void)
{
	Oid			nsp = get_namespace_oid("evstore", true);
	Oid			argtypes[6] = {TEXTOID, INT4OID, INT8OID, TEXTOID, INTERVALOID, TEXTOID};

	return OidIsValid(nsp) &&
		OidIsValid(LookupFuncName(list_make2(makeString("evstore"), makeString("subscription_nack")),
								  6, argtypes, true));
}

static void
begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
}

static void
end_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* The names of the async projections that are not paused; is nack there? */
static List *
list_projections(bool *have_nack)
{
	List	   *names = NIL;

	begin_xact("evstore: listing async projections");
	*have_nack = false;
	if (async_installed())
	{
		*have_nack = nack_installed();
		if (SPI_execute("SELECT name FROM evstore.projections_catalog "
						"WHERE async AND NOT paused ORDER BY name", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "evstore: could not list the async projections");
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			names = lappend(names, pstrdup(name));
			MemoryContextSwitchTo(old);
		}
	}
	end_xact();
	return names;
}

/* One SPI query with text/bigint arguments; returns SPI_processed. */
static uint64
run_sql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, bool ro)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, ro, 0);

	if (rc < 0)
		elog(ERROR, "evstore: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
	return SPI_processed;
}

static int64
int8_result(int col, bool *isnull)
{
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, isnull));
}

/*
 * Apply events [0, to) of the fetched batch, less those marked in skip, in
 * one subtransaction.  Returns the index of the event that failed (its
 * error in *edata), or -1 when all were applied.
 */
static int
apply_range(Projection *p, SPITupleTable *tt, TupleTableSlot *slot, int to,
			const bool *skip, ErrorData **edata)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile int i = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		for (; i < to; i++)
		{
			bool		isnull;
			text	   *ecat;
			text	   *etype;

			CHECK_FOR_INTERRUPTS();
			if (skip[i])
				continue;
			ExecStoreHeapTuple(tt->vals[i], slot, false);
			ecat = DatumGetTextPP(slot_getattr(slot, Anum_events_category, &isnull));
			etype = DatumGetTextPP(slot_getattr(slot, Anum_events_event_type, &isnull));
			if (proj_matches(p, VARDATA_ANY(ecat), VARSIZE_ANY_EXHDR(ecat),
							 VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype)))
				proj_apply_one(p, slot, VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype), false);
		}
		if (p->fast)
			proj_upsert_release(p->fast);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		*edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ExecClearTuple(slot);
		/* a cancel is not the event's fault */
		if ((*edata)->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(*edata);
		return i;
	}
	PG_END_TRY();
	ExecClearTuple(slot);
	return -1;
}

static int64
event_position(SPITupleTable *tt, int i)
{
	bool		isnull;

	return DatumGetInt64(heap_getattr(tt->vals[i], Anum_events_global_position, tt->tupdesc, &isnull));
}

/*
 * One batch of one projection, in one transaction.  Returns true when it
 * applied or skipped events (there may be more), false when there was
 * nothing to do.
 */
static bool
run_batch(const char *name, bool have_nack)
{
	char	   *sub = psprintf("projection:%s", name);
	Oid			t1[1] = {TEXTOID};
	Oid			t2[2] = {TEXTOID, INT4OID};
	Oid			t3[3] = {TEXTOID, INT8OID, TEXTOID};
	Datum		v[3];
	bool		isnull;
	int64		acked;
	int64		horizon;
	Projection *p;
	SPITupleTable *tt;
	int			n;
	volatile int limit;
	bool	   *skip;
	int		   *fails;
	char	  **ferrs;
	volatile int nfails = 0;
	int64		ack_to;
	Relation	events;
	TupleTableSlot *slot;
	TimestampTz now = GetCurrentTimestamp();
	ProjAsyncState st;
	bool		did = false;
	int64		fpos = 0;
	char	   *errtext = NULL;

	proj_async_state_get(name, &st);
	if (st.state == ASYNC_FAILED || (st.state == ASYNC_FAILING && st.retry_at > now))
		return false;

	begin_xact(psprintf("evstore: projection %s", name));
	v[0] = CStringGetTextDatum(sub);

	/* anything past the checkpoint?  (without locking: most rounds are idle) */
	if (run_sql("SELECT acked_position FROM evstore.subscription_checkpoints "
				"WHERE subscription = $1 AND member = 0", 1, t1, v, NULL, true) == 0)
	{
		end_xact();
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("async projection \"%s\" has no subscription \"%s\"", name, sub),
				 errhint("Drop the projection and create it again.")));
		return false;
	}
	acked = int8_result(1, &isnull);
	horizon = evstore_fence_horizon();
	fence_attached = true;
	/* held-back events due for a retry lie at or below the checkpoint */
	if (horizon <= acked && have_nack &&
		run_sql("SELECT 1 FROM evstore.subscription_holds h WHERE h.subscription = $1 "
				"AND h.state = 'retry' AND h.retry_at <= pg_catalog.clock_timestamp() LIMIT 1",
				1, t1, v, NULL, true) > 0)
		horizon = acked + 1;
	if (horizon <= acked && st.state != ASYNC_FAILING)
	{
		end_xact();
		if (st.state == ASYNC_STARTING)
		{
			st.state = ASYNC_RUNNING;
			proj_async_state_set(name, &st);
		}
		return false;
	}

	/*
	 * Lock the definition against drop, pause and rebuild until this batch
	 * commits, and the checkpoint against any other consumer: two workers
	 * (or a stray consumer) never apply the same events.
	 */
	v[0] = CStringGetTextDatum(name);
	if (run_sql("SELECT 1 FROM evstore.projections_catalog "
				"WHERE name = $1 AND async AND NOT paused FOR SHARE", 1, t1, v, NULL, false) == 0)
	{
		end_xact();
		return false;
	}
	v[0] = CStringGetTextDatum(sub);
	(void) run_sql("SELECT acked_position FROM evstore.subscription_checkpoints "
				   "WHERE subscription = $1 AND member = 0 FOR UPDATE", 1, t1, v, NULL, false);
	acked = int8_result(1, &isnull);
	horizon = evstore_fence_horizon();

	AcceptInvalidationMessages();
	p = proj_find_projection(name);
	if (p == NULL || !p->is_async)
	{
		end_xact();
		return false;
	}

	v[1] = Int32GetDatum(async_batch_size);
	n = (int) run_sql("SELECT * FROM evstore.subscription_fetch($1, 0, $2)", 2, t2, v, NULL, false);
	tt = SPI_tuptable;
	SPI_tuptable = NULL;

	events = table_open(evstore_catalog()->events_rel, AccessShareLock);
	slot = MakeSingleTupleTableSlot(RelationGetDescr(events), &TTSOpsHeapTuple);

	/*
	 * Keep the cache (and p) in place during the batch.  When an event
	 * fails, everything is rolled back and applied again without it: with
	 * nack, without the rest of its stream (it is held back behind the
	 * nacked event), other streams going on; without nack, without
	 * anything after it.
	 */
	skip = palloc0(sizeof(bool) * Max(n, 1));
	fails = palloc(sizeof(int) * Max(n, 1));
	ferrs = palloc(sizeof(char *) * Max(n, 1));
	limit = n;
	proj_dispatch_depth++;
	PG_TRY();
	{
		while (limit > 0)
		{
			ErrorData  *edata = NULL;
			int			f = apply_range(p, tt, slot, limit, skip, &edata);
			char	   *sid;

			if (f < 0)
				break;
			if (!have_nack)
			{
				nfails = 1;
				limit = f;
			}
			else
			{
				/* this stream waits behind the failing event */
				sid = SPI_getvalue(tt->vals[f], tt->tupdesc, Anum_events_stream_id);
				for (int j = f; j < n; j++)
				{
					char	   *sj = SPI_getvalue(tt->vals[j], tt->tupdesc, Anum_events_stream_id);

					if (strcmp(sj, sid) == 0)
						skip[j] = true;
				}
				nfails++;
			}
			fails[nfails - 1] = f;
			ferrs[nfails - 1] = pstrdup(edata->message ? edata->message : "unknown error");
			FreeErrorData(edata);
		}
	}
	PG_FINALLY();
	{
		proj_dispatch_depth = Max(proj_dispatch_depth - 1, 0);
	}
	PG_END_TRY();
	ExecDropSingleTupleTableSlot(slot);
	table_close(events, AccessShareLock);

	/* where the checkpoint goes */
	ack_to = acked;
	for (int i = 0; i < (have_nack ? n : limit); i++)
		ack_to = Max(ack_to, event_position(tt, i));
	/* a short batch without failures saw everything up to the horizon */
	if (nfails == 0 && n < async_batch_size && horizon > ack_to)
		ack_to = horizon;

	if (nfails > 0)
	{
		fpos = event_position(tt, fails[0]);
		errtext = MemoryContextStrdup(TopMemoryContext, ferrs[0]);
	}
	if (have_nack)
	{
		/* set each failing event aside (retry, then park); its stream waits */
		for (int k = 0; k < nfails; k++)
		{
			v[1] = Int64GetDatum(event_position(tt, fails[k]));
			v[2] = CStringGetTextDatum(ferrs[k]);
			(void) run_sql("SELECT evstore.subscription_nack($1, 0, $2, $3)", 3, t3, v, NULL, false);
		}
		did |= nfails > 0;
		nfails = 0;
	}
	/* with nack, redelivered events of held streams lie at or below acked */
	if (ack_to > acked || (have_nack && n > 0))
	{
		v[1] = Int64GetDatum(ack_to);
		(void) run_sql("SELECT evstore.subscription_ack($1, 0, $2)", 2, t3, v, NULL, false);
		did |= ack_to > acked || n > 0;
	}
	end_xact();

	/* the outcome, for the view and the next round */
	now = GetCurrentTimestamp();
	proj_async_state_get(name, &st);
	st.last_batch_at = now;
	if (nfails == 0)
	{
		st.state = ASYNC_RUNNING;
		st.attempts = 0;
		st.failing_pos = 0;
	}
	else
	{
		int64		delay;

		if (st.state != ASYNC_FAILING || st.failing_pos != fpos)
			st.attempts = 0;
		st.attempts++;
		st.failing_pos = fpos;
		delay = (int64) async_retry_delay << Min(st.attempts - 1, 16);
		st.retry_at = now + Min(delay, ASYNC_MAX_DELAY_MS) * INT64CONST(1000);
		st.state = st.attempts >= async_max_attempts ? ASYNC_FAILED : ASYNC_FAILING;
		ereport(LOG,
				(errmsg("async projection \"%s\" failed on the event at position %lld (attempt %d of %d): %s",
						name, (long long) fpos, st.attempts, async_max_attempts, errtext)));
	}
	proj_async_state_set(name, &st);
	if (errtext)
		pfree(errtext);
	return did;
}

/*
 * The worker's sleep between idle rounds: until an appending transaction of
 * this database ends (fence.c's counter moves past seen, the wake-up of a
 * waiting read_all; appenders broadcast only while someone waits) or
 * evstore.async_idle_wait passes (retries fall due, paused projections are
 * resumed, settings reload).  Without seen (no round has read the counter
 * yet) it only registers once, so that the next round can read it, or
 * sleeps on its latch before the fence entry is attached.
 */
static void
worker_sleep(const uint64 *seen)
{
	if (!fence_attached)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 async_idle_wait, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		return;
	}
	evstore_fence_wait_begin();
	PG_TRY();
	{
		if (seen)
			(void) evstore_fence_wait_for_change(*seen, 0,
												 TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																			 async_idle_wait));
	}
	PG_FINALLY();
	{
		evstore_fence_wait_end();
	}
	PG_END_TRY();
}

/* A database worker: rounds over the async projections of its database. */
void
evstore_async_worker_main(Datum arg)
{
	char		dbname[NAMEDATALEN];
	MemoryContext round_cxt;

	strlcpy(dbname, MyBgworkerEntry->bgw_extra, NAMEDATALEN);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (!worker_attach(dbname))
		proc_exit(0);			/* another worker serves it: do not restart */
	BackgroundWorkerInitializeConnection(dbname, NULL, 0);
	SpinLockAcquire(&async_shared->mutex);
	my_worker->dbid = MyDatabaseId;
	SpinLockRelease(&async_shared->mutex);
	pgstat_report_appname("evstore async worker");

	/* projections see events in the current shape of their type */
	SetConfigOption("evstore.upcast", "on", PGC_SUSET, PGC_S_OVERRIDE);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "evstore async round",
									  ALLOCSET_DEFAULT_SIZES);
	have_counter = false;
	for (;;)
	{
		List	   *names;
		ListCell   *lc;
		volatile bool did = false;
		uint64		seen = 0;
		volatile bool have_nack;
		bool		nack;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		/* before the round's horizons: an append ending after them moves it */
		if (have_counter)
			seen = evstore_fence_wait_counter();
		MemoryContextReset(round_cxt);
		MemoryContextSwitchTo(round_cxt);
		names = list_projections(&nack);
		have_nack = nack;
		foreach(lc, names)
		{
			const char *name = lfirst(lc);
			MemoryContext cxt = CurrentMemoryContext;

			PG_TRY();
			{
				did |= run_batch(name, have_nack);
			}
			PG_CATCH();
			{
				/* not the projection's code: the worker's own SQL failed */
				MemoryContextSwitchTo(cxt);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
				pgstat_report_activity(STATE_IDLE, NULL);
				{
					ProjAsyncState st;

					/* try again later */
					proj_async_state_get(name, &st);
					st.state = ASYNC_FAILING;
					st.attempts++;
					st.retry_at = GetCurrentTimestamp() +
						(int64) Min(async_retry_delay * 2, ASYNC_MAX_DELAY_MS) * 1000;
					proj_async_state_set(name, &st);
				}
			}
			PG_END_TRY();
			MemoryContextSwitchTo(cxt);
		}
		list_free_deep(names);
		if (!did)
			worker_sleep(have_counter ? &seen : NULL);
		else if (!have_counter && fence_attached)
			worker_sleep(NULL);
		have_counter = fence_attached;
	}
}

/* ---------------------------------------------------------------------
 * Create, drop, pause, resume; the state for the view
 * ---------------------------------------------------------------------
 */

/*
 * Called by create_projection/create_sync_projection after inserting the
 * catalog row: mark it async and create its subscription from the start
 * of history, with the projection's filters.
 */
void
proj_async_attach(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(psprintf("projection:%s", name));
	if (proj_catalog_exec("SELECT 1 FROM evstore.subscription_checkpoints WHERE subscription = $1",
						  1, types, values, NULL) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("subscription \"projection:%s\" already exists", name),
				 errdetail("An async projection keeps its checkpoint in the subscription named after it."),
				 errhint("Drop that subscription or give the projection another name.")));
	values[0] = CStringGetTextDatum(name);
	proj_catalog_exec("UPDATE evstore.projections_catalog SET async = true WHERE name = $1",
					  1, types, values, NULL);
	proj_catalog_exec("SELECT evstore.create_subscription('projection:' || c.name, c.categories, "
					  "CASE WHEN c.kind = 'handler' THEN c.event_types "
					  "WHEN c.upsert_types IS NOT NULL THEN c.upsert_types || coalesce(c.delete_types, '{}') END) "
					  "FROM evstore.projections_catalog c WHERE c.name = $1",
					  1, types, values, NULL);
}

/*
 * For evstore.rebuild_projection() and a blue/green swap of an async
 * projection: lock its checkpoint row.  The worker locks it for each batch,
 * so a batch in flight ends first and the next one waits for the rebuild's
 * transaction; after it, the worker reads the checkpoint the rebuild set.
 */
void
proj_async_lock_checkpoint(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(psprintf("projection:%s", name));
	if (proj_catalog_exec("SELECT 1 FROM evstore.subscription_checkpoints "
						  "WHERE subscription = $1 FOR UPDATE", 1, types, values, NULL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("async projection \"%s\" has no subscription \"projection:%s\"", name, name),
				 errhint("Drop the projection and create it again.")));
}

/*
 * The read model now holds exactly the events up to position (a rebuild
 * replayed them, under proj_async_lock_checkpoint): the worker goes on
 * after it.  The subscription's holds go: the rebuild replayed the events
 * they held back, parked ones included.
 */
void
proj_async_set_checkpoint(const char *name, int64 position)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(psprintf("projection:%s", name));
	values[1] = Int64GetDatum(position);
	proj_catalog_exec("UPDATE evstore.subscription_checkpoints SET acked_position = $2, "
					  "updated_at = pg_catalog.now() WHERE subscription = $1",
					  2, types, values, NULL);
	if (nack_installed())
		proj_catalog_exec("DELETE FROM evstore.subscription_holds WHERE subscription = $1",
						  1, types, values, NULL);
}

/* Called by drop_projection for an async projection: drop its subscription. */
void
proj_async_detach(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	values[0] = CStringGetTextDatum(psprintf("projection:%s", name));
	proj_catalog_exec("SELECT evstore.drop_subscription($1, true)", 1, types, values, NULL);
}

static Datum
set_paused(FunctionCallInfo fcinfo, bool paused)
{
	char	   *name;
	Projection *p;
	Oid			types[2] = {TEXTOID, BOOLOID};
	Datum		values[2];
	int			changed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("projection name must not be null")));
	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	p = proj_lock_projection(name, false);
	if (!p->is_async)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("projection \"%s\" is not async", name),
				 errdetail("Only async projections can be paused and resumed; an inline projection runs inside each append."),
				 errhint("Drop it and create it again with async => true.")));
	values[0] = CStringGetTextDatum(name);
	values[1] = BoolGetDatum(paused);
	changed = proj_catalog_exec("UPDATE evstore.projections_catalog SET paused = $2 "
								"WHERE name = $1 AND paused IS DISTINCT FROM $2",
								2, types, values, NULL);
	if (!paused)
	{
		ProjAsyncState st;

		/* resuming also retries a failing event at once */
		memset(&st, 0, sizeof(st));
		proj_async_state_set(name, &st);
		wake_worker();
	}
	PG_RETURN_BOOL(changed > 0);
}

PG_FUNCTION_INFO_V1(evstore_pause_projection);

/* evstore.pause_projection(name text) -> boolean */
Datum
evstore_pause_projection(PG_FUNCTION_ARGS)
{
	return set_paused(fcinfo, true);
}

PG_FUNCTION_INFO_V1(evstore_resume_projection);

/* evstore.resume_projection(name text) -> boolean */
Datum
evstore_resume_projection(PG_FUNCTION_ARGS)
{
	return set_paused(fcinfo, false);
}

PG_FUNCTION_INFO_V1(evstore_projection_async_status);

/* evstore.projection_async_status() -> SETOF (name text, worker_pid integer, state text, attempts integer, failing_position bigint, retry_at timestamptz, last_batch_at timestamptz, horizon bigint) */
Datum
evstore_projection_async_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ProjCache  *c;
	int64		horizon = 0;

	InitMaterializedSRF(fcinfo, 0);
	c = proj_cache();
	/* the view's lag: read_all's horizon, without EXECUTE on read_all_horizon() */
	for (int i = 0; i < c->n; i++)
		if (c->projs[i].is_async)
		{
			horizon = evstore_fence_horizon();
			break;
		}
	for (int i = 0; i < c->n; i++)
	{
		Projection *p = &c->projs[i];
		Datum		v[8];
		bool		n[8] = {false, true, false, true, true, true, true, false};
		AsyncWorkerSlot *w = NULL;
		ProjAsyncState s;
		const char *state = "stopped";

		if (!p->is_async)
			continue;
		proj_async_state_get(p->name, &s);
		if (async_shared)
		{
			SpinLockAcquire(&async_shared->mutex);
			w = db_worker(MyDatabaseId, NULL);
			if (w)
			{
				v[1] = Int32GetDatum(w->pid);
				n[1] = false;
			}
			SpinLockRelease(&async_shared->mutex);
		}
		if (w)
			state = state_names[s.state];
		if (s.attempts > 0)
		{
			v[3] = Int32GetDatum(s.attempts);
			v[4] = Int64GetDatum(s.failing_pos);
			v[5] = TimestampTzGetDatum(s.retry_at);
			n[3] = n[4] = false;
			n[5] = s.state != ASYNC_FAILING;
		}
		if (s.last_batch_at != 0)
		{
			v[6] = TimestampTzGetDatum(s.last_batch_at);
			n[6] = false;
		}
		if (p->paused)
			state = "paused";
		v[0] = CStringGetTextDatum(p->name);
		v[2] = CStringGetTextDatum(state);
		v[7] = Int64GetDatum(horizon);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	return (Datum) 0;
}
