/*-------------------------------------------------------------------------
 *
 * distributed.c
 *	  Distributed mode: evstore's per-stream tables distributed by Citus.
 *
 * After evstore.distribute() (src/evstore.sql), evstore.events,
 * evstore.streams and evstore.snapshots are Citus hash-distributed tables
 * on stream_id, colocated.  On every node the tables of those names are
 * Citus's empty "shells"; the rows live in shards named events_<shardid>,
 * streams_<shardid>, ... in schema evstore on the workers.  evstore's C
 * code reads and writes relations by OID (catalog.c), so here a stream id is
 * resolved to the OIDs of its shards on this node: the stream's hash
 * (hashtext, as Citus hashes a text column) picks the shard interval from
 * pg_dist_shard, pg_dist_placement says whether this node holds it, and the
 * shard relations and their indexes are found by Citus's naming rule
 * (<name>_<shardid>).  The intervals and OIDs are cached per backend and
 * dropped by evstore's one relcache callback: Citus invalidates a
 * distributed table's relcache entry whenever its shards or placements
 * change (create, move, split, drop), and a shard relation's own entry goes
 * when it is dropped.
 *
 * A call on a node that does not hold the stream's shard (not delegated by
 * Citus: inside a transaction block, in a FROM clause, or on the
 * coordinator) fails with ES020 before anything is read or written; it
 * never falls back to the shell.  The shells refuse rows (guard.c: INSERT,
 * COPY; the C path never resolves to them).
 *
 * Nothing here links against Citus: its catalogs are read by name with
 * SPI, only when the cache is cold.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/inval.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

/*
 * Citus's advisory lock class for the metadata of colocated shards
 * (ADV_LOCKTAG_CLASS_CITUS_COLOCATED_SHARDS_METADATA in Citus's
 * resource_lock.h): field 1 the shard index, field 2 the colocation id.
 */
#define CITUS_COLOCATED_SHARDS_METADATA_CLASS	8

/* One shard interval of evstore.events (and its colocated shards). */
typedef struct ShardEntry
{
	int32		minvalue;
	int32		maxvalue;
	int64		events_shard;
	int64		streams_shard;
	bool		local;			/* this node holds a placement */
	bool		resolved;		/* cat filled in (local only) */
	char	   *owner;			/* "host:port" of a node holding it */
	EvstoreCatalog cat;
} ShardEntry;

static struct
{
	bool		valid;
	bool		distributed;
	int32		colocationid;	/* of evstore.events in pg_dist_partition */
	Oid			events_rel;
	Oid			streams_rel;
	Oid			snapshots_rel;
	int			nshards;
	ShardEntry *shards;			/* sorted by minvalue, in TopMemoryContext */
	/* the array before the last reload, still pointed to by callers */
	int			nretired;
	ShardEntry *retired;
} dist;

/* set by evstore._distribute_node() for the rest of its transaction */
static bool distributing = false;
static bool xact_callback_registered = false;

static void
distributed_relcache_callback(Datum arg, Oid relid)
{
	if (!dist.valid)
		return;
	if (relid == InvalidOid || relid == dist.events_rel ||
		relid == dist.streams_rel || relid == dist.snapshots_rel)
	{
		dist.valid = false;
		return;
	}
	for (int i = 0; i < dist.nshards; i++)
	{
		const EvstoreCatalog *c = &dist.shards[i].cat;

		if (!dist.shards[i].resolved)
			continue;
		if (relid == c->events_rel || relid == c->streams_rel ||
			relid == c->events_pkey || relid == c->events_stream_idx ||
			relid == c->events_id_idx || relid == c->events_category_idx ||
			relid == c->events_bucket_idx || relid == c->streams_pkey)
		{
			dist.valid = false;
			return;
		}
	}
}

static void
distributed_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		distributing = false;
}

/* Called from _PG_init. */
void
evstore_distributed_init(void)
{
	evstore_register_relcache_callback(distributed_relcache_callback);
}

/*
 * True while evstore._distribute_node() runs in this transaction: it
 * changes evstore's indexes and sequence like an extension script.
 */
bool
evstore_distributing(void)
{
	return distributing;
}

/* a text datum of an SPI result column, as a C string (NULL for NULL) */
static char *
spi_text(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static bool spi_bool(const char *sql);

static void
load_shards(const EvstoreCatalog *base)
{
	int			ret;
	int			n;
	ShardEntry *shards = NULL;

	dist.events_rel = base->events_rel;
	dist.streams_rel = base->streams_rel;
	dist.snapshots_rel = get_relname_relid("snapshots", base->namespace_oid);
	dist.distributed = false;

	/*
	 * An invalidation can arrive in the middle of an append (any lock taken
	 * accepts invalidation messages): the entries its caller is using stay
	 * allocated until the next reload.
	 */
	for (int i = 0; i < dist.nretired; i++)
		pfree(dist.retired[i].owner);
	if (dist.retired)
		pfree(dist.retired);
	dist.retired = dist.shards;
	dist.nretired = dist.nshards;
	dist.shards = NULL;
	dist.nshards = 0;

	/* no Citus in this database: nothing is distributed */
	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)) ||
		!OidIsValid(get_extension_oid("citus", true)))
	{
		dist.valid = true;
		return;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	ret = SPI_execute(psprintf(
		"SELECT s.shardid, s.shardminvalue::pg_catalog.int4, s.shardmaxvalue::pg_catalog.int4,"
		"  EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement p"
		"          WHERE p.shardid = s.shardid"
		"            AND p.groupid = (SELECT groupid FROM pg_catalog.pg_dist_local_group)),"
		"  (SELECT t.shardid FROM pg_catalog.pg_dist_shard t"
		"    WHERE t.logicalrelid = %u::pg_catalog.regclass AND t.shardminvalue = s.shardminvalue),"
		"  (SELECT n.nodename || ':' || n.nodeport FROM pg_catalog.pg_dist_placement p"
		"     JOIN pg_catalog.pg_dist_node n USING (groupid)"
		"    WHERE p.shardid = s.shardid ORDER BY n.nodeid LIMIT 1),"
		"  (SELECT d.colocationid FROM pg_catalog.pg_dist_partition d WHERE d.logicalrelid = s.logicalrelid)"
		" FROM pg_catalog.pg_dist_shard s"
		" WHERE s.logicalrelid = %u::pg_catalog.regclass"
		"   AND EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition d"
		"               WHERE d.logicalrelid = s.logicalrelid AND d.partmethod = 'h')"
		" ORDER BY 2", base->streams_rel, base->events_rel), true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "evstore: reading Citus's shard metadata failed: %d", ret);
	n = (int) SPI_processed;
	if (n > 0)
	{
		shards = MemoryContextAllocZero(TopMemoryContext, n * sizeof(ShardEntry));
		for (int i = 0; i < n; i++)
		{
			char	   *streams = spi_text(i, 5);
			char	   *owner = spi_text(i, 6);

			shards[i].events_shard = pg_strtoint64(spi_text(i, 1));
			shards[i].minvalue = pg_strtoint32(spi_text(i, 2));
			shards[i].maxvalue = pg_strtoint32(spi_text(i, 3));
			shards[i].local = strcmp(spi_text(i, 4), "t") == 0;
			shards[i].streams_shard = streams ? pg_strtoint64(streams) : 0;
			shards[i].owner = MemoryContextStrdup(TopMemoryContext,
												  owner ? owner : "(no placement)");
		}
		dist.colocationid = pg_strtoint32(spi_text(0, 7));
	}
	SPI_finish();

	dist.shards = shards;
	dist.nshards = n;
	dist.distributed = n > 0;
	dist.valid = true;
}

static Oid
shard_rel(const char *name, int64 shardid, Oid nsp, bool *missing)
{
	char		buf[NAMEDATALEN + 32];
	Oid			relid;

	snprintf(buf, sizeof(buf), "%s_" INT64_FORMAT, name, shardid);
	relid = get_relname_relid(buf, nsp);
	if (!OidIsValid(relid))
		*missing = true;
	return relid;
}

/* fill in the OIDs of a local shard */
static void
resolve_shard(ShardEntry *e, const EvstoreCatalog *base)
{
	Oid			nsp = base->namespace_oid;
	bool		missing = false;

	e->cat = *base;
	e->cat.shardid = e->events_shard;
	e->cat.distributed = true;
	e->cat.events_rel = shard_rel("events", e->events_shard, nsp, &missing);
	e->cat.events_pkey = shard_rel("events_pkey", e->events_shard, nsp, &missing);
	e->cat.events_stream_idx = shard_rel("events_stream_version_key", e->events_shard, nsp, &missing);
	e->cat.events_id_idx = shard_rel("events_event_id_key", e->events_shard, nsp, &missing);
	e->cat.events_category_idx = shard_rel("events_category_position_idx", e->events_shard, nsp, &missing);
	e->cat.events_bucket_idx = shard_rel("events_bucket_position_idx", e->events_shard, nsp, &missing);
	e->cat.streams_rel = shard_rel("streams", e->streams_shard, nsp, &missing);
	e->cat.streams_pkey = shard_rel("streams_pkey", e->streams_shard, nsp, &missing);
	if (missing)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard " INT64_FORMAT " of evstore.events is placed on this node but its relations are missing",
						e->events_shard),
				 errdetail("Citus's metadata names this node for the shard, but evstore.events_" INT64_FORMAT
						   " or one of its indexes, or its evstore.streams shard, does not exist here.",
						   e->events_shard),
				 errhint("A shard move or split may be in progress; retry, or check citus_shards and evstore.shards.")));
	e->resolved = true;
}

static void
ensure_loaded(void)
{
	const EvstoreCatalog *base = evstore_catalog();

	if (!dist.valid || dist.events_rel != base->events_rel)
		load_shards(base);
}

/* Is evstore distributed by Citus in this database? */
bool
evstore_is_distributed(void)
{
	ensure_loaded();
	return dist.distributed;
}

/*
 * Is relid a Citus distributed table?  Without the citus extension, false
 * at the cost of one syscache look-up; the evstore catalog is not needed.
 */
bool
evstore_relation_is_distributed(Oid relid)
{
	bool		result;

	if (!OidIsValid(get_extension_oid("citus", true)) ||
		!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)))
		return false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	result = spi_bool(psprintf("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition"
							   " WHERE logicalrelid = %u::pg_catalog.regclass)", relid));
	SPI_finish();
	return result;
}

/* hashtext(), as Citus hashes a text distribution column */
static int32
stream_shard_hash(const char *stream_id, int len)
{
	text	   *t = cstring_to_text_with_len(stream_id, len);

	return DatumGetInt32(DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID,
												 PointerGetDatum(t)));
}

static ShardEntry *
find_shard(int32 hash)
{
	int			lo = 0,
				hi = dist.nshards - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		ShardEntry *e = &dist.shards[mid];

		if (hash < e->minvalue)
			hi = mid - 1;
		else if (hash > e->maxvalue)
			lo = mid + 1;
		else
			return e;
	}
	return NULL;
}

/*
 * The relations holding stream_id's rows on this node: evstore's own
 * tables when the store is not distributed, else the stream's shards.
 * Raises ES020 when this node does not hold them.
 */
const EvstoreCatalog *
evstore_catalog_for_stream(const char *stream_id, int len)
{
	const EvstoreCatalog *base = evstore_catalog();
	ShardEntry *e;

	if (!dist.valid || dist.events_rel != base->events_rel)
		load_shards(base);
	if (!dist.distributed)
		return base;

	e = find_shard(stream_shard_hash(stream_id, len));
	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no shard of evstore.events covers stream \"%s\"", stream_id),
				 errhint("Check pg_dist_shard: the shards of a hash-distributed table cover every hash value.")));
	if (!e->local)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_NOT_STREAM_NODE),
				 errmsg("stream \"%s\" is not stored on this node", stream_id),
				 errdetail("evstore is distributed with Citus: the stream is in shard " INT64_FORMAT
						   " on %s. This call ran on a node that does not hold that shard: Citus did not delegate it (calls inside a transaction block or with non-constant arguments run where they are issued), or the shard moved meanwhile.",
						   e->events_shard, e->owner),
				 errhint("Call the function on its own, outside a transaction block, with constant arguments (SELECT evstore.append_event('%s', ...);), or connect to the worker that holds the stream (see evstore.shards); after a shard move, retry.",
						 stream_id)));
	if (!e->resolved)
		resolve_shard(e, base);
	return &e->cat;
}

/* the resolved entry of entries[] whose events or streams relation is relid */
static const EvstoreCatalog *
entry_of_rel(ShardEntry *entries, int n, Oid relid)
{
	for (int i = 0; i < n; i++)
	{
		ShardEntry *e = &entries[i];

		if (e->resolved && (e->cat.events_rel == relid || e->cat.streams_rel == relid))
			return &e->cat;
	}
	return NULL;
}

/*
 * evstore_catalog_for_stream() for a caller that writes the stream: also
 * takes Citus's shard metadata lock in ShareLock mode, as Citus's own
 * writes to a shard do (the lock of a hash-distributed table's shard: its
 * colocation group and shard index).  A shard move or split takes it in
 * ExclusiveLock mode on every node before its final catch-up, so no append
 * commits into the old placement after the move copied it; once the lock is
 * granted the placement is looked up again, and a shard that moved away
 * meanwhile raises ES020.
 */
const EvstoreCatalog *
evstore_catalog_for_append(const char *stream_id, int len)
{
	const EvstoreCatalog *cat = evstore_catalog_for_stream(stream_id, len);
	ShardEntry *e;
	LOCKTAG		tag;

	if (!cat->distributed)
		return cat;
	e = find_shard(stream_shard_hash(stream_id, len));
	if (e == NULL)
		elog(ERROR, "evstore: the shard of stream \"%s\" vanished", stream_id);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (e - dist.shards),
						 (uint32) dist.colocationid, CITUS_COLOCATED_SHARDS_METADATA_CLASS);
	(void) LockAcquire(&tag, ShareLock, false, false);
	AcceptInvalidationMessages();
	return evstore_catalog_for_stream(stream_id, len);
}

/*
 * The catalog entry whose events or streams relation is relid: the base
 * catalog or a resolved local shard (streams.c and append.c look indexes up
 * for a relation they were given).  Found also when an invalidation came in
 * since the caller resolved it, so a shard is never paired with another
 * relation's indexes.
 */
const EvstoreCatalog *
evstore_catalog_for_rel(Oid relid)
{
	const EvstoreCatalog *base = evstore_catalog();
	const EvstoreCatalog *c;

	if (relid == base->events_rel || relid == base->streams_rel)
		return base;
	c = entry_of_rel(dist.shards, dist.nshards, relid);
	if (c == NULL)
		c = entry_of_rel(dist.retired, dist.nretired, relid);
	if (c == NULL)
		elog(ERROR, "evstore: relation %u is neither evstore's table nor a shard resolved for it", relid);
	return c;
}

/*
 * The catalogs of every shard of evstore.events this node holds, in hash
 * order (a List of const EvstoreCatalog *, allocated in the caller's
 * context); NIL when the store is not distributed.
 */
List *
evstore_local_shards(void)
{
	const EvstoreCatalog *base = evstore_catalog();
	List	   *result = NIL;

	if (!dist.valid || dist.events_rel != base->events_rel)
		load_shards(base);
	for (int i = 0; i < dist.nshards; i++)
	{
		ShardEntry *e = &dist.shards[i];

		if (!e->local)
			continue;
		if (!e->resolved)
			resolve_shard(e, base);
		result = lappend(result, (void *) &e->cat);
	}
	return result;
}

/* run one command of _distribute_node */
static void
spi_command(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "evstore: \"%s\" failed", sql);
}

static bool
spi_bool(const char *sql)
{
	char	   *v;

	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "evstore: \"%s\" failed", sql);
	v = spi_text(0, 1);
	return v != NULL && strcmp(v, "t") == 0;
}

PG_FUNCTION_INFO_V1(evstore_distribute_node);

/* evstore._distribute_node(position_stride integer, node_offset integer, position_floor bigint) -> void */
Datum
evstore_distribute_node(PG_FUNCTION_ARGS)
{
	int32		stride = PG_GETARG_INT32(0);
	int32		offset = PG_GETARG_INT32(1);
	int64		floor = PG_GETARG_INT64(2);
	int64		last;
	int64		target;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser can distribute evstore")));
	if (stride < 1 || offset < 0 || offset >= stride || floor < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid position stride %d, node offset %d or floor " INT64_FORMAT,
						stride, offset, floor),
				 errdetail("The node's offset (its Citus group id) must be below the stride.")));
	if (!xact_callback_registered)
	{
		RegisterXactCallback(distributed_xact_callback, NULL);
		xact_callback_registered = true;
	}
	distributing = true;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	/* these are node-local changes: Citus must not propagate them */
	(void) set_config_option("citus.enable_ddl_propagation", "off",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	/*
	 * Unique indexes of a distributed table must contain the distribution
	 * column.  The names stay (catalog.c finds them by name) and the first
	 * column stays, which is all the C code relies on: events_pkey for the
	 * backward descent to the highest position and ordered scans by
	 * position, events_event_id_key for the look-up by event id (now per
	 * stream).
	 */
	if (!spi_bool("SELECT pg_catalog.array_length(i.indkey, 1) = 2 FROM pg_catalog.pg_index i"
				  " WHERE i.indexrelid = 'evstore.events_pkey'::pg_catalog.regclass"))
		spi_command("ALTER TABLE evstore.events DROP CONSTRAINT events_pkey,"
					" ADD CONSTRAINT events_pkey PRIMARY KEY (global_position, stream_id)");
	if (!spi_bool("SELECT pg_catalog.array_length(i.indkey, 1) = 2 FROM pg_catalog.pg_index i"
				  " WHERE i.indexrelid = 'evstore.events_event_id_key'::pg_catalog.regclass"))
		spi_command("ALTER TABLE evstore.events DROP CONSTRAINT events_event_id_key,"
					" ADD CONSTRAINT events_event_id_key UNIQUE (event_id, stream_id)");

	/*
	 * Positions: this node hands out offset + k * stride, above every
	 * position any node used so far (floor), so positions are unique across
	 * the cluster and the sequence only grows.
	 */
	last = evstore_sequence_last_value(evstore_catalog()->position_seq);
	if (last < floor)
		last = floor;
	/* the smallest position above last that is offset modulo stride */
	target = last + 1 + ((offset - (last + 1) % stride) % stride + stride) % stride;
	spi_command(psprintf("ALTER SEQUENCE evstore.global_position_seq INCREMENT BY %d", stride));
	spi_command(psprintf("SELECT pg_catalog.setval('evstore.global_position_seq', " INT64_FORMAT ", false)",
						 target));
	SPI_finish();
	dist.valid = false;
	PG_RETURN_VOID();
}
