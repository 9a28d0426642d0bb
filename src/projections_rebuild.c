/*-------------------------------------------------------------------------
 *
 * projections_rebuild.c
 *	  Blue/green rebuilds (docs/projections.md, "Rebuilding a projection"):
 *	  a background worker fills copies of a projection's read models from
 *	  history while the live ones keep serving reads and, for inline
 *	  projections, keep being updated by appends; once the copies have
 *	  caught up it swaps them in, in one short transaction, and drops the
 *	  old tables.
 *
 * The rebuild's state is a row of evstore.projection_rebuild_jobs: the
 * read models, their copies (in a shadow schema of their own), the phase
 * and the last global position replayed.  The worker replays in batches,
 * each committing the copies' changes and the new position together, so a
 * crash loses nothing: evstore.start_rebuild() resumes from the row.  A
 * batch replays only up to the read_all horizon (fence.c): every position
 * at or below it is final, so no late commit is skipped.
 *
 * The swap takes SHARE on evstore.events: it waits for the appending
 * transactions in flight (their events are then visible) and holds new
 * appends off, so no append runs between the last event replayed into the
 * copies and the swap.  Under that lock the worker replays the rest, then
 * evstore._rebuild_swap() drops each read model and moves its copy in
 * (ACCESS EXCLUSIVE: readers wait for that moment only).  Everything of
 * the swap commits at once or not at all.
 *
 * Handler projections run with the shadow schema first on their
 * search_path, so unqualified table names reach the copies.  A batch that
 * wrote a live read model anyway (a handler that qualifies its tables)
 * fails before it commits.
 *
 * Only one worker runs a rebuild: it holds a session-level lock on the
 * job (an advisory lock tag of evstore's own class), which is also how
 * the view and evstore.cancel_rebuild() find it.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"
#include "schema.h"
#include "compat.h"

#include <signal.h>

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#define REBUILD_LOCK_CLASS	21058	/* 0x5242, "RB"; the view looks for it too */
#define REBUILD_WORKER_TYPE "evstore rebuild"

/* what the worker is told at launch */
typedef struct RebuildArgs
{
	Oid			dboid;
	Oid			roleid;
	int64		job;
} RebuildArgs;

typedef struct RebuildJob
{
	int64		id;
	char	   *name;
	int64		position;
	int			batch_size;
	int			nmodels;
	Oid		   *live;
	Oid		   *copies;			/* NULL until they exist */
	char	   *shadow;
} RebuildJob;

static void
job_locktag(LOCKTAG *tag, int64 id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) ((uint64) id >> 32),
						 (uint32) id, REBUILD_LOCK_CLASS);
}

/* The extension's owner: the owner of its projection catalog. */
static Oid
extension_owner(void)
{
	Oid			relid = get_relname_relid("projections_catalog",
										  evstore_catalog()->namespace_oid);
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "evstore: cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * SQL on evstore's tables and helpers, as the extension's owner; SPI is
 * connected by the caller, which reads SPI_tuptable.
 */
static int
owner_exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	Oid			save_userid;
	int			save_sec;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(extension_owner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
	SetUserIdAndSecContext(save_userid, save_sec);
	if (rc < 0)
		elog(ERROR, "evstore: rebuild query failed: %s", SPI_result_code_string(rc));
	return (int) SPI_processed;
}

static int
job_exec(const char *sql, int64 id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};

	return owner_exec(sql, 1, types, values);
}

static Datum
result_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

static Oid *
oid_array(Datum d, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	Oid		   *oids;

	deconstruct_array(DatumGetArrayTypeP(d), OIDOID, sizeof(Oid), true, TYPALIGN_INT,
					  &elems, &nulls, n);
	oids = palloc(sizeof(Oid) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		oids[i] = DatumGetObjectId(elems[i]);
	return oids;
}

/* The job's row, read into cxt; false when there is none. */
static bool
load_job(int64 id, RebuildJob *j, MemoryContext cxt)
{
	bool		isnull;
	MemoryContext old;
	int			ncopies;

	if (job_exec("SELECT id, name, position, batch_size, read_models::pg_catalog.oid[], "
				 "copies::pg_catalog.oid[], shadow_schema::text "
				 "FROM evstore.projection_rebuild_jobs WHERE id = $1", id) == 0)
		return false;
	old = MemoryContextSwitchTo(cxt);
	j->id = DatumGetInt64(result_datum(0, 1, &isnull));
	j->name = TextDatumGetCString(result_datum(0, 2, &isnull));
	j->position = DatumGetInt64(result_datum(0, 3, &isnull));
	j->batch_size = DatumGetInt32(result_datum(0, 4, &isnull));
	j->live = oid_array(result_datum(0, 5, &isnull), &j->nmodels);
	j->copies = NULL;
	{
		Datum		d = result_datum(0, 6, &isnull);

		if (!isnull)
			j->copies = oid_array(d, &ncopies);
	}
	j->shadow = TextDatumGetCString(result_datum(0, 7, &isnull));
	MemoryContextSwitchTo(old);
	return true;
}

/* ---------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------
 */

/* Rows this transaction inserted, updated or deleted in a table. */
static int64
xact_writes(Oid relid)
{
	Datum		r = ObjectIdGetDatum(relid);

	return DatumGetInt64(DirectFunctionCall1(pg_stat_get_xact_tuples_inserted, r)) +
		DatumGetInt64(DirectFunctionCall1(pg_stat_get_xact_tuples_updated, r)) +
		DatumGetInt64(DirectFunctionCall1(pg_stat_get_xact_tuples_deleted, r));
}

/*
 * The projection as the rebuild runs it: a sync projection writes the copy
 * of its target (its plans are built here, in cxt, and freed after the
 * batch); a handler finds the copies first on its search_path.
 */
static void
copy_projection(Projection *cp, const Projection *p, const RebuildJob *job,
				MemoryContext cxt)
{
	*cp = *p;
	if (p->is_sync)
	{
		cp->target = job->copies[0];
		cp->prepared = false;
		cp->qrel = NULL;
		cp->nshapes = 0;
		cp->next_evict = 0;
		memset(cp->shape_mask, 0, sizeof(cp->shape_mask));
		memset(cp->shape_plan, 0, sizeof(cp->shape_plan));
		cp->delete_plan = NULL;
		cp->fast = NULL;
		cp->fast_stale = false;
		proj_sync_prepare(cp, true, cxt);
	}
	else
		cp->run_path = MemoryContextStrdup(cxt, psprintf("%s, %s",
														 quote_identifier(job->shadow),
														 p->run_path));
}

static void
release_projection(Projection *cp)
{
	if (cp->fast)
		proj_upsert_release(cp->fast);
	for (int i = 0; i < cp->nshapes; i++)
		SPI_freeplan(cp->shape_plan[i]);
	if (cp->delete_plan)
		SPI_freeplan(cp->delete_plan);
}

static void
set_phase(RebuildJob *job, const char *phase, const char *error)
{
	Oid			types[3] = {INT8OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			rc;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	values[0] = Int64GetDatum(job->id);
	values[1] = CStringGetTextDatum(phase);
	values[2] = error ? CStringGetTextDatum(error) : (Datum) 0;
	nulls[2] = error ? ' ' : 'n';
	rc = SPI_execute_with_args("UPDATE evstore.projection_rebuild_jobs "
							   "SET phase = $2, error = $3, updated_at = pg_catalog.now() WHERE id = $1",
							   3, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "evstore: rebuild query failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * One batch: replay into the copies the events after the job's position,
 * up to batch_size of them and up to the read_all horizon, and store the
 * new position with them.  The final batch runs with appends held off,
 * replays everything left and swaps.  True when the batch reached the
 * horizon (the copies have caught up).
 */
static bool
run_batch(RebuildJob *job, bool final, MemoryContext batch_cxt)
{
	const EvstoreCatalog *cat;
	Projection *p;
	Projection	cp;
	Relation	events;
	Relation	idx;
	Snapshot	snap;
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot;
	EvstoreUpcaster *up;
	int64		horizon;
	volatile int64 last = job->position;
	volatile int64 scanned = 0;
	volatile int64 applied = 0;
	volatile bool caught_up = true;
	int64	   *before;
	bool		is_async;
	Oid			types[4] = {INT8OID, INT8OID, INT8OID, INT8OID};
	Datum		values[4];

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	cat = evstore_catalog();
	if (final)
	{
		Oid			ttypes[1] = {TEXTOID};
		Datum		tvalues[1] = {CStringGetTextDatum(job->name)};

		/* appends in flight end first, new ones wait for the swap */
		LockRelationOid(cat->events_rel, ShareLock);
		/* drop_projection and rebuild_projection wait too */
		if (owner_exec("SELECT 1 FROM evstore.projections_catalog WHERE name = $1 FOR UPDATE",
					   1, ttypes, tvalues) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("projection \"%s\" was dropped during its rebuild", job->name),
					 errhint("Drop the copies with evstore.cancel_rebuild().")));
		horizon = PG_INT64_MAX;
	}
	else
		horizon = evstore_fence_horizon();

	/* after the horizon: the snapshot sees every event at or below it */
	snap = RegisterSnapshot(GetLatestSnapshot());
	p = proj_find_projection(job->name);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" was dropped during its rebuild", job->name),
				 errhint("Drop the copies with evstore.cancel_rebuild().")));
	/* an async projection's worker waits too; its batch in flight ends first */
	is_async = p->is_async;
	if (final && is_async)
		proj_async_lock_checkpoint(job->name);
	before = palloc(sizeof(int64) * job->nmodels);
	for (int i = 0; i < job->nmodels; i++)
		before[i] = xact_writes(job->live[i]);

	events = table_open(cat->events_rel, AccessShareLock);
	idx = index_open(cat->events_pkey, AccessShareLock);
	ScanKeyInit(&key, 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(job->position));
	scan = evstore_index_beginscan(events, idx, snap, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	slot = table_slot_create(events, NULL);
	up = evstore_upcaster_begin(RelationGetDescr(events), UPCAST_PROJECTION);

	/* keep the cache (and p) in place while replaying */
	proj_dispatch_depth++;
	evstore_sandbox_forget_locks();
	PG_TRY();
	{
		copy_projection(&cp, p, job, batch_cxt);
		for (;;)
		{
			bool		isnull;
			int64		pos;
			text	   *ecat;
			text	   *etype;
			TupleTableSlot *ev;

			CHECK_FOR_INTERRUPTS();
			if (!final && scanned >= job->batch_size)
			{
				caught_up = false;
				break;
			}
			if (!index_getnext_slot(scan, ForwardScanDirection, slot))
				break;
			pos = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));
			if (pos > horizon)
				break;
			scanned++;
			last = pos;
			ev = up ? evstore_upcaster_slot(up, slot) : slot;
			ecat = DatumGetTextPP(slot_getattr(ev, Anum_events_category, &isnull));
			etype = DatumGetTextPP(slot_getattr(ev, Anum_events_event_type, &isnull));
			if (proj_matches(&cp, VARDATA_ANY(ecat), VARSIZE_ANY_EXHDR(ecat),
							 VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype)))
			{
				proj_apply_one(&cp, ev, VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype), true);
				applied++;
			}
		}
		release_projection(&cp);
	}
	PG_FINALLY();
	{
		proj_dispatch_depth = Max(proj_dispatch_depth - 1, 0);
	}
	PG_END_TRY();
	evstore_upcaster_end(up);
	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	UnregisterSnapshot(snap);
	index_close(idx, AccessShareLock);
	table_close(events, AccessShareLock);
	MemoryContextReset(batch_cxt);

	for (int i = 0; i < job->nmodels; i++)
		if (xact_writes(job->live[i]) != before[i])
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("projection \"%s\" wrote the live read model %s during its rebuild",
							job->name, get_rel_name(job->live[i])),
					 errdetail("The batch was rolled back; the live read model is unchanged."),
					 errhint("A blue/green rebuild runs the handler with the copies first on its search_path; "
							 "a handler that schema-qualifies its tables (or sets its own search_path) cannot be rebuilt this way. "
							 "Cancel with evstore.cancel_rebuild() and use evstore.rebuild_projection().")));

	/* every position up to the horizon is final: none is left behind */
	if (caught_up && !final && horizon > last)
		last = horizon;
	values[0] = Int64GetDatum(job->id);
	values[1] = Int64GetDatum(last);
	values[2] = Int64GetDatum(applied);
	values[3] = Int64GetDatum(evstore_sequence_last_value(cat->position_seq));
	owner_exec("UPDATE evstore.projection_rebuild_jobs SET position = $2, "
			   "events_replayed = events_replayed + $3, target_position = greatest($4, $2), "
			   "updated_at = pg_catalog.now() WHERE id = $1", 4, types, values);
	/* the live projection's statistics are not the rebuild's */
	proj_pending_discard();
	if (final)
	{
		/* the worker goes on exactly after what the copies contain */
		if (is_async)
			proj_async_set_checkpoint(job->name, last);
		job_exec("SELECT evstore._rebuild_swap($1)", job->id);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	job->position = last;
	return caught_up;
}

static void
create_copies(RebuildJob *job, MemoryContext cxt)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	job_exec("SELECT evstore._rebuild_create_copies($1)", job->id);
	if (!load_job(job->id, job, cxt))
		elog(ERROR, "evstore: rebuild %lld vanished", (long long) job->id);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

void
evstore_rebuild_worker_main(Datum main_arg)
{
	RebuildArgs args;
	RebuildJob	job;
	LOCKTAG		tag;
	MemoryContext cxt;
	MemoryContext batch_cxt;
	bool		found;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.dboid, args.roleid, 0);
	cxt = AllocSetContextCreate(TopMemoryContext, "evstore rebuild", ALLOCSET_DEFAULT_SIZES);
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "evstore rebuild batch",
									  ALLOCSET_DEFAULT_SIZES);

	/* the job is ours; this waits for the transaction that started it */
	StartTransactionCommand();
	job_locktag(&tag, args.job);
	(void) LockAcquire(&tag, ExclusiveLock, true, false);
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	found = load_job(args.job, &job, cxt);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (!found)
		proc_exit(0);			/* its start rolled back, or it was cancelled */
	pgstat_report_appname(psprintf("evstore rebuild %s", job.name));

	PG_TRY();
	{
		if (job.copies == NULL)
			create_copies(&job, cxt);
		while (!run_batch(&job, false, batch_cxt))
			;
		set_phase(&job, "swapping", NULL);
		(void) run_batch(&job, true, batch_cxt);
		ereport(LOG,
				(errmsg("evstore: projection \"%s\" rebuilt blue/green", job.name)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		set_phase(&job, "failed", edata->message ? edata->message : "unknown error");
	}
	PG_END_TRY();
	proc_exit(0);
}

static void
launch_worker(int64 id)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	RebuildArgs args;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, sizeof(w.bgw_library_name), "evstore");
	snprintf(w.bgw_function_name, sizeof(w.bgw_function_name), "evstore_rebuild_worker_main");
	snprintf(w.bgw_name, sizeof(w.bgw_name), "evstore rebuild %lld", (long long) id);
	snprintf(w.bgw_type, sizeof(w.bgw_type), REBUILD_WORKER_TYPE);
	args.dboid = MyDatabaseId;
	args.roleid = extension_owner();
	args.job = id;
	memcpy(w.bgw_extra, &args, sizeof(args));
	if (!RegisterDynamicBackgroundWorker(&w, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a background worker for the rebuild"),
				 errhint("Each running blue/green rebuild takes one background worker; raise max_worker_processes.")));
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

/*
 * A handler reaches its tables by name: each read model must be what its
 * unqualified name means on the projection's search_path, as the owner.
 */
static void
check_handler_names(Projection *p, Oid *live, int n)
{
	Oid			save_userid;
	int			save_sec;
	int			nest;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(p->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", p->run_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (int i = 0; i < n; i++)
	{
		char	   *relname = get_rel_name(live[i]);

		if (RelnameGetRelid(relname) != live[i])
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("read model %s is not what \"%s\" names on the search_path of projection \"%s\"",
							quote_qualified_identifier(get_namespace_name(get_rel_namespace(live[i])), relname),
							relname, p->name),
					 errdetail("The projection resolves names with search_path = %s.", p->run_path),
					 errhint("A blue/green rebuild runs the handler with copies of the read models first on its search_path, so the handler must name them unqualified and find them on the search_path captured from its creator.")));
	}
	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/* The caller replaces the tables: it must be (a member of) each one's owner. */
static void
check_table_owners(Oid *live, int n)
{
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(live[i]));
		Oid			owner;

		if (!HeapTupleIsValid(tup))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", live[i])));
		owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
		ReleaseSysCache(tup);
		if (!has_privs_of_role(GetUserId(), owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("must be the owner of table %s", get_rel_name(live[i])),
					 errdetail("A blue/green rebuild replaces the table by a copy.")));
	}
}

PG_FUNCTION_INFO_V1(evstore_start_rebuild);

/* evstore.start_rebuild(name text, read_models regclass[], batch_size integer) -> bigint */
Datum
evstore_start_rebuild(PG_FUNCTION_ARGS)
{
	char	   *name = proj_name_arg(fcinfo);
	int			batch_size = PG_ARGISNULL(2) ? 1000 : PG_GETARG_INT32(2);
	Projection *p;
	Oid			types[4] = {TEXTOID, OIDARRAYOID, OIDOID, INT4OID};
	Datum		values[4];
	Oid			jtypes[2] = {INT8OID, INT4OID};
	Datum		jvalues[2];
	Datum		models;
	Oid		   *live;
	int			n;
	int64		id;
	bool		isnull;
	LOCKTAG		tag;

	if (batch_size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be at least 1")));
	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot be rebuilt from inside a projection")));
	PreventCommandIfReadOnly("evstore.start_rebuild()");
	evstore_require_preload();

	/* the projection's row stays locked until this transaction ends */
	p = proj_lock_projection(name, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	values[2] = ObjectIdGetDatum(GetUserId());
	values[3] = Int32GetDatum(batch_size);
	if (owner_exec("SELECT id FROM evstore.projection_rebuild_jobs WHERE name = $1 FOR UPDATE",
				   1, types, values) > 0)
	{
		/* resume an interrupted or failed rebuild, from its last batch */
		id = DatumGetInt64(result_datum(0, 1, &isnull));
		job_locktag(&tag, id);
		if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("a blue/green rebuild of projection \"%s\" is already running", name),
					 errhint("Watch it in evstore.projection_rebuilds; stop it with evstore.cancel_rebuild().")));
		if (!PG_ARGISNULL(1) &&
			owner_exec("SELECT 1 FROM evstore.projection_rebuild_jobs "
					   "WHERE name = $1 AND read_models::pg_catalog.oid[] = $2",
					   2, types, values) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("an unfinished rebuild of projection \"%s\" has other read models", name),
					 errhint("Resume it without read_models, or drop it with evstore.cancel_rebuild() first.")));
		jvalues[0] = Int64GetDatum(id);
		jvalues[1] = Int32GetDatum(batch_size);
		owner_exec("UPDATE evstore.projection_rebuild_jobs SET batch_size = $2, error = NULL, "
				   "phase = CASE WHEN copies IS NULL THEN 'starting' ELSE 'filling' END, "
				   "updated_at = pg_catalog.now() WHERE id = $1", 2, jtypes, jvalues);
	}
	else
	{
		if (p->is_sync)
		{
			Datum		t = ObjectIdGetDatum(p->target);

			models = PointerGetDatum(construct_array(&t, 1, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
			if (!PG_ARGISNULL(1))
			{
				live = oid_array(PG_GETARG_DATUM(1), &n);
				if (n != 1 || live[0] != p->target)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("the read model of attribute-sync projection \"%s\" is its target table", name),
							 errhint("Leave read_models out.")));
			}
		}
		else
		{
			if (PG_ARGISNULL(1))
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("read_models is required to rebuild handler projection \"%s\" blue/green", name),
						 errdetail("evstore cannot tell which tables a handler writes."),
						 errhint("Name them, e.g. read_models => ARRAY['order_totals'::regclass].")));
			models = PG_GETARG_DATUM(1);
		}
		values[1] = models;
		owner_exec("SELECT evstore._rebuild_check($2::pg_catalog.regclass[])", 2, types, values);
		live = oid_array(models, &n);
		check_table_owners(live, n);
		if (!p->is_sync)
			check_handler_names(p, live, n);
		if (owner_exec("INSERT INTO evstore.projection_rebuild_jobs "
					   "(name, read_models, shadow_schema, requested_by, batch_size) "
					   "VALUES ($1, $2::pg_catalog.regclass[], '', $3::pg_catalog.regrole, $4) RETURNING id",
					   4, types, values) != 1)
			elog(ERROR, "evstore: could not record the rebuild");
		id = DatumGetInt64(result_datum(0, 1, &isnull));
		job_exec("UPDATE evstore.projection_rebuild_jobs SET shadow_schema = 'evstore_rebuild_' || id WHERE id = $1", id);
		job_locktag(&tag, id);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	SPI_finish();
	launch_worker(id);
	PG_RETURN_INT64(id);
}

PG_FUNCTION_INFO_V1(evstore_cancel_rebuild);

/* evstore.cancel_rebuild(name text) -> boolean */
Datum
evstore_cancel_rebuild(PG_FUNCTION_ARGS)
{
	char	   *name = proj_name_arg(fcinfo);
	Oid			types[4] = {TEXTOID, OIDOID, OIDOID, OIDOID};
	Datum		values[4];
	bool		isnull;
	int64		id;
	Oid			requested_by;
	Datum		owner;
	bool		no_owner;
	LOCKTAG		tag;

	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot cancel a rebuild")));
	PreventCommandIfReadOnly("evstore.cancel_rebuild()");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	values[0] = CStringGetTextDatum(name);
	if (owner_exec("SELECT j.id, j.requested_by::pg_catalog.oid, c.owner::pg_catalog.oid "
				   "FROM evstore.projection_rebuild_jobs j "
				   "LEFT JOIN evstore.projections_catalog c ON c.name = j.name WHERE j.name = $1",
				   1, types, values) == 0)
	{
		SPI_finish();
		ereport(NOTICE,
				(errmsg("projection \"%s\" has no blue/green rebuild in progress", name)));
		PG_RETURN_BOOL(false);
	}
	id = DatumGetInt64(result_datum(0, 1, &isnull));
	requested_by = DatumGetObjectId(result_datum(0, 2, &isnull));
	owner = result_datum(0, 3, &no_owner);
	if (!has_privs_of_role(GetUserId(), requested_by) &&
		(no_owner || !has_privs_of_role(GetUserId(), DatumGetObjectId(owner))))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of projection \"%s\" to cancel its rebuild", name)));

	job_locktag(&tag, id);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		/* stop the worker (its open batch or swap rolls back) and wait for it */
		values[0] = Int64GetDatum(id);
		values[1] = ObjectIdGetDatum(MyDatabaseId);
		values[2] = ObjectIdGetDatum((Oid) ((uint64) id >> 32));
		values[3] = ObjectIdGetDatum((Oid) (uint32) id);
		types[0] = INT8OID;
		if (owner_exec("SELECT l.pid FROM pg_catalog.pg_locks l "
					   "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
					   "WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' "
					   "AND l.database = $2 AND l.classid = $3 AND l.objid = $4 "
					   "AND l.objsubid = " CppAsString2(REBUILD_LOCK_CLASS) " "
					   "AND a.backend_type = '" REBUILD_WORKER_TYPE "' AND $1 IS NOT NULL",
					   4, types, values) > 0)
		{
			int			pid = DatumGetInt32(result_datum(0, 1, &isnull));

			if (pid != MyProcPid && kill(pid, SIGTERM) != 0)
				ereport(WARNING,
						(errmsg("could not signal the rebuild worker (PID %d): %m", pid)));
		}
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}

	/* a fresh look: the worker may have swapped just before it stopped */
	if (job_exec("SELECT 1 FROM evstore.projection_rebuild_jobs WHERE id = $1 FOR UPDATE", id) == 0)
	{
		SPI_finish();
		ereport(NOTICE,
				(errmsg("the rebuild of projection \"%s\" finished before it could be cancelled", name)));
		PG_RETURN_BOOL(false);
	}
	job_exec("SELECT evstore._rebuild_discard($1)", id);
	SPI_finish();
	PG_RETURN_BOOL(true);
}
