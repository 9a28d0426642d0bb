/*-------------------------------------------------------------------------
 *
 * projections_cache.c
 *	  The backend-local cache of the projection catalog
 *	  (evstore.projections_catalog): its rows with their filters
 *	  pre-parsed and their handlers looked up, and the invalidation that
 *	  drops it.
 *
 * The cache is dropped on a relcache invalidation of the catalog table
 * (sent by create/drop/rebuild and by the catalog's trigger) or of a sync
 * projection's target table, and on any pg_proc or pg_authid change.  It
 * is reloaded only outside of a dispatch, so pointers into it stay valid
 * while projections run.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"
#include "compat.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

/* columns of evstore.projections_catalog */
enum
{
	Anum_pc_name = 1,
	Anum_pc_kind,
	Anum_pc_owner,
	Anum_pc_handler,
	Anum_pc_reset_function,
	Anum_pc_target,
	Anum_pc_key_column,
	Anum_pc_key_source,
	Anum_pc_upsert_types,
	Anum_pc_delete_types,
	Anum_pc_column_map,
	Anum_pc_categories,
	Anum_pc_event_types,
	Anum_pc_created_at,
	Anum_pc_rebuilt_at,
	Anum_pc_search_path,		/* 0.3.0 */
	Natts_pc = Anum_pc_search_path
};

ProjCache	proj_catalog_cache;
static List *old_plans = NIL;	/* plans of dropped caches, freed when safe */

void
proj_relcache_callback(Datum arg, Oid relid)
{
	/* evstore.events too: GRANT and REVOKE on it change who may project */
	if (relid == InvalidOid || relid == proj_catalog_cache.catalog_rel ||
		relid == proj_catalog_cache.events_rel)
		proj_catalog_cache.valid = false;
	if (relid == proj_catalog_cache.catalog_rel && relid != InvalidOid)
		return;
	/* also while the cache is invalid but still in use by a dispatch */
	for (int i = 0; i < proj_catalog_cache.n; i++)
		if (proj_catalog_cache.projs[i].is_sync &&
			(relid == InvalidOid || proj_catalog_cache.projs[i].target == relid))
		{
			proj_catalog_cache.valid = false;
			proj_catalog_cache.projs[i].fast_stale = true;
		}
}

void
proj_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	proj_catalog_cache.valid = false;
}

void
proj_strlist_from_array(StrList *l, Datum d, bool isnull)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	l->n = -1;
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	l->n = 0;
	l->s = palloc(sizeof(char *) * Max(n, 1));
	l->len = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (enulls[i])
			continue;
		l->s[l->n] = TextDatumGetCString(elems[i]);
		l->len[l->n] = strlen(l->s[l->n]);
		l->n++;
	}
}

/* key_source: 'stream_id' or '$.a.b'; returns false when malformed */
bool
proj_parse_key_source(const char *src, bool *is_stream, int *npath, char ***path)
{
	const char *p;
	List	   *parts = NIL;
	int			i = 0;
	ListCell   *lc;

	if (strcmp(src, "stream_id") == 0)
	{
		*is_stream = true;
		*npath = 0;
		*path = NULL;
		return true;
	}
	*is_stream = false;
	if (strncmp(src, "$.", 2) != 0)
		return false;
	p = src + 2;
	for (;;)
	{
		const char *dot = strchr(p, '.');
		int			len = dot ? (int) (dot - p) : (int) strlen(p);

		if (len == 0)
			return false;
		parts = lappend(parts, pnstrdup(p, len));
		if (!dot)
			break;
		p = dot + 1;
	}
	*npath = list_length(parts);
	*path = palloc(sizeof(char *) * *npath);
	foreach(lc, parts)
		(*path)[i++] = lfirst(lc);
	return true;
}

/*
 * A search_path as a projection stores it: the creator's, without pg_temp
 * (the appender's temporary objects must not resolve first; pg_temp goes
 * last when the projection runs, see proj_run_search_path()).
 */
char *
proj_clean_search_path(const char *path)
{
	char	   *raw = pstrdup(path);
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	if (!SplitIdentifierString(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid search_path \"%s\"", path)));
	initStringInfo(&buf);
	foreach(lc, names)
	{
		const char *n = lfirst(lc);

		if (strcmp(n, "pg_temp") == 0 || strncmp(n, "pg_temp_", 8) == 0)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_identifier(n));
	}
	return buf.data;
}

/* The search_path a projection runs with: its stored one, then pg_temp. */
char *
proj_run_search_path(const char *stored)
{
	if (stored == NULL)
		return "pg_catalog, pg_temp";
	if (stored[0] == '\0')
		return "pg_temp";
	return psprintf("%s, pg_temp", stored);
}

static char *
broken_msg(const char *fmt, const char *arg)
{
	return psprintf(fmt, arg);
}

static void
load_row(Projection *p, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		d;
	char	   *kind;

	memset(p, 0, sizeof(Projection));
	/* name, kind and owner are NOT NULL in the catalog */
	p->name = TextDatumGetCString(slot_getattr(slot, Anum_pc_name, &isnull));
	kind = TextDatumGetCString(slot_getattr(slot, Anum_pc_kind, &isnull));
	p->is_sync = strcmp(kind, "sync") == 0;
	p->owner = DatumGetObjectId(slot_getattr(slot, Anum_pc_owner, &isnull));
	d = slot_getattr(slot, Anum_pc_categories, &isnull);
	proj_strlist_from_array(&p->categories, d, isnull);
	p->broken_code = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;

	/* NULL: created before 0.3.0, runs with pg_catalog, pg_temp */
	isnull = true;
	if (slot->tts_tupleDescriptor->natts >= Anum_pc_search_path)
		d = slot_getattr(slot, Anum_pc_search_path, &isnull);
	p->search_path = isnull ? NULL : TextDatumGetCString(d);
	p->run_path = proj_run_search_path(p->search_path);

	/* 0.3.0 async projections; looked up by name */
	if (proj_catalog_cache.async_att > 0)
	{
		d = slot_getattr(slot, proj_catalog_cache.async_att, &isnull);
		p->is_async = !isnull && DatumGetBool(d);
		d = slot_getattr(slot, proj_catalog_cache.paused_att, &isnull);
		p->paused = !isnull && DatumGetBool(d);
	}

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(p->owner)))
		p->broken = broken_msg("the role that owned projection \"%s\" no longer exists", p->name);

	/*
	 * The owner's right to see the events, checked at every load: GRANT and
	 * REVOKE on evstore.events, role memberships and roles invalidate the
	 * cache.  Without it the projection fails the appends it matches rather
	 * than skip events silently (docs/operations.md).
	 */
	if (p->broken == NULL &&
		pg_class_aclcheck(proj_catalog_cache.events_rel, p->owner, ACL_SELECT) != ACLCHECK_OK)
	{
		p->broken = psprintf("owner of projection \"%s\" may no longer read evstore.events",
							 p->name);
		p->broken_code = ERRCODE_INSUFFICIENT_PRIVILEGE;
	}

	if (!p->is_sync)
	{
		d = slot_getattr(slot, Anum_pc_event_types, &isnull);
		proj_strlist_from_array(&p->event_types, d, isnull);
		p->delete_types.n = 0;
		for (int k = 0; k < 2; k++)
		{
			int			att = k == 0 ? Anum_pc_handler : Anum_pc_reset_function;
			Oid			fn = InvalidOid;

			d = slot_getattr(slot, att, &isnull);
			if (!isnull)
			{
				LOCAL_FCINFO(fc, 1);
				Datum		r;

				InitFunctionCallInfoData(*fc, NULL, 1, InvalidOid, NULL, NULL);
				fc->args[0].value = d;
				fc->args[0].isnull = false;
				r = to_regprocedure(fc);
				if (fc->isnull)
				{
					if (p->broken == NULL)
						p->broken = psprintf("function %s of projection \"%s\" no longer exists",
											 TextDatumGetCString(d), p->name);
				}
				else
					fn = DatumGetObjectId(r);
			}
			if (k == 0)
				p->handler = fn;
			else
				p->reset_fn = fn;
		}
		if (p->broken == NULL && !OidIsValid(p->handler))
			p->broken = psprintf("projection \"%s\" has no handler", p->name);
		if (p->broken == NULL && OidIsValid(p->handler))
		{
			if (evstore_proc_aclcheck(p->handler, p->owner, ACL_EXECUTE) != ACLCHECK_OK)
			{
				p->broken = psprintf("owner of projection \"%s\" may no longer execute its handler",
									 p->name);
				p->broken_code = ERRCODE_INSUFFICIENT_PRIVILEGE;
			}
			else
				fmgr_info_cxt(p->handler, &p->flinfo, proj_catalog_cache.cxt);
		}
	}
	else
	{
		char	   *src;
		bool		n1,
					n2,
					n3;

		d = slot_getattr(slot, Anum_pc_upsert_types, &isnull);
		proj_strlist_from_array(&p->event_types, d, isnull);
		d = slot_getattr(slot, Anum_pc_delete_types, &isnull);
		proj_strlist_from_array(&p->delete_types, d, isnull);
		if (p->delete_types.n < 0)
			p->delete_types.n = 0;
		d = slot_getattr(slot, Anum_pc_target, &n1);
		p->target = n1 ? InvalidOid : DatumGetObjectId(d);
		d = slot_getattr(slot, Anum_pc_key_column, &n2);
		p->key_column = n2 ? "" : pstrdup(NameStr(*DatumGetName(d)));
		d = slot_getattr(slot, Anum_pc_key_source, &n3);
		src = n3 ? "" : TextDatumGetCString(d);
		if ((n1 || n2 || n3) && p->broken == NULL)
			p->broken = psprintf("the definition of projection \"%s\" is incomplete", p->name);
		if (!proj_parse_key_source(src, &p->key_is_stream, &p->npath, &p->path) && p->broken == NULL)
			p->broken = psprintf("invalid key source of projection \"%s\"", p->name);
		d = slot_getattr(slot, Anum_pc_column_map, &isnull);
		p->column_map = isnull ? NULL : DatumGetJsonbPCopy(d);
		if (p->broken == NULL && !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(p->target)))
			p->broken = broken_msg("target table of projection \"%s\" no longer exists", p->name);
	}
}

static int
proj_name_cmp(const void *a, const void *b)
{
	return strcmp(((const Projection *) a)->name, ((const Projection *) b)->name);
}

static void
free_cache(void)
{
	for (int i = 0; i < proj_catalog_cache.n; i++)
	{
		Projection *p = &proj_catalog_cache.projs[i];

		if (p->fast)
			proj_upsert_release(p->fast);
		for (int k = 0; k < p->nshapes; k++)
			old_plans = lappend(old_plans, p->shape_plan[k]);
		if (p->delete_plan)
			old_plans = lappend(old_plans, p->delete_plan);
	}
	if (proj_catalog_cache.cxt)
		MemoryContextDelete(proj_catalog_cache.cxt);
	proj_catalog_cache.cxt = NULL;
	proj_catalog_cache.n = 0;
	proj_catalog_cache.nasync = 0;
	proj_catalog_cache.projs = NULL;
}

/*
 * The cached catalog.  It is reloaded only outside of a dispatch, so
 * pointers into it stay valid while projections run.
 */
ProjCache *
proj_cache(void)
{
	const EvstoreCatalog *cat;
	Oid			relid;
	Relation	rel;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext old;
	int			cap = 8;
	Oid			save_userid;
	int			save_sec;

	if (likely(proj_catalog_cache.valid) || proj_dispatch_depth > 0 || proj_batch_pinned)
		return &proj_catalog_cache;

	free_cache();
	if (old_plans != NIL)
	{
		ListCell   *lc;

		foreach(lc, old_plans)
			SPI_freeplan((SPIPlanPtr) lfirst(lc));
		list_free(old_plans);
		old_plans = NIL;
	}

	cat = evstore_catalog();
	relid = get_relname_relid("projections_catalog", cat->namespace_oid);
	proj_catalog_cache.catalog_rel = relid;
	proj_catalog_cache.events_rel = cat->events_rel;
	if (!OidIsValid(relid))
	{
		/* an older schema version: no projections, look again next time */
		return &proj_catalog_cache;
	}

	proj_catalog_cache.cxt = AllocSetContextCreate(CacheMemoryContext, "evstore projections",
									  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(proj_catalog_cache.cxt);
	proj_catalog_cache.projs = palloc(cap * sizeof(Projection));

	rel = table_open(relid, AccessShareLock);
	proj_catalog_cache.async_att = get_attnum(relid, "async");
	proj_catalog_cache.paused_att = get_attnum(relid, "paused");
	if (proj_catalog_cache.paused_att == InvalidAttrNumber)
		proj_catalog_cache.async_att = InvalidAttrNumber;

	/*
	 * Look the handlers up as the catalog's owner: the appender that loads
	 * the cache need not have USAGE on the handlers' schemas (the owners'
	 * rights are checked by name in load_row).
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(rel->rd_rel->relowner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		if (proj_catalog_cache.n == cap)
		{
			cap *= 2;
			proj_catalog_cache.projs = repalloc(proj_catalog_cache.projs, cap * sizeof(Projection));
		}
		load_row(&proj_catalog_cache.projs[proj_catalog_cache.n], slot);
		if (proj_catalog_cache.projs[proj_catalog_cache.n++].is_async)
			proj_catalog_cache.nasync++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	SetUserIdAndSecContext(save_userid, save_sec);
	table_close(rel, AccessShareLock);
	qsort(proj_catalog_cache.projs, proj_catalog_cache.n, sizeof(Projection), proj_name_cmp);
	MemoryContextSwitchTo(old);

	/* an invalidation that arrived while loading leaves the cache invalid */
	proj_catalog_cache.valid = true;
	AcceptInvalidationMessages();
	return &proj_catalog_cache;
}

Projection *
proj_find_projection(const char *name)
{
	ProjCache  *c = proj_cache();

	for (int i = 0; i < c->n; i++)
		if (strcmp(c->projs[i].name, name) == 0)
			return &c->projs[i];
	return NULL;
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(evstore_projections_catalog_changed);

/* evstore.projections_catalog_changed() -> trigger */
Datum
evstore_projections_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evstore.projections_catalog_changed() must be called as a trigger")));

	/* every backend reloads its projection cache when this commits */
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);	/* AFTER STATEMENT: result ignored */
}
