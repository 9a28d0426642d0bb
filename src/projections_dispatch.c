/*-------------------------------------------------------------------------
 *
 * projections_dispatch.c
 *	  Running projections on the events an append inserts: the event hook,
 *	  matching, applying one event as the projection's owner (a handler
 *	  call or an attribute sync), and what happens at the end of an append
 *	  and of a (sub)transaction.  Also the module's initialisation.
 *
 * A projection that fails records its error in the statistics and fails
 * the append.  A projection cannot append events or change projections.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"
#include "schema.h"

#include "access/xact.h"
#include "compat.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static evstore_event_hook_type prev_event_hook = NULL;
static evstore_batch_end_hook_type prev_batch_end_hook = NULL;

int			proj_dispatch_depth = 0;
bool		proj_batch_pinned = false;
static int	pin_level = 0;			/* transaction nest level of the append */
static MemoryContext event_cxt = NULL;

/* error context */
typedef struct ApplyContext
{
	Projection *p;
	int64		position;
	const char *stream_id;
	int64		version;
	const char *event_type;
	bool		rebuild;
} ApplyContext;

/* Drop the direct upserts' executor states of an aborting (sub)transaction. */
static void
upsert_states_forget(SubTransactionId subid)
{
	for (int i = 0; i < proj_catalog_cache.n; i++)
		if (proj_catalog_cache.projs[i].fast)
			proj_upsert_forget(proj_catalog_cache.projs[i].fast, subid);
}

/* evstore_batch_end_hook: an append is done, release the executor states */
static void
projections_batch_end(void)
{
	if (prev_batch_end_hook)
		prev_batch_end_hook();
	proj_batch_pinned = false;
	proj_forget_prior_locks();
	for (int i = 0; i < proj_catalog_cache.n; i++)
		if (proj_catalog_cache.projs[i].fast)
			proj_upsert_release(proj_catalog_cache.projs[i].fast);
}

static void
proj_xact_callback(XactEvent event, void *arg)
{
	/*
	 * The direct upserts' executor states are released at the end of each
	 * append; after an error they are only forgotten (the abort frees them).
	 */
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			upsert_states_forget(InvalidSubTransactionId);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			proj_pending_publish();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			upsert_states_forget(InvalidSubTransactionId);
			proj_pending_discard();
			proj_dispatch_depth = 0;
			proj_batch_pinned = false;
			proj_forget_prior_locks();
			proj_rebuild_progress_clear();
			break;
		default:
			break;
	}
}

static void
proj_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		upsert_states_forget(mySubid);
		/* an append that failed; not a subtransaction inside a projection */
		if (GetCurrentTransactionNestLevel() <= pin_level)
			proj_batch_pinned = false;
		proj_forget_prior_locks();
	}
	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	proj_pending_subxact_end(event);
}

/* ---------------------------------------------------------------------
 * Applying one event
 * ---------------------------------------------------------------------
 */
static void
apply_error_callback(void *arg)
{
	ApplyContext *ac = (ApplyContext *) arg;

	errcontext("%s projection \"%s\" on event at position %lld (stream \"%s\", version %lld, type \"%s\")",
			   ac->rebuild ? "replaying" : "applying",
			   ac->p->name, (long long) ac->position, ac->stream_id,
			   (long long) ac->version, ac->event_type);
}

/*
 * Session state a projection must not leave behind.  Settings are rolled
 * back by the GUC nest level around the call; statements that create
 * session-level objects or touch the appender's are refused by the utility
 * hook below; LISTEN, DISCARD, cursors WITH HOLD, temporary tables and SET
 * ROLE are refused by the security-restricted operation itself.  What is
 * left are session-level advisory locks, taken by functions no hook sees:
 * they are counted before and after the call, released and refused.
 */
#define PROJ_MAX_PRIOR_LOCKS	64

/*
 * The advisory locks held before the projection about to run.  Within one
 * append (or rebuild) the count taken after a projection serves as the
 * count before the next one: between them only evstore's own code runs,
 * which takes no session-level lock, so one walk of the lock lists per
 * call is enough.
 */
static struct
{
	bool		valid;
	int			held;
	int			n;
	LOCKTAG		tags[PROJ_MAX_PRIOR_LOCKS];
	LOCKMASK	masks[PROJ_MAX_PRIOR_LOCKS];
}			prior_locks;

void
proj_forget_prior_locks(void)
{
	prior_locks.valid = false;
}

/* Note the advisory locks held before a projection's code runs. */
void
proj_note_prior_locks(void)
{
	if (!prior_locks.valid)
	{
		prior_locks.held = evstore_advisory_holds(prior_locks.tags, prior_locks.masks,
												  PROJ_MAX_PRIOR_LOCKS, &prior_locks.n);
		prior_locks.valid = true;
	}
}

/* After it: release and refuse the session-level ones it took. */
void
proj_check_prior_locks(Projection *p)
{
	LOCKTAG		tags[PROJ_MAX_PRIOR_LOCKS];
	LOCKMASK	masks[PROJ_MAX_PRIOR_LOCKS];
	int			n;
	int			held;
	bool		released = false;
	int			nest;

	held = evstore_advisory_holds(tags, masks, PROJ_MAX_PRIOR_LOCKS, &n);
	if (likely(held <= prior_locks.held))
	{
		prior_locks.held = held;
		prior_locks.n = n;
		memcpy(prior_locks.tags, tags, n * sizeof(LOCKTAG));
		memcpy(prior_locks.masks, masks, n * sizeof(LOCKMASK));
		return;
	}

	/*
	 * New advisory lock modes: release those held at session level (a
	 * transaction-level one is the projection's business and goes with the
	 * transaction).  LockRelease() warns when a mode is held at transaction
	 * level only; the warning is silenced for the look.
	 */
	prior_locks.valid = false;
	nest = NewGUCNestLevel();
	(void) set_config_option("client_min_messages", "error", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("log_min_messages", "error", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (int i = 0; i < n; i++)
	{
		LOCKMASK	prior = 0;

		for (int k = 0; k < prior_locks.n; k++)
			if (memcmp(&prior_locks.tags[k], &tags[i], sizeof(LOCKTAG)) == 0)
				prior = prior_locks.masks[k];
		for (LOCKMODE m = 1; m <= MaxLockMode; m++)
			if ((masks[i] & LOCKBIT_ON(m)) && !(prior & LOCKBIT_ON(m)))
				while (LockRelease(&tags[i], m, true))
					released = true;
	}
	AtEOXact_GUC(false, nest);
	if (released)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("projection \"%s\" took a session-level advisory lock", p->name),
				 errdetail("A projection runs inside the appender's session and must leave nothing behind in it; the lock was released."),
				 errhint("Use pg_advisory_xact_lock(), which ends with the transaction.")));
}

/*
 * evstore's ProcessUtility_hook: while a projection runs, refuse the
 * statements that would leave session-level state behind or reach the
 * appender's (prepared statements, cursors, loaded libraries).
 */
static ProcessUtility_hook_type prev_process_utility = NULL;

static void
proj_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (proj_dispatch_depth > 0)
	{
		const char *what = NULL;

		switch (nodeTag(pstmt->utilityStmt))
		{
			case T_PrepareStmt:
				what = "PREPARE";
				break;
			case T_DeallocateStmt:
				what = "DEALLOCATE";
				break;
			case T_ExecuteStmt:
				what = "EXECUTE";
				break;
			case T_LoadStmt:
				what = "LOAD";
				break;
			case T_ClosePortalStmt:
				what = "CLOSE";
				break;
			case T_FetchStmt:
				what = "FETCH";
				break;
			default:
				break;
		}
		if (what)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot run %s inside a projection", what),
					 errdetail("A projection runs inside the appender's session; it may neither leave session-level state behind nor use the appender's.")));
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* A name the projection could not resolve: say which search_path it used. */
static void
add_search_path_hint(Projection *p, ErrorData *edata)
{
	if (edata->hint != NULL ||
		(edata->sqlerrcode != ERRCODE_UNDEFINED_TABLE &&
		 edata->sqlerrcode != ERRCODE_UNDEFINED_FUNCTION &&
		 edata->sqlerrcode != ERRCODE_UNDEFINED_OBJECT))
		return;
	if (p->search_path)
		edata->hint = psprintf("Projection \"%s\" resolves names with search_path = %s, captured from its creator, then pg_temp; "
							   "qualify the name, or drop and create the projection with the search_path it needs.",
							   p->name, p->search_path[0] ? p->search_path : "''");
	else
		edata->hint = psprintf("Projection \"%s\" was created before evstore 0.3.0 and resolves names with search_path = pg_catalog, pg_temp; "
							   "qualify the name, or drop and create the projection.",
							   p->name);
}

void
proj_apply_one(Projection *p, TupleTableSlot *slot, const char *type, int typelen,
		  bool rebuild)
{
	Oid			save_userid;
	int			save_sec;
	bool		isnull;
	ApplyContext ac;
	ErrorContextCallback errcb;
	MemoryContext oldcxt;
	int64		position = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));

	ac.p = p;
	ac.position = position;
	ac.stream_id = NULL;
	ac.version = DatumGetInt64(slot_getattr(slot, Anum_events_stream_version, &isnull));
	ac.rebuild = rebuild;

	oldcxt = MemoryContextSwitchTo(event_cxt);
	ac.event_type = pnstrdup(type, typelen);
	ac.stream_id = TextDatumGetCString(slot_getattr(slot, Anum_events_stream_id, &isnull));
	errcb.callback = apply_error_callback;
	errcb.arg = &ac;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	proj_dispatch_depth++;
	PG_TRY();
	{
		int			nest;

		if (p->broken)
			ereport(ERROR,
					(errcode(p->broken_code),
					 errmsg("projection \"%s\" cannot run: %s", p->name, p->broken),
					 p->broken_code == ERRCODE_INSUFFICIENT_PRIVILEGE ?
					 errhint("Grant the right to the projection's owner again, or drop the projection with evstore.drop_projection().") :
					 errhint("Drop the projection with evstore.drop_projection() or recreate what it needs.")));

		/* the appender's advisory locks, to tell the projection's apart */
		proj_note_prior_locks();

		/*
		 * As the owner, security-restricted, and with every setting the
		 * projection changes (SET or set_config(..., false) included) rolled
		 * back when it returns, as index builds do for index functions.
		 */
		SetUserIdAndSecContext(p->owner,
							   save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		nest = NewGUCNestLevel();
		if (p->is_sync)
			proj_apply_sync(p, slot, type, typelen);
		else
		{
			LOCAL_FCINFO(fcinfo, 1);

			(void) set_config_option("search_path", p->run_path,
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
									 true, 0, false);
			InitFunctionCallInfoData(*fcinfo, &p->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = ExecFetchSlotHeapTupleDatum(slot);
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
		}
		AtEOXact_GUC(false, nest);
		proj_check_prior_locks(p);
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		SetUserIdAndSecContext(save_userid, save_sec);
		proj_dispatch_depth--;
		prior_locks.valid = false;
		MemoryContextSwitchTo(TopTransactionContext);
		edata = CopyErrorData();
		proj_record_error(p->name, position, edata->message ? edata->message : "unknown error");
		if (edata->hint == NULL && edata->elevel == ERROR &&
			(edata->sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
			 edata->sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
			 edata->sqlerrcode == ERRCODE_UNDEFINED_OBJECT))
		{
			FlushErrorState();
			add_search_path_hint(p, edata);
			ReThrowError(edata);
		}
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	proj_dispatch_depth--;
	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(event_cxt);
	pending_add(p, position);
}

/* evstore_event_hook: run the projections that want the event */
static void
projections_event_hook(Relation events_rel, TupleTableSlot *slot)
{
	ProjCache  *c;
	bool		isnull;
	text	   *cat;
	text	   *type;
	int			catlen,
				typelen;
	EvstoreUpcaster *up;

	if (prev_event_hook)
		prev_event_hook(events_rel, slot);

	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot append events"),
				 errdetail("Projections run inside the append that feeds them.")));

	/*
	 * The projection set of this append is the one in force when its first
	 * event arrives (invalidations from projections created or dropped
	 * since are read first); it stays until the append ends, so an append
	 * runs a projection for all of its events or for none.
	 */
	if (!proj_batch_pinned)
	{
		AcceptInvalidationMessages();
		c = proj_cache();
		proj_batch_pinned = true;
		pin_level = GetCurrentTransactionNestLevel();
	}
	else
		c = &proj_catalog_cache;
	/* async projections run in a worker (projections_async.c) */
	if (c->n == c->nasync)
		return;

	/* a projection sees the event in the current shape of its type */
	up = evstore_upcaster_begin(RelationGetDescr(events_rel), UPCAST_PROJECTION);
	if (up)
		slot = evstore_upcaster_slot(up, slot);

	cat = (text *) DatumGetPointer(slot_getattr(slot, Anum_events_category, &isnull));
	type = (text *) DatumGetPointer(slot_getattr(slot, Anum_events_event_type, &isnull));
	if (VARATT_IS_EXTENDED(cat) || VARATT_IS_EXTENDED(type))
	{
		cat = pg_detoast_datum_packed(cat);
		type = pg_detoast_datum_packed(type);
	}
	catlen = VARSIZE_ANY_EXHDR(cat);
	typelen = VARSIZE_ANY_EXHDR(type);

	for (int i = 0; i < c->n; i++)
	{
		Projection *p = &c->projs[i];

		if (!p->is_async &&
			proj_matches(p, VARDATA_ANY(cat), catlen, VARDATA_ANY(type), typelen))
			proj_apply_one(p, slot, VARDATA_ANY(type), typelen, false);
	}
	evstore_upcaster_end(up);
}

void
evstore_projections_init(void)
{
	static bool done = false;

	if (done)
		return;
	done = true;
	prev_event_hook = evstore_event_hook;
	evstore_event_hook = projections_event_hook;
	prev_batch_end_hook = evstore_batch_end_hook;
	evstore_batch_end_hook = projections_batch_end;
	evstore_register_relcache_callback(proj_relcache_callback);
	CacheRegisterSyscacheCallback(PROCOID, proj_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, proj_syscache_callback, (Datum) 0);
	/* role memberships: an owner may lose a right it had through a role */
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, proj_syscache_callback, (Datum) 0);
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = proj_process_utility;
	RegisterXactCallback(proj_xact_callback, NULL);
	RegisterSubXactCallback(proj_subxact_callback, NULL);
	event_cxt = AllocSetContextCreate(TopMemoryContext, "evstore projection event",
									  ALLOCSET_DEFAULT_SIZES);
}
