/*-------------------------------------------------------------------------
 *
 * projections_ddl.c
 *	  The SQL-callable functions that change the set of projections:
 *	  create (handler and attribute sync), drop and rebuild, with their
 *	  argument and privilege checks.  The catalog is written as its owner,
 *	  with appends locked out while the set changes.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"
#include "schema.h"
#include "compat.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#define PROJ_NAME_MAX		(NAMEDATALEN - 1)

static Oid	catalog_relid(void);

static char *
name_arg(FunctionCallInfo fcinfo)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("projection name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("projection name must not be empty")));
	if (strlen(name) > PROJ_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("projection name is too long"),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   (int) strlen(name), PROJ_NAME_MAX)));
	return name;
}

/* text[] argument: NULL stays NULL; no NULL or empty elements, not empty */
static Datum
types_arg(FunctionCallInfo fcinfo, int argno, const char *what, bool *isnull)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	*isnull = PG_ARGISNULL(argno);
	if (*isnull)
		return (Datum) 0;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be an empty array", what),
				 errhint("Pass NULL for no filter.")));
	for (int i = 0; i < n; i++)
		if (enulls[i] || VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i])) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain null or empty elements", what)));
	return PointerGetDatum(arr);
}

/*
 * Changes of the projection set are serialized on the catalog table in
 * SHARE UPDATE EXCLUSIVE mode, which conflicts only with itself (and the
 * stronger modes): appends take no lock for it and never wait for a
 * create or drop, nor a create or drop for an append.  An append runs under
 * the set that was committed when its first event arrived, for all its
 * events (projections_dispatch.c), so a projection created or dropped
 * meanwhile applies to all of an append's events or to none.
 */
static void
lock_catalog_for_ddl(void)
{
	LockRelationOid(catalog_relid(), ShareUpdateExclusiveLock);
}

static Oid
catalog_relid(void)
{
	Oid			relid = get_relname_relid("projections_catalog",
										  evstore_catalog()->namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore.projections_catalog does not exist"),
				 errhint("Update the extension: ALTER EXTENSION evstore UPDATE;")));
	return relid;
}

/* Run SQL on the catalog as the catalog's owner (the extension owner). */
static int
catalog_exec(const char *sql, int nargs, Oid *types, Datum *values, char *nulls)
{
	Oid			save_userid;
	int			save_sec;
	Oid			relid = catalog_relid();
	Oid			owner;
	HeapTuple	tup;
	int			rc;
	uint64		processed;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "evstore: cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "evstore: catalog update failed: %s", SPI_result_code_string(rc));
	processed = SPI_processed;
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	CacheInvalidateRelcacheByRelid(relid);
	return (int) processed;
}

/*
 * The creator's search_path, as SET search_path FROM CURRENT takes it, less
 * pg_temp: names in the projection resolve as they would for its creator,
 * whoever appends.
 */
static char *
creator_search_path(void)
{
	return proj_clean_search_path(GetConfigOption("search_path", false, false));
}

static void
check_new_name(const char *name)
{
	ProjCache  *c;

	/* look at the latest committed state */
	proj_catalog_cache.valid = false;
	c = proj_cache();
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->projs[i].name, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("projection \"%s\" already exists", name)));
}

static void
check_reads_events(void)
{
	if (pg_class_aclcheck(evstore_catalog()->events_rel, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create a projection"),
				 errdetail("A projection sees every event it matches, so its creator must have SELECT on evstore.events.")));
}

static void
check_function(Oid fn, int nargs, Oid argtype, const char *what)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function %u does not exist", what, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset ||
		proc->pronargs != nargs || (nargs == 1 && proc->proargtypes.values[0] != argtype) ||
		proc->prorettype == TRIGGEROID || proc->prorettype == EVENT_TRIGGEROID)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s function %s has the wrong signature", what, format_procedure(fn)),
				 nargs == 1 ?
				 errdetail("A projection handler is a plain function taking one evstore.events row, e.g. f(e evstore.events) RETURNS void.") :
				 errdetail("A reset function is a plain function without arguments, e.g. f() RETURNS void.")));
	}
	ReleaseSysCache(tup);
	if (evstore_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(fn))));
}

PG_FUNCTION_INFO_V1(evstore_create_projection);

/* evstore.create_projection(name text, handler regprocedure, categories text[], event_types text[], reset_function regprocedure, async boolean) -> void */
Datum
evstore_create_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	Oid			handler;
	Oid			types[8] = {TEXTOID, TEXTOID, REGROLEOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', 'n', ' ', ' ', ' '};
	bool		isnull;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("handler must not be null")));
	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));
	handler = PG_GETARG_OID(1);
	check_reads_events();
	check_function(handler, 1, evstore_catalog()->events_type, "handler");

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum("handler");
	values[2] = ObjectIdGetDatum(GetUserId());
	values[3] = CStringGetTextDatum(format_procedure_qualified(handler));
	if (!PG_ARGISNULL(4))
	{
		check_function(PG_GETARG_OID(4), 0, InvalidOid, "reset");
		values[4] = CStringGetTextDatum(format_procedure_qualified(PG_GETARG_OID(4)));
		nulls[4] = ' ';
	}
	values[5] = types_arg(fcinfo, 2, "categories", &isnull);
	nulls[5] = isnull ? 'n' : ' ';
	values[6] = types_arg(fcinfo, 3, "event_types", &isnull);
	nulls[6] = isnull ? 'n' : ' ';
	values[7] = CStringGetTextDatum(creator_search_path());

	lock_catalog_for_ddl();
	check_new_name(name);
	catalog_exec("INSERT INTO evstore.projections_catalog "
				 "(name, kind, owner, handler, reset_function, categories, event_types, search_path) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", 8, types, values, nulls);
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5) && PG_GETARG_BOOL(5))
		proj_async_attach(name);
	proj_reset_slot(name);
	proj_fanout(fcinfo, "create_projection");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(evstore_create_sync_projection);

/* evstore.create_sync_projection(name text, target regclass, key_column name, key_source text, upsert_types text[], delete_types text[], column_map jsonb, categories text[], async boolean) -> void */
Datum
evstore_create_sync_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	Projection	p;
	char	   *key_source;
	Oid			types[11] = {TEXTOID, TEXTOID, REGROLEOID, REGCLASSOID, NAMEOID, TEXTOID,
	TEXTARRAYOID, TEXTARRAYOID, JSONBOID, TEXTARRAYOID, TEXTOID};
	Datum		values[11];
	char		nulls[11];
	bool		isnull;
	Oid			target;
	AclMode		need = ACL_SELECT | ACL_INSERT | ACL_UPDATE;
	static const struct
	{
		AclMode		mode;
		const char *name;
	}			privs[] = {{ACL_SELECT, "SELECT"}, {ACL_INSERT, "INSERT"},
	{ACL_UPDATE, "UPDATE"}, {ACL_DELETE, "DELETE"}};

	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));
	for (int i = 1; i <= 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							i == 1 ? "target" : i == 2 ? "key_column" : "key_source")));
	check_reads_events();
	target = PG_GETARG_OID(1);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", target)));

	memset(&p, 0, sizeof(p));
	p.name = name;
	p.is_sync = true;
	p.owner = GetUserId();
	p.target = target;
	p.key_column = pstrdup(NameStr(*PG_GETARG_NAME(2)));
	key_source = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (!proj_parse_key_source(key_source, &p.key_is_stream, &p.npath, &p.path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid key_source \"%s\"", key_source),
				 errdetail("Use 'stream_id' or a path into the event's data such as '$.order_id' or '$.customer.id'.")));

	values[6] = types_arg(fcinfo, 4, "upsert_types", &isnull);
	nulls[6] = isnull ? 'n' : ' ';
	proj_strlist_from_array(&p.event_types, values[6], isnull);
	values[7] = types_arg(fcinfo, 5, "delete_types", &isnull);
	nulls[7] = isnull ? 'n' : ' ';
	proj_strlist_from_array(&p.delete_types, values[7], isnull);
	if (p.delete_types.n < 0)
		p.delete_types.n = 0;
	else
		need |= ACL_DELETE;
	for (int i = 0; i < p.delete_types.n; i++)
		if (strlist_contains(&p.event_types, p.delete_types.s[i], p.delete_types.len[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" is both an upsert and a delete type",
							p.delete_types.s[i])));
	p.column_map = PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6);
	values[8] = PG_ARGISNULL(6) ? (Datum) 0 : JsonbPGetDatum(p.column_map);
	nulls[8] = PG_ARGISNULL(6) ? 'n' : ' ';
	values[9] = types_arg(fcinfo, 7, "categories", &isnull);
	nulls[9] = isnull ? 'n' : ' ';

	/* the creator must be allowed to do what the projection will do */
	for (int i = 0; i < (int) lengthof(privs); i++)
		if ((need & privs[i].mode) &&
			pg_class_aclcheck(target, GetUserId(), privs[i].mode) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", get_rel_name(target)),
					 errdetail("The projection would write it with your privileges, and you lack %s on it.",
							   privs[i].name),
					 errhint("An attribute-sync projection needs SELECT, INSERT and UPDATE on its target, and DELETE when it has delete types.")));

	/* validates the target, the key and the column map */
	proj_sync_prepare(&p, false, CurrentMemoryContext);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum("sync");
	values[2] = ObjectIdGetDatum(GetUserId());
	values[3] = ObjectIdGetDatum(target);
	values[4] = PG_GETARG_DATUM(2);
	values[5] = CStringGetTextDatum(key_source);
	values[10] = CStringGetTextDatum(creator_search_path());
	nulls[0] = nulls[1] = nulls[2] = nulls[3] = nulls[4] = nulls[5] = nulls[10] = ' ';

	lock_catalog_for_ddl();
	check_new_name(name);
	catalog_exec("INSERT INTO evstore.projections_catalog "
				 "(name, kind, owner, target, key_column, key_source, upsert_types, "
				 "delete_types, column_map, categories, search_path) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", 11, types, values, nulls);
	if (PG_NARGS() > 8 && !PG_ARGISNULL(8) && PG_GETARG_BOOL(8))
		proj_async_attach(name);
	proj_reset_slot(name);
	proj_fanout(fcinfo, "create_sync_projection");
	PG_RETURN_VOID();
}

/* The projection, locked against concurrent drop/rebuild; checks ownership. */
static Projection *
lock_projection(const char *name, bool missing_ok)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	Projection *p;

	values[0] = CStringGetTextDatum(name);
	if (catalog_exec("SELECT 1 FROM evstore.projections_catalog WHERE name = $1 FOR UPDATE",
					 1, types, values, NULL) == 0)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name)));
	}
	proj_catalog_cache.valid = false;
	p = proj_find_projection(name);
	if (p == NULL)
		elog(ERROR, "evstore: projection \"%s\" vanished", name);
	if (!has_privs_of_role(GetUserId(), p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of projection \"%s\"", name),
				 errdetail("Only its owner (a member of role \"%s\") may drop or rebuild it.",
						   GetUserNameFromId(p->owner, true) ? GetUserNameFromId(p->owner, true) : "?")));
	return p;
}

/* For projections_async.c: catalog SQL as the catalog's owner. */
int
proj_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values, char *nulls)
{
	return catalog_exec(sql, nargs, types, values, nulls);
}

PG_FUNCTION_INFO_V1(evstore_drop_projection);

/* evstore.drop_projection(name text, if_exists boolean) -> boolean */
Datum
evstore_drop_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	Projection *p;

	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));

	lock_catalog_for_ddl();
	if ((p = lock_projection(name, if_exists)) == NULL)
	{
		ereport(NOTICE,
				(errmsg("projection \"%s\" does not exist, skipping", name)));
		proj_fanout(fcinfo, "drop_projection");
		PG_RETURN_BOOL(false);
	}
	if (p->is_async)
		proj_async_detach(name);
	values[0] = CStringGetTextDatum(name);
	catalog_exec("DELETE FROM evstore.projections_catalog WHERE name = $1",
				 1, types, values, NULL);
	proj_reset_slot(name);
	proj_fanout(fcinfo, "drop_projection");
	PG_RETURN_BOOL(true);
}

/* Run SQL (or a function) as the projection's owner. */
static void
reset_target(Projection *p)
{
	EvstoreSandbox sb;

	/*
	 * As the owner and security-restricted, with its settings rolled back,
	 * as the projection itself runs: whoever rebuilds (a superuser member of
	 * the owner role) must not have their session changed by it.
	 */
	evstore_sandbox_prepare(&sb, "projection", p->name, "a projection",
							"A projection", "appender's");
	/* as inside a projection: no appends, no session-level state */
	proj_dispatch_depth++;
	evstore_sandbox_forget_locks();
	PG_TRY();
	{
		evstore_sandbox_enter(&sb, p->owner, p->run_path);
		if (p->is_sync)
		{
			char	   *qrel;
			bool		can_truncate = pg_class_aclcheck(p->target, p->owner, ACL_TRUNCATE) == ACLCHECK_OK;

			if (!can_truncate &&
				pg_class_aclcheck(p->target, p->owner, ACL_DELETE) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied to rebuild projection \"%s\"", p->name),
						 errdetail("Rebuilding empties table \"%s\" first, so the projection's owner needs TRUNCATE or DELETE on it.",
								   get_rel_name(p->target))));

			qrel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(p->target)),
											  get_rel_name(p->target));
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "evstore: SPI_connect failed");
			SPI_execute(psprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", qrel), false, 0);
			SPI_execute(psprintf(can_truncate ? "TRUNCATE %s" : "DELETE FROM %s", qrel), false, 0);
			SPI_finish();
		}
		else if (OidIsValid(p->reset_fn))
		{
			if (evstore_proc_aclcheck(p->reset_fn, p->owner, ACL_EXECUTE) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("permission denied for function %s", format_procedure(p->reset_fn))));
			{
				FmgrInfo	fl;
				LOCAL_FCINFO(fc, 0);

				fmgr_info(p->reset_fn, &fl);
				InitFunctionCallInfoData(*fc, &fl, 0, InvalidOid, NULL, NULL);
				(void) FunctionCallInvoke(fc);	/* the result, NULL or not, is ignored */
			}
		}
	}
	PG_CATCH();
	{
		evstore_sandbox_abort(&sb);
		proj_dispatch_depth = Max(proj_dispatch_depth - 1, 0);
		PG_RE_THROW();
	}
	PG_END_TRY();
	proj_dispatch_depth = Max(proj_dispatch_depth - 1, 0);
	evstore_sandbox_leave(&sb);
	evstore_sandbox_forget_locks();
}

PG_FUNCTION_INFO_V1(evstore_rebuild_projection);

/* evstore.rebuild_projection(name text, notice_every integer) -> bigint */
Datum
evstore_rebuild_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	int			notice_every = PG_ARGISNULL(1) ? 10000 : PG_GETARG_INT32(1);
	const EvstoreCatalog *cat;
	Projection *p;
	Relation	events;
	Relation	idx;
	Snapshot	snap;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		replayed = 0;
	int64		target_pos;
	ProjStatSlot *ps = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	PendingStat *pe;
	EvstoreUpcaster *up;

	if (notice_every < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("notice_every must not be negative"),
				 errhint("Use 0 for no progress notices.")));
	if (proj_dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot be rebuilt from inside a projection")));
	PreventCommandIfReadOnly("evstore.rebuild_projection()");

	cat = evstore_catalog();
	p = lock_projection(name, false);

	/* reset first: the locks it takes make the snapshot below complete */
	reset_target(p);
	values[0] = CStringGetTextDatum(name);
	catalog_exec("UPDATE evstore.projections_catalog SET rebuilt_at = pg_catalog.now() WHERE name = $1",
				 1, types, values, NULL);
	proj_catalog_cache.valid = false;
	p = proj_find_projection(name);
	if (p == NULL)
		elog(ERROR, "evstore: projection \"%s\" vanished", name);

	pe = proj_pending_entry(p);
	pe->reset = true;
	pe->count = 0;
	pe->maxpos = 0;

	/*
	 * An async projection replays up to the read_all horizon, taken with
	 * its worker held off, and its checkpoint goes there: the worker goes
	 * on after what the replay applied, nothing twice, nothing missed.
	 */
	if (p->is_async)
	{
		proj_async_lock_checkpoint(name);
		target_pos = evstore_fence_horizon();
	}
	else
		target_pos = evstore_sequence_last_value(cat->position_seq);
	ps = proj_rebuild_progress_start(name, target_pos);

	events = table_open(cat->events_rel, AccessShareLock);
	idx = index_open(cat->events_pkey, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = evstore_index_beginscan(events, idx, snap, 0, 0);
	index_rescan(scan, NULL, 0, NULL, 0);
	slot = table_slot_create(events, NULL);
	/* a projection sees every event in the current shape of its type */
	up = evstore_upcaster_begin(RelationGetDescr(events), UPCAST_PROJECTION);

	/* keep the cache (and p) in place while replaying */
	proj_dispatch_depth++;
	evstore_sandbox_forget_locks();
	PG_TRY();
	{
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			text	   *ecat;
			text	   *etype;
			int64		pos;
			TupleTableSlot *ev;

			CHECK_FOR_INTERRUPTS();
			pos = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));
			if (p->is_async && pos > target_pos)
				break;
			ev = up ? evstore_upcaster_slot(up, slot) : slot;
			ecat = DatumGetTextPP(slot_getattr(ev, Anum_events_category, &isnull));
			etype = DatumGetTextPP(slot_getattr(ev, Anum_events_event_type, &isnull));
			if (proj_matches(p, VARDATA_ANY(ecat), VARSIZE_ANY_EXHDR(ecat),
							 VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype)))
			{
				proj_apply_one(p, ev, VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype), true);
				replayed++;
				if (notice_every > 0 && replayed % notice_every == 0)
					ereport(NOTICE,
							(errmsg("projection \"%s\": replayed %lld events",
									name, (long long) replayed),
							 errdetail("At global position %lld of %lld.",
									   (long long) pos, (long long) target_pos)));
			}
			if (ps)
			{
				ps->rebuild_replayed = replayed;
				ps->rebuild_position = pos;
			}
		}
		if (p->fast)
			proj_upsert_release(p->fast);
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
	if (p->is_async)
		proj_async_set_checkpoint(name, target_pos);
	if (notice_every > 0)
		ereport(NOTICE,
				(errmsg("projection \"%s\" rebuilt: replayed %lld events", name,
						(long long) replayed)));
	PG_RETURN_INT64(replayed);
}

/* For projections_rebuild.c and projections_async.c: the same argument and
 * ownership checks. */
char *
proj_name_arg(FunctionCallInfo fcinfo)
{
	return name_arg(fcinfo);
}

Projection *
proj_lock_projection(const char *name, bool missing_ok)
{
	return lock_projection(name, missing_ok);
}
