/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Per-backend cache of the OIDs of evstore's tables, indexes and
 *	  sequence, so the hot paths never look objects up by name.
 *
 * When the cache is loaded, evstore.events and evstore.streams are checked to
 * have exactly the columns the C code reads and writes by number (names,
 * types, order, NOT NULL, no dropped columns) and to be permanent tables;
 * otherwise nothing works until the store is restored.
 *
 * The cache is dropped whenever a relcache invalidation names one of the
 * cached relations (or everything), which covers DROP/CREATE EXTENSION,
 * ALTER TABLE and REINDEX.
 *
 * This file also owns evstore's one relcache callback.  PostgreSQL allows
 * few per backend (ten in 15) and other extensions (Citus) need theirs, so
 * evstore registers a single one, and the other caches (projections, key
 * cache, output plugin) ask to be called from it through
 * evstore_register_relcache_callback().
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

static EvstoreCatalog cache;
static bool callback_registered = false;

/* the other modules' invalidation functions, called from ours */
#define MAX_MODULE_CALLBACKS	8
static RelcacheCallbackFunction module_callbacks[MAX_MODULE_CALLBACKS];
static int	n_module_callbacks = 0;

static void
evstore_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < n_module_callbacks; i++)
		module_callbacks[i] (arg, relid);

	if (!cache.valid)
		return;
	if (relid == InvalidOid ||
		relid == cache.events_rel || relid == cache.events_pkey ||
		relid == cache.events_stream_idx || relid == cache.events_id_idx ||
		relid == cache.events_category_idx || relid == cache.events_bucket_idx ||
		relid == cache.streams_rel || relid == cache.streams_pkey ||
		relid == cache.position_seq)
		cache.valid = false;
}

void
evstore_catalog_init(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(evstore_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
}

static Oid
lookup_rel(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore relation \"evstore.%s\" does not exist", name),
				 errhint("Reinstall the extension with DROP EXTENSION evstore; CREATE EXTENSION evstore;")));
	return relid;
}

/* The shape the C code expects (evstore.h's Anum_events_* / Anum_streams_*). */
typedef struct ExpectedColumn
{
	const char *name;
	Oid			type;
	bool		notnull;
} ExpectedColumn;

static const ExpectedColumn events_shape[Natts_events] = {
	{"global_position", INT8OID, true},
	{"stream_id", TEXTOID, true},
	{"stream_version", INT8OID, true},
	{"event_id", UUIDOID, true},
	{"event_type", TEXTOID, true},
	{"data", JSONBOID, true},
	{"metadata", JSONBOID, false},
	{"recorded_at", TIMESTAMPTZOID, true},
	{"category", TEXTOID, true},
	{"stream_bucket", INT2OID, true},
};

static const ExpectedColumn streams_shape[Natts_streams] = {
	{"stream_id", TEXTOID, true},
	{"category", TEXTOID, true},
	{"version", INT8OID, true},
	{"first_version", INT8OID, true},
	{"created_at", TIMESTAMPTZOID, true},
	{"updated_at", TIMESTAMPTZOID, true},
	{"deleted_at", TIMESTAMPTZOID, false},
	{"tombstoned", BOOLOID, true},
};

static void
shape_error(const char *relname, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("evstore.%s does not have the shape evstore expects", relname),
			 errdetail("%s", detail),
			 errhint("The table was changed outside evstore's scripts. Restore the database from a backup taken before the change.")));
}

/* relkind and persistence of one of evstore's relations */
static void
verify_relation(Oid relid, const char *relname, char relkind, int natts)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class cls;
	char		kind;
	char		persistence;
	int			relnatts;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	cls = (Form_pg_class) GETSTRUCT(tup);
	kind = cls->relkind;
	persistence = cls->relpersistence;
	relnatts = cls->relnatts;
	ReleaseSysCache(tup);

	if (kind != relkind)
		shape_error(relname, "It is not of the kind evstore created.");
	if (persistence != RELPERSISTENCE_PERMANENT)
		shape_error(relname, "It is not a permanent (logged) relation, so a crash would lose its contents.");
	if (natts >= 0 && relnatts != natts)
		shape_error(relname, psprintf("It has %d columns (dropped ones included); evstore expects %d.",
									  relnatts, natts));
}

static void
verify_columns(Oid relid, const char *relname, const ExpectedColumn *cols, int ncols)
{
	for (int i = 0; i < ncols; i++)
	{
		HeapTuple	tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid),
										  Int16GetDatum(i + 1));
		Form_pg_attribute att;
		bool		ok;
		char	   *name;
		Oid			type;

		if (!HeapTupleIsValid(tup))
			shape_error(relname, psprintf("Column %d is missing.", i + 1));
		att = (Form_pg_attribute) GETSTRUCT(tup);
		ok = !att->attisdropped &&
			strcmp(NameStr(att->attname), cols[i].name) == 0 &&
			att->atttypid == cols[i].type &&
			att->attnotnull == cols[i].notnull;
		name = pstrdup(NameStr(att->attname));
		type = att->atttypid;
		ReleaseSysCache(tup);
		if (!ok)
			shape_error(relname,
						psprintf("Column %d is \"%s\" of type %s; evstore expects \"%s\" of type %s%s.",
								 i + 1, name,
								 OidIsValid(type) ? format_type_be(type) : "(dropped)",
								 cols[i].name, format_type_be(cols[i].type),
								 cols[i].notnull ? " NOT NULL" : ""));
	}
}

/*
 * Have func called on every relcache invalidation this backend receives,
 * from evstore's one relcache callback.
 */
void
evstore_register_relcache_callback(RelcacheCallbackFunction func)
{
	evstore_catalog_init();
	for (int i = 0; i < n_module_callbacks; i++)
		if (module_callbacks[i] == func)
			return;
	if (n_module_callbacks >= MAX_MODULE_CALLBACKS)
		elog(ERROR, "evstore: too many relcache callbacks");
	module_callbacks[n_module_callbacks++] = func;
}

/*
 * Return the cached OIDs, looking them up when the cache is cold.
 */
const EvstoreCatalog *
evstore_catalog(void)
{
	Oid			nsp;

	if (likely(cache.valid))
		return &cache;

	evstore_catalog_init();

	nsp = get_namespace_oid("evstore", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_extension_oid("evstore", true)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"evstore\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION evstore;")));

	cache.namespace_oid = nsp;
	cache.events_rel = lookup_rel("events", nsp);
	cache.events_pkey = lookup_rel("events_pkey", nsp);
	cache.events_stream_idx = lookup_rel("events_stream_version_key", nsp);
	cache.events_id_idx = lookup_rel("events_event_id_key", nsp);
	cache.events_category_idx = lookup_rel("events_category_position_idx", nsp);
	cache.events_bucket_idx = lookup_rel("events_bucket_position_idx", nsp);
	cache.streams_rel = lookup_rel("streams", nsp);
	cache.streams_pkey = lookup_rel("streams_pkey", nsp);
	cache.position_seq = lookup_rel("global_position_seq", nsp);
	cache.events_type = get_rel_type_id(cache.events_rel);
	cache.distributed = false;
	cache.shardid = 0;

	verify_relation(cache.events_rel, "events", RELKIND_RELATION, Natts_events);
	verify_columns(cache.events_rel, "events", events_shape, Natts_events);
	verify_relation(cache.streams_rel, "streams", RELKIND_RELATION, Natts_streams);
	verify_columns(cache.streams_rel, "streams", streams_shape, Natts_streams);
	verify_relation(cache.position_seq, "global_position_seq", RELKIND_SEQUENCE, -1);
	cache.valid = true;
	return &cache;
}
