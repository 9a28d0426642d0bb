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
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

static evstore_event_hook_type prev_event_hook = NULL;
static evstore_batch_end_hook_type prev_batch_end_hook = NULL;

int			proj_dispatch_depth = 0;
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
		upsert_states_forget(mySubid);
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
		if (p->broken)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("projection \"%s\" cannot run: %s", p->name, p->broken),
					 errhint("Drop the projection with evstore.drop_projection() or recreate what it needs.")));
		SetUserIdAndSecContext(p->owner,
							   save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		if (p->is_sync)
			proj_apply_sync(p, slot, type, typelen);
		else
		{
			LOCAL_FCINFO(fcinfo, 1);
			int			nest = NewGUCNestLevel();

			(void) set_config_option("search_path", "pg_catalog, pg_temp",
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
									 true, 0, false);
			InitFunctionCallInfoData(*fcinfo, &p->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = ExecFetchSlotHeapTupleDatum(slot);
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
			AtEOXact_GUC(true, nest);
		}
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		SetUserIdAndSecContext(save_userid, save_sec);
		proj_dispatch_depth--;
		MemoryContextSwitchTo(TopTransactionContext);
		edata = CopyErrorData();
		proj_record_error(p->name, position, edata->message ? edata->message : "unknown error");
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

	c = proj_cache();
	if (c->n == 0)
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

		if (proj_matches(p, VARDATA_ANY(cat), catlen, VARDATA_ANY(type), typelen))
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
	RegisterXactCallback(proj_xact_callback, NULL);
	RegisterSubXactCallback(proj_subxact_callback, NULL);
	event_cxt = AllocSetContextCreate(TopMemoryContext, "evstore projection event",
									  ALLOCSET_DEFAULT_SIZES);
}
