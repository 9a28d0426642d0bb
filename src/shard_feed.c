/*-------------------------------------------------------------------------
 *
 * shard_feed.c
 *	  The shards of evstore.events on this node, for the distributed feed
 *	  (evstore.read_all_shard, SPEC section 9).
 *
 * On a Citus cluster evstore.events is distributed by stream_id: its rows
 * live in shards, plain tables evstore.events_<shard id> on the workers,
 * with the distributed table's columns and indexes.  read_all's never-skip
 * argument (fence.c) holds per node: every appender on this node publishes
 * its bound before it draws a position from this node's sequence, so a
 * shard read here up to this node's horizon returns every event of the
 * shard at or below it that will ever commit.  That holds only where the
 * shard's placement is: a copy left behind by a shard move (Citus drops it
 * later) or one being filled by a move in progress is refused.
 *
 * The shard's indexes are found by their keys, not by their names (Citus
 * suffixes index names with the shard id, and distribution changes which
 * unique indexes exist): (global_position ...), (category,
 * global_position) and (stream_bucket, global_position).
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* Is this node's placement of shard shardid of evstore.events the live one? */
static void
check_placement(int64 shardid)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	bool		isnull;
	bool		is_events;
	bool		here;
	char	   *where;
	int			rc;

	if (!OidIsValid(get_relname_relid("pg_dist_placement", PG_CATALOG_NAMESPACE)) ||
		!OidIsValid(get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("evstore.read_all_shard() needs Citus"),
				 errdetail("Extension \"citus\" is not installed in this database."),
				 errhint("On a single node, use evstore.read_all().")));

	args[0] = Int64GetDatum(shardid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	rc = SPI_execute_with_args(
							   "SELECT s.logicalrelid = 'evstore.events'::pg_catalog.regclass,"
							   " EXISTS (SELECT FROM pg_catalog.pg_dist_placement p"
							   "  WHERE p.shardid = s.shardid"
							   "  AND p.groupid = (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g)),"
							   " (SELECT pg_catalog.string_agg(n.nodename || ':' || n.nodeport, ', ')"
							   "  FROM pg_catalog.pg_dist_placement p JOIN pg_catalog.pg_dist_node n"
							   "  USING (groupid) WHERE p.shardid = s.shardid)"
							   " FROM pg_catalog.pg_dist_shard s WHERE s.shardid = $1",
							   1, argtypes, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "evstore: placement query failed: %d", rc);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard " INT64_FORMAT " does not exist", shardid),
				 errhint("evstore.shards lists the shards of evstore.events.")));
	is_events = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	here = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 2, &isnull));
	where = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);
	where = where ? pstrdup(where) : pstrdup("no node");
	SPI_finish();

	if (!is_events)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("shard " INT64_FORMAT " is not a shard of evstore.events", shardid)));
	if (!here)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard " INT64_FORMAT " of evstore.events is not placed on this node", shardid),
				 errdetail("Its placement is on %s.", where),
				 errhint("Call evstore.read_all_shard() on the node that holds the shard, or evstore.read_all_distributed() on the coordinator.")));
}

/* Does index indexid lead with column first (then second, when given)? */
static bool
index_leads_with(Oid indexid, AttrNumber first, AttrNumber second)
{
	HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexid));
	Form_pg_index ind;
	bool		result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", indexid);
	ind = (Form_pg_index) GETSTRUCT(tup);
	result = ind->indisvalid && ind->indisready &&
		heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
		heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
		ind->indnkeyatts >= (second ? 2 : 1) &&
		ind->indkey.values[0] == first &&
		(second == 0 || ind->indkey.values[1] == second);
	ReleaseSysCache(tup);
	if (result)
	{
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexid));
		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for relation %u", indexid);
		result = ((Form_pg_class) GETSTRUCT(tup))->relam == BTREE_AM_OID;
		ReleaseSysCache(tup);
	}
	return result;
}

/*
 * The relations that read_all scans for shard shardid of evstore.events,
 * which must be placed on this node.  The shard is locked (AccessShareLock)
 * until the end of the transaction.
 */
void
evstore_shard_relations(int64 shardid, EvstoreEventsRelations *out)
{
	const EvstoreCatalog *cat = evstore_catalog();
	char		name[NAMEDATALEN];
	Relation	shard;
	Relation	events;
	TupleDesc	sd;
	TupleDesc	ed;
	List	   *indexes;
	ListCell   *lc;
	bool		same;

	check_placement(shardid);

	snprintf(name, sizeof(name), "events_" INT64_FORMAT, shardid);
	out->heap = get_relname_relid(name, cat->namespace_oid);
	if (!OidIsValid(out->heap))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("shard " INT64_FORMAT " of evstore.events has no table evstore.%s on this node",
						shardid, name)));

	/* same row type as evstore.events: read_all returns its rows as events */
	shard = table_open(out->heap, AccessShareLock);
	events = table_open(cat->events_rel, AccessShareLock);
	sd = RelationGetDescr(shard);
	ed = RelationGetDescr(events);
	same = shard->rd_rel->relkind == RELKIND_RELATION && sd->natts == ed->natts;
	for (int i = 0; same && i < sd->natts; i++)
		same = TupleDescAttr(sd, i)->atttypid == TupleDescAttr(ed, i)->atttypid &&
			TupleDescAttr(sd, i)->attisdropped == TupleDescAttr(ed, i)->attisdropped;
	table_close(events, AccessShareLock);
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table evstore.%s does not have the columns of evstore.events", name)));

	out->position_idx = out->category_idx = out->bucket_idx = InvalidOid;
	indexes = RelationGetIndexList(shard);
	foreach(lc, indexes)
	{
		Oid			idx = lfirst_oid(lc);

		if (!OidIsValid(out->position_idx) &&
			index_leads_with(idx, Anum_events_global_position, 0))
			out->position_idx = idx;
		else if (!OidIsValid(out->category_idx) &&
				 index_leads_with(idx, Anum_events_category, Anum_events_global_position))
			out->category_idx = idx;
		else if (!OidIsValid(out->bucket_idx) &&
				 index_leads_with(idx, Anum_events_stream_bucket, Anum_events_global_position))
			out->bucket_idx = idx;
	}
	list_free(indexes);
	table_close(shard, NoLock);
	if (!OidIsValid(out->position_idx) || !OidIsValid(out->category_idx) ||
		!OidIsValid(out->bucket_idx))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard evstore.%s lacks an index that read_all needs", name),
				 errdetail("It needs btree indexes on (global_position), (category, global_position) and (stream_bucket, global_position).")));
}

/*
 * Shards whose highest position this backend has checked (see
 * evstore_shard_position_floor); a relation's entry goes with its relcache
 * invalidation (a shard that moves away and back is a new relation).
 */
static List *floor_checked = NIL;
static bool floor_callback_registered = false;

static void
shard_floor_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid))
	{
		list_free(floor_checked);
		floor_checked = NIL;
	}
	else
		floor_checked = list_delete_oid(floor_checked, relid);
}

/*
 * The position the next append into this shard must exceed: the highest
 * one the shard holds while this node's sequence is below it, else 0.
 *
 * A shard that Citus moved (or split) here holds positions handed out by
 * the node it came from, whose sequence may be far ahead of this node's.
 * A reader's checkpoint for the shard (read_all_shard's vector entry) can
 * be as high as the shard's highest position, so an append here that drew
 * a lower position, into any stream of the shard, would land below the
 * checkpoint and be skipped.  The floor makes the node's sequence jump
 * above the shard's content once; the sequence only grows afterwards, so
 * once a backend saw it past the shard's content it does not look again.
 */
int64
evstore_shard_position_floor(Relation shard)
{
	Oid			relid = RelationGetRelid(shard);
	List	   *indexes;
	ListCell   *lc;
	Oid			position_idx = InvalidOid;
	int64		result = 0;
	MemoryContext old;

	if (list_member_oid(floor_checked, relid))
		return 0;
	if (!floor_callback_registered)
	{
		evstore_register_relcache_callback(shard_floor_relcache_callback);
		floor_callback_registered = true;
	}

	indexes = RelationGetIndexList(shard);
	foreach(lc, indexes)
	{
		if (index_leads_with(lfirst_oid(lc), Anum_events_global_position, 0))
		{
			position_idx = lfirst_oid(lc);
			break;
		}
	}
	list_free(indexes);
	if (!OidIsValid(position_idx))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("shard %s of evstore.events lacks an index on global_position",
						RelationGetRelationName(shard))));

	/* committed or in flight: a row still being copied counts too */
	result = evstore_highest_position(shard, position_idx);

	/*
	 * Once this node's sequence is past the shard's content, it stays past
	 * it: no need to look again.  Until then (no append drew a position
	 * yet, or it failed before it drew one) every append looks.
	 */
	if (evstore_sequence_last_value(evstore_catalog()->position_seq) >= result)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		floor_checked = lappend_oid(floor_checked, relid);
		MemoryContextSwitchTo(old);
		return 0;
	}
	return result;
}

/*
 * Are we the coordinator of a Citus cluster whose evstore is distributed?
 * Then changes to the projection catalog go to every worker too.
 */
bool
evstore_is_distributed_coordinator(void)
{
	bool		result = false;

	if (!OidIsValid(get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE)) ||
		!OidIsValid(get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE)))
		return false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	if (SPI_execute("SELECT FROM pg_catalog.pg_dist_partition p, pg_catalog.pg_dist_local_group g"
					" WHERE p.logicalrelid = 'evstore.events'::pg_catalog.regclass AND g.groupid = 0",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "evstore: pg_dist_partition query failed");
	result = SPI_processed > 0;
	SPI_finish();
	return result;
}
