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
	evstore_sandbox_forget_locks();
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
			evstore_sandbox_forget_locks();
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
		evstore_sandbox_forget_locks();
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
	EvstoreSandbox sb;
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

	evstore_sandbox_prepare(&sb, "projection", p->name, "a projection",
							"A projection", "appender's");
	proj_dispatch_depth++;
	PG_TRY();
	{
		if (p->broken)
			ereport(ERROR,
					(errcode(p->broken_code),
					 errmsg("projection \"%s\" cannot run: %s", p->name, p->broken),
					 p->broken_code == ERRCODE_INSUFFICIENT_PRIVILEGE ?
					 errhint("Grant the right to the projection's owner again, or drop the projection with evstore.drop_projection().") :
					 errhint("Drop the projection with evstore.drop_projection() or recreate what it needs.")));

		/*
		 * As the owner, security-restricted, with every setting it changes
		 * rolled back and no session-level state left behind (sandbox.c).
		 */
		evstore_sandbox_enter(&sb, p->owner, p->is_sync ? NULL : p->run_path);
		if (p->is_sync)
			proj_apply_sync(p, slot, type, typelen);
		else
		{
			LOCAL_FCINFO(fcinfo, 1);

			InitFunctionCallInfoData(*fcinfo, &p->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = ExecFetchSlotHeapTupleDatum(slot);
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
		}
		evstore_sandbox_leave(&sb);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		evstore_sandbox_abort(&sb);
		proj_dispatch_depth--;
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
	RegisterXactCallback(proj_xact_callback, NULL);
	RegisterSubXactCallback(proj_subxact_callback, NULL);
	event_cxt = AllocSetContextCreate(TopMemoryContext, "evstore projection event",
									  ALLOCSET_DEFAULT_SIZES);
}
