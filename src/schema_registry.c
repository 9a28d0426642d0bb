/*-------------------------------------------------------------------------
 *
 * schema_registry.c
 *	  The event schema registry and the upcasters' catalog: the
 *	  backend-local cache of evstore.event_schemas_catalog,
 *	  evstore.upcasters_catalog and evstore.event_validation_modes, the
 *	  append hook that records each event's schema version and validates
 *	  its data, and the SQL-callable helpers.
 *
 * The cache is read like a catalog: the latest committed state (and the
 * own transaction's changes) at the start of each read, invalidated by a
 * relcache invalidation of the catalog tables, which their statement
 * trigger sends.  While decoding (a historic snapshot is active) a second
 * instance is read with the decoding snapshot, so the output plugin sees
 * the registry as of the decoded point of history (the tables are
 * user_catalog_tables for this).  A replaced instance's memory is kept
 * until the end of the transaction, so a read in progress keeps using the
 * registry it started with.
 *
 * With nothing registered the append and read paths cost one check of the
 * cached counts.
 *
 *-------------------------------------------------------------------------
 */
#include "schema.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

/* columns of the catalogs */
enum
{
	Anum_es_event_type = 1,
	Anum_es_version,
	Anum_es_schema,
	Anum_es_registered_at
};
enum
{
	Anum_uc_event_type = 1,
	Anum_uc_from_version,
	Anum_uc_to_version,
	Anum_uc_to_event_type,
	Anum_uc_steps,
	Anum_uc_function,
	Anum_uc_owner,
	Anum_uc_created_at
};
enum
{
	Anum_vm_event_type = 1,
	Anum_vm_mode
};

static const struct config_enum_entry validation_options[] = {
	{"off", VALIDATION_OFF, false},
	{"warn", VALIDATION_WARN, false},
	{"enforce", VALIDATION_ENFORCE, false},
	{NULL, 0, false}
};

static int	validation_setting = VALIDATION_ENFORCE;

/* [0]: normal reads and appends, [1]: while decoding */
static Registry registries[2];
static Oid	catalog_oids[2][3];
static List *retired = NIL;		/* contexts of replaced caches */

static void
registry_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < 2; i++)
	{
		if (!registries[i].valid)
			continue;
		if (relid == InvalidOid || relid == catalog_oids[i][0] ||
			relid == catalog_oids[i][1] || relid == catalog_oids[i][2])
			registries[i].valid = false;
	}
}

static void
registry_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	/* a function upcaster's function changed or went away */
	for (int i = 0; i < 2; i++)
		if (registries[i].valid && registries[i].nupcasters > 0)
			registries[i].valid = false;
}

static void
registry_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT &&
		event != XACT_EVENT_PREPARE)
		return;
	foreach(lc, retired)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired);
	retired = NIL;
}

void
evstore_schema_init(void)
{
	DefineCustomEnumVariable("evstore.schema_validation",
							 "How appends check events against their registered schema, for types without a mode of their own.",
							 "off: not at all; warn: a warning, the event is written; enforce: the append fails.",
							 &validation_setting,
							 VALIDATION_ENFORCE,
							 validation_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	evstore_register_relcache_callback(registry_relcache_callback);
	CacheRegisterSyscacheCallback(PROCOID, registry_syscache_callback, (Datum) 0);
	RegisterXactCallback(registry_xact_callback, NULL);
}

/* The decoding instance is reloaded when a decoding session starts. */
void
evstore_registry_reset_historic(void)
{
	registries[1].valid = false;
}

static int
regtype_cmp(const void *a, const void *b)
{
	const RegType *x = a;
	const RegType *y = b;
	int			c = memcmp(x->name, y->name, Min(x->len, y->len));

	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static RegType *
build_type(List **types, const char *name, int len)
{
	ListCell   *lc;
	RegType    *t;

	foreach(lc, *types)
	{
		t = lfirst(lc);
		if (t->len == len && memcmp(t->name, name, len) == 0)
			return t;
	}
	t = palloc0(sizeof(RegType));
	t->name = pnstrdup(name, len);
	t->len = len;
	t->mode = -1;
	*types = lappend(*types, t);
	return t;
}

static char *
text_col(TupleTableSlot *slot, int att, int *len)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	text	   *t;

	if (isnull)
		return NULL;
	t = DatumGetTextPP(d);
	*len = VARSIZE_ANY_EXHDR(t);
	return pnstrdup(VARDATA_ANY(t), *len);
}

static int
schema_cmp(const void *a, const void *b)
{
	return ((const RegSchema *) a)->version - ((const RegSchema *) b)->version;
}

static int
up_cmp(const void *a, const void *b)
{
	return (*(Upcaster *const *) a)->from_version - (*(Upcaster *const *) b)->from_version;
}

typedef struct RegScan
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snap;
} RegScan;

/*
 * Whether the relation exists now (not as of the decoded history).  The
 * output plugin cannot read a user catalog table that was dropped since
 * (its files are gone): the registry of a dropped extension is empty.
 */
static bool
rel_exists_now(Oid relid)
{
	Relation	pgc = table_open(RelationRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc sd;
	bool		found;

	ScanKeyInit(&key, Anum_pg_class_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	sd = systable_beginscan(pgc, ClassOidIndexId, true,
							GetNonHistoricCatalogSnapshot(RelationRelationId), 1, &key);
	found = HeapTupleIsValid(systable_getnext(sd));
	systable_endscan(sd);
	table_close(pgc, AccessShareLock);
	return found;
}

static bool
scan_open(RegScan *s, Oid relid, bool historic)
{
	if (!OidIsValid(relid))
		return false;
	if (historic && !rel_exists_now(relid))
		return false;
	s->rel = table_open(relid, AccessShareLock);
	s->snap = RegisterSnapshot(historic ? GetCatalogSnapshot(relid) : GetLatestSnapshot());
	s->scan = table_beginscan(s->rel, s->snap, 0, NULL);
	s->slot = table_slot_create(s->rel, NULL);
	return true;
}

static void
scan_close(RegScan *s)
{
	ExecDropSingleTupleTableSlot(s->slot);
	table_endscan(s->scan);
	UnregisterSnapshot(s->snap);
	table_close(s->rel, AccessShareLock);
}

static void
registry_load(Registry *r, int idx)
{
	Oid			nsp = get_namespace_oid("evstore", true);
	List	   *types = NIL;
	ListCell   *lc;
	MemoryContext old;
	RegScan	s;
	bool		historic = (idx == 1);
	int			i;

	if (r->cxt)
	{
		MemoryContext rold = MemoryContextSwitchTo(TopMemoryContext);

		/* a read may still use it: free it at the end of the transaction */
		MemoryContextSetParent(r->cxt, TopMemoryContext);
		retired = lappend(retired, r->cxt);
		MemoryContextSwitchTo(rold);
	}
	memset(r, 0, sizeof(Registry));
	r->historic = historic;
	for (i = 0; i < 3; i++)
		catalog_oids[idx][i] = InvalidOid;
	if (OidIsValid(nsp))
	{
		catalog_oids[idx][0] = get_relname_relid("event_schemas_catalog", nsp);
		catalog_oids[idx][1] = get_relname_relid("upcasters_catalog", nsp);
		catalog_oids[idx][2] = get_relname_relid("event_validation_modes", nsp);
	}
	if (!OidIsValid(catalog_oids[idx][0]) || !OidIsValid(catalog_oids[idx][1]))
		return;					/* an older schema: nothing, look again next time */

	r->cxt = AllocSetContextCreate(CacheMemoryContext, "evstore schema registry",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(r->cxt);

	if (scan_open(&s, catalog_oids[idx][0], historic))
	{
		while (table_scan_getnextslot(s.scan, ForwardScanDirection, s.slot))
		{
			int			len;
			char	   *name = text_col(s.slot, Anum_es_event_type, &len);
			bool		isnull;
			RegType    *t = build_type(&types, name, len);
			RegSchema  *rs;

			t->schemas = t->schemas ? repalloc(t->schemas, sizeof(RegSchema) * (t->nschemas + 1)) :
				palloc(sizeof(RegSchema));
			rs = &t->schemas[t->nschemas++];
			rs->version = DatumGetInt32(slot_getattr(s.slot, Anum_es_version, &isnull));
			rs->schema = DatumGetJsonbPCopy(slot_getattr(s.slot, Anum_es_schema, &isnull));
			rs->compiled = NULL;
			t->current_version = Max(t->current_version, rs->version);
			r->nschemas++;
		}
		scan_close(&s);
	}
	if (scan_open(&s, catalog_oids[idx][1], historic))
	{
		while (table_scan_getnextslot(s.scan, ForwardScanDirection, s.slot))
		{
			Upcaster   *up = palloc0(sizeof(Upcaster));
			bool		isnull;
			Datum		d;
			RegType    *t;
			RegType    *target;

			up->event_type = text_col(s.slot, Anum_uc_event_type, &up->typelen);
			up->from_version = DatumGetInt32(slot_getattr(s.slot, Anum_uc_from_version, &isnull));
			up->to_version = DatumGetInt32(slot_getattr(s.slot, Anum_uc_to_version, &isnull));
			up->to_type = text_col(s.slot, Anum_uc_to_event_type, &up->to_typelen);
			d = slot_getattr(s.slot, Anum_uc_steps, &isnull);
			/* a copy: the compiled steps point into it (strings, numbers) */
			if (!isnull)
				up->steps = upcast_compile_steps(DatumGetJsonbPCopy(d), &up->nsteps);
			d = slot_getattr(s.slot, Anum_uc_function, &isnull);
			up->func = isnull ? InvalidOid : DatumGetObjectId(d);
			d = slot_getattr(s.slot, Anum_uc_owner, &isnull);
			up->owner = isnull ? InvalidOid : DatumGetObjectId(d);
			if (OidIsValid(up->func) && !historic)
			{
				HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(up->func));

				if (HeapTupleIsValid(tp))
				{
					Form_pg_proc pf = (Form_pg_proc) GETSTRUCT(tp);

					up->func_takes_row = (pf->pronargs == 1 &&
										  pf->proargtypes.values[0] != JSONBOID);
					ReleaseSysCache(tp);
				}
				else
					up->func_missing = true;
			}
			t = build_type(&types, up->event_type, up->typelen);
			t->ups = t->ups ? repalloc(t->ups, sizeof(Upcaster *) * (t->nups + 1)) :
				palloc(sizeof(Upcaster *));
			t->ups[t->nups++] = up;
			target = up->to_type ? build_type(&types, up->to_type, up->to_typelen) : t;
			target->current_version = Max(target->current_version, up->to_version);
			r->nupcasters++;
		}
		scan_close(&s);
	}
	if (!historic && scan_open(&s, catalog_oids[idx][2], historic))
	{
		while (table_scan_getnextslot(s.scan, ForwardScanDirection, s.slot))
		{
			int			len,
						mlen;
			char	   *name = text_col(s.slot, Anum_vm_event_type, &len);
			char	   *mode = text_col(s.slot, Anum_vm_mode, &mlen);
			RegType    *t = build_type(&types, name, len);

			t->mode = strcmp(mode, "off") == 0 ? VALIDATION_OFF :
				strcmp(mode, "warn") == 0 ? VALIDATION_WARN : VALIDATION_ENFORCE;
		}
		scan_close(&s);
	}

	r->ntypes = list_length(types);
	r->types = palloc(sizeof(RegType) * Max(r->ntypes, 1));
	i = 0;
	foreach(lc, types)
	{
		RegType    *t = lfirst(lc);

		if (t->nschemas > 1)
			qsort(t->schemas, t->nschemas, sizeof(RegSchema), schema_cmp);
		if (t->nups > 1)
			qsort(t->ups, t->nups, sizeof(Upcaster *), up_cmp);
		r->types[i++] = *t;
	}
	if (r->ntypes > 1)
		qsort(r->types, r->ntypes, sizeof(RegType), regtype_cmp);
	MemoryContextSwitchTo(old);

	/* an invalidation that arrived while loading leaves the cache invalid */
	r->valid = true;
	AcceptInvalidationMessages();
}

/* The registry as of now (or of the decoded point of history). */
Registry *
evstore_registry(void)
{
	int			idx = HistoricSnapshotActive() ? 1 : 0;
	Registry   *r = &registries[idx];

	if (likely(r->valid))
		return r;
	registry_load(r, idx);
	return r;
}

RegType *
registry_find_type(Registry *r, const char *name, int len)
{
	int			lo = 0,
				hi = r->ntypes - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		RegType    *t = &r->types[mid];
		int			c = memcmp(t->name, name, Min(t->len, len));

		if (c == 0)
			c = (t->len > len) - (t->len < len);
		if (c == 0)
			return t;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

RegSchema *
registry_find_schema(RegType *t, int32 version)
{
	for (int i = 0; i < t->nschemas; i++)
		if (t->schemas[i].version == version)
			return &t->schemas[i];
	return NULL;
}

SchemaNode *
registry_compiled(Registry *r, RegSchema *s)
{
	if (s->compiled == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(r->cxt);

		s->compiled = schema_compile(s->schema);
		MemoryContextSwitchTo(old);
	}
	return s->compiled;
}

/* The schema version an event's metadata records; 1 when none. */
int32
evstore_event_schema_version(Jsonb *metadata)
{
	JsonbValue	v;
	int64		ver;

	if (metadata == NULL || !JB_ROOT_IS_OBJECT(metadata))
		return 1;
	if (getKeyJsonValueFromContainer(&metadata->root, EVSTORE_SCHEMA_VERSION_KEY,
									 strlen(EVSTORE_SCHEMA_VERSION_KEY), &v) == NULL ||
		v.type != jbvNumeric)
		return 1;
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq,
										  DirectFunctionCall1(numeric_floor, NumericGetDatum(v.val.numeric)),
										  NumericGetDatum(v.val.numeric))))
		return 1;
	ver = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
	return (ver >= 1 && ver <= PG_INT32_MAX) ? (int32) ver : 1;
}

/* the explicit version of an appended event, checked; 0 when none */
static int32
explicit_version(Jsonb *metadata, int index)
{
	JsonbValue	v;

	if (metadata == NULL ||
		getKeyJsonValueFromContainer(&metadata->root, EVSTORE_SCHEMA_VERSION_KEY,
									 strlen(EVSTORE_SCHEMA_VERSION_KEY), &v) == NULL)
		return 0;
	if (v.type == jbvNumeric)
	{
		int32		ver = evstore_event_schema_version(metadata);

		if (ver >= 1 && DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(v.val.numeric),
														 NumericGetDatum(int64_to_numeric(ver)))) == 0)
			return ver;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("event %d: metadata \"%s\" must be a positive integer",
					index, EVSTORE_SCHEMA_VERSION_KEY),
			 errhint("Omit it to record the current version of the event type.")));
	return 0;
}

/* metadata plus "schema_version": version */
static Jsonb *
with_version(Jsonb *metadata, int32 version)
{
	JsonbParseState *ps = NULL;
	JsonbValue	k,
				v;
	JsonbValue *res;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	if (metadata)
	{
		JsonbIterator *it = JsonbIteratorInit(&metadata->root);
		JsonbIteratorToken tok;
		JsonbValue	e;

		/* copy the top-level pairs */
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
			if (tok == WJB_KEY || tok == WJB_VALUE)
				pushJsonbValue(&ps, tok, &e);
	}
	k.type = jbvString;
	k.val.string.val = EVSTORE_SCHEMA_VERSION_KEY;
	k.val.string.len = strlen(EVSTORE_SCHEMA_VERSION_KEY);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(version);
	pushJsonbValue(&ps, WJB_KEY, &k);
	pushJsonbValue(&ps, WJB_VALUE, &v);
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

static void
report_violation(int elevel, int index, const char *type, int32 version,
				 const char *pointer, const char *rule, const char *why)
{
	ereport(elevel,
			(errcode(ERRCODE_EVSTORE_SCHEMA_VIOLATION),
			 errmsg("event %d of type \"%s\" does not match its schema version %d",
					index, type, version),
			 rule ? errdetail("The value at JSON pointer \"%s\" breaks \"%s\": %s.",
							  pointer, rule, why) :
			 errdetail("%s.", why),
			 elevel >= ERROR ? errhint("Nothing was written. Fix the event, or register a new schema version with evstore.register_event_schema().") : 0));
}

/*
 * The append hook: record each event's schema version (the current one of
 * its type unless given) and validate its data.  Before anything is
 * written; on ERROR nothing is.
 */
void
evstore_schema_prepare_batch(EvstoreNewEvent *evs, int n)
{
	Registry   *r = evstore_registry();

	if (likely(r->ntypes == 0))
		return;
	for (int i = 0; i < n; i++)
	{
		RegType    *t = registry_find_type(r, VARDATA_ANY(evs[i].type),
										   VARSIZE_ANY_EXHDR(evs[i].type));
		int32		version;
		int			mode;
		RegSchema  *s;

		if (t == NULL)
			continue;
		version = explicit_version(evs[i].metadata, i);
		if (version == 0)
		{
			if (t->current_version == 0)
				continue;
			version = t->current_version;
			evs[i].metadata = with_version(evs[i].metadata, version);
		}
		mode = t->mode >= 0 ? t->mode : validation_setting;
		if (mode == VALIDATION_OFF || t->nschemas == 0)
			continue;
		s = registry_find_schema(t, version);
		if (s == NULL)
		{
			report_violation(mode == VALIDATION_ENFORCE ? ERROR : WARNING, i, t->name, version,
							 NULL, NULL,
							 psprintf("No schema version %d is registered for event type \"%s\"",
									  version, t->name));
			continue;
		}
		else
		{
			char	   *pointer;
			const char *rule;
			const char *why = schema_validate(registry_compiled(r, s), evs[i].data,
											  &pointer, &rule);

			if (why)
				report_violation(mode == VALIDATION_ENFORCE ? ERROR : WARNING, i, t->name,
								 version, pointer, rule, why);
		}
	}
}

/* dataschema URI of (type, version) when a schema is registered, or NULL */
char *
evstore_dataschema_uri(const char *type, int len, int32 version)
{
	Registry   *r = evstore_registry();
	RegType    *t;
	StringInfoData buf;

	if (r->nschemas == 0 || (t = registry_find_type(r, type, len)) == NULL ||
		registry_find_schema(t, version) == NULL)
		return NULL;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "urn:evstore:schema:");
	for (int i = 0; i < len; i++)
	{
		unsigned char c = type[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~')
			appendStringInfoChar(&buf, c);
		else
			appendStringInfo(&buf, "%%%02X", c);
	}
	appendStringInfo(&buf, ":%d", version);
	return buf.data;
}

/* ---------------------------------------------------------------------
 * SQL-callable helpers
 * ---------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(evstore_check_event_schema);

/* evstore._check_event_schema(schema jsonb) -> void */
Datum
evstore_check_event_schema(PG_FUNCTION_ARGS)
{
	(void) schema_compile(PG_GETARG_JSONB_P(0));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(evstore_check_upcaster_steps);

/* evstore._check_upcaster_steps(steps jsonb) -> void */
Datum
evstore_check_upcaster_steps(PG_FUNCTION_ARGS)
{
	int			n;

	(void) upcast_compile_steps(PG_GETARG_JSONB_P(0), &n);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(evstore_validate_event);

/* evstore.validate_event(event_type text, data jsonb, version integer) -> text */
Datum
evstore_validate_event(PG_FUNCTION_ARGS)
{
	text	   *type = PG_GETARG_TEXT_PP(0);
	Jsonb	   *data = PG_GETARG_JSONB_P(1);
	Registry   *r = evstore_registry();
	RegType    *t = registry_find_type(r, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	int32		version;
	RegSchema  *s;
	char	   *pointer;
	const char *rule;
	const char *why;

	if (t == NULL || t->nschemas == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no schema is registered for event type \"%s\"", text_to_cstring(type))));
	version = PG_ARGISNULL(2) ? t->current_version : PG_GETARG_INT32(2);
	s = registry_find_schema(t, version);
	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no schema version %d is registered for event type \"%s\"",
						version, text_to_cstring(type))));
	why = schema_validate(registry_compiled(r, s), data, &pointer, &rule);
	if (why == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("%s: %s (at \"%s\")", rule, why, pointer)));
}

PG_FUNCTION_INFO_V1(evstore_registry_changed);

/* evstore.registry_changed() -> trigger */
Datum
evstore_registry_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evstore.registry_changed() must be called as a trigger")));
	/* every backend (and decoding, at this point of history) reloads */
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
