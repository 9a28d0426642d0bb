/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Per-backend cache of the OIDs of evstore's tables, indexes and
 *	  sequence, so the hot paths never look objects up by name.
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
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"

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
	cache.valid = true;
	return &cache;
}
