/*-------------------------------------------------------------------------
 *
 * decoder.c
 *	  Logical decoding output plugin "evstore": tails newly committed events
 *	  from the transaction log.
 *
 * The extension's library doubles as an output plugin, so
 *
 *		SELECT pg_create_logical_replication_slot('feed', 'evstore');
 *		pg_recvlogical -d DB --slot feed --start -o categories=order -f -
 *
 * emit one JSON object per committed insert into evstore.events, in commit
 * order.  Nothing else is ever emitted: rows of other tables, updates and
 * deletes are skipped, and so are transactions that wrote no event (they
 * only report progress, so an idle slot does not hold back WAL).
 *
 * evstore.events is recognised by its name, and so are its Citus shards
 * (evstore.events_<shard id> on the workers of a distributed store, SPEC
 * section 9); what each relation is, is cached per process and dropped by a
 * relcache invalidation.  The attribute numbers of the columns we print
 * are resolved by name (and checked by type OID) once per invalidation, so
 * a renamed, dropped or retyped column is a clean ERROR, never a bad read.
 * Rows that Citus copies into a shard when it moves or splits one carry a
 * replication origin and are skipped: each event is emitted once, by the
 * slot of the node where it was appended.  See docs/distributed.md.
 *
 * Each event is written as soon as its change is replayed: the plugin keeps
 * no per-transaction buffer, so a transaction of any size costs constant
 * memory here (the reorder buffer spills big transactions to disk itself).
 *
 * Options (kebab-case, as wal2json): categories, event-types, format
 * (json | cloudevents), cloudevents-source, include-transaction,
 * include-metadata.  See docs/output-plugin.md.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"
#include "decoder.h"
#include "schema.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/tupdesc.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/uuid.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Report progress on skipped changes every this many changes. */
#define DECODER_PROGRESS_EVERY		100


/*
 * What a decoded relation is to us.  evstore.events itself, or one of its
 * Citus shards: a plain table evstore.events_<shard id> on a worker (or on
 * a coordinator that holds placements).  Citus creates shards with the
 * distributed table's columns, so a shard is recognised by its name and its
 * columns are then resolved (and checked) like those of evstore.events.
 */
typedef enum EventsRelKind
{
	EVENTS_REL_NONE,			/* any other relation: skipped */
	EVENTS_REL_TABLE,			/* evstore.events */
	EVENTS_REL_SHARD			/* evstore.events_<shard id> */
} EventsRelKind;

/*
 * Per-process cache, one entry per relation seen in a change: its kind and,
 * for events tables, the attribute numbers of the columns we print (a shard
 * created after a column was dropped has other numbers than older ones).
 * An entry is dropped by a relcache invalidation of its relation (so a
 * renamed, moved or altered table is looked at again); an invalidation of
 * all relations drops them all.
 */
typedef struct EventsRelEntry
{
	Oid			relid;			/* hash key */
	EventsRelKind kind;
	bool		resolved;		/* attnums are current */
	AttrNumber	attnum[NUM_COLUMNS];
	AttrNumber	max_attnum;
} EventsRelEntry;

static HTAB *events_rels = NULL;
static EventsRelEntry *last_rel = NULL; /* the entry of the previous change */

static bool callback_registered = false;

static void decoder_startup(LogicalDecodingContext *ctx,
							OutputPluginOptions *opt, bool is_init);
static void decoder_shutdown(LogicalDecodingContext *ctx);
static void decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn);
static void decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						   XLogRecPtr commit_lsn);
static void decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						   Relation relation, ReorderBufferChange *change);

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	AssertVariableIsOfType(&_PG_output_plugin_init, LogicalOutputPluginInit);

	cb->startup_cb = decoder_startup;
	cb->begin_cb = decoder_begin;
	cb->change_cb = decoder_change;
	cb->commit_cb = decoder_commit;
	cb->shutdown_cb = decoder_shutdown;
	/* no truncate, message, two-phase or streaming callbacks: not emitted */
}

/* ------------------------------------------------------------------------
 * Relation cache
 * ------------------------------------------------------------------------
 */
static void
decoder_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	EventsRelEntry *e;

	if (events_rels == NULL)
		return;
	last_rel = NULL;
	if (OidIsValid(relid))
	{
		(void) hash_search(events_rels, &relid, HASH_REMOVE, NULL);
		return;
	}
	/* removing the element just returned is allowed during a scan */
	hash_seq_init(&seq, events_rels);
	while ((e = hash_seq_search(&seq)) != NULL)
		(void) hash_search(events_rels, &e->relid, HASH_REMOVE, NULL);
}

/* Does name spell events_<digits>, the name of a Citus shard of events? */
static bool
is_shard_name(const char *name)
{
	const char *p;

	if (strncmp(name, "events_", 7) != 0 || name[7] == '\0')
		return false;
	for (p = name + 7; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

/*
 * The cache entry of a decoded relation, as of the decoded point of
 * history.  A hash look-up per change (none for a run of changes to the
 * same relation); the catalog is read only the first time a relation is
 * seen after an invalidation.
 */
static EventsRelEntry *
decoder_events_rel(Relation relation)
{
	Oid			relid = RelationGetRelid(relation);
	EventsRelEntry *e;
	bool		found;

	if (likely(last_rel != NULL && last_rel->relid == relid))
		return last_rel;
	if (unlikely(events_rels == NULL))
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(EventsRelEntry);
		ctl.hcxt = TopMemoryContext;
		events_rels = hash_create("evstore decoder relations", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(events_rels, &relid, HASH_ENTER, &found);
	if (!found)
	{
		const char *relname = RelationGetRelationName(relation);
		char	   *nspname;

		e->kind = EVENTS_REL_NONE;
		e->resolved = false;
		e->max_attnum = 0;
		if (relation->rd_rel->relkind == RELKIND_RELATION &&
			strncmp(relname, "events", 6) == 0 &&
			(nspname = get_namespace_name(RelationGetNamespace(relation))) != NULL &&
			strcmp(nspname, "evstore") == 0)
		{
			if (relname[6] == '\0')
				e->kind = EVENTS_REL_TABLE;
			else if (is_shard_name(relname))
				e->kind = EVENTS_REL_SHARD;
		}
	}
	last_rel = e;
	return e;
}

/*
 * Find each printed column in the descriptor by name and check its type.
 * Done once per relcache invalidation of evstore.events (or of a shard).
 */
static void
decoder_resolve_columns(EventsRelEntry *rel, TupleDesc desc)
{
	AttrNumber	maxatt = 0;

	for (int c = 0; c < NUM_COLUMNS; c++)
	{
		AttrNumber	found = InvalidAttrNumber;

		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (att->attisdropped)
				continue;
			if (strcmp(NameStr(att->attname), decoder_columns[c].name) == 0)
			{
				if (att->atttypid != decoder_columns[c].type)
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("column \"%s\" of evstore.events has type %s, expected %s",
									decoder_columns[c].name,
									format_type_be(att->atttypid),
									format_type_be(decoder_columns[c].type)),
							 errdetail("The evstore output plugin cannot decode events of an altered table."),
							 errhint("Restore the column's type, or drop the slot and create a new one after the change.")));
				found = att->attnum;
				break;
			}
		}
		if (found == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column \"%s\" of evstore.events does not exist",
							decoder_columns[c].name),
					 errdetail("The evstore output plugin cannot decode events of an altered table."),
					 errhint("Restore the column, or drop the slot and create a new one after the change.")));
		rel->attnum[c] = found;
		maxatt = Max(maxatt, found);
	}
	rel->max_attnum = maxatt;
	rel->resolved = true;
}

/* ------------------------------------------------------------------------
 * Callbacks
 * ------------------------------------------------------------------------
 */
static void
decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				bool is_init)
{
	DecoderData *data;
	MemoryContext cxt;
	MemoryContext old;

	cxt = AllocSetContextCreate(ctx->context, "evstore decoder",
								ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	data = palloc0(sizeof(DecoderData));
	data->cxt = cxt;
	data->change_cxt = AllocSetContextCreate(cxt, "evstore decoder change",
											 ALLOCSET_DEFAULT_SIZES);
	data->format = FORMAT_JSON;
	data->include_transaction = false;
	data->include_metadata = true;
	data->upcast = true;
	decoder_parse_options(data, ctx->output_plugin_options);
	MemoryContextSwitchTo(old);

	ctx->output_plugin_private = data;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;

	if (!callback_registered)
	{
		evstore_register_relcache_callback(decoder_relcache_callback);
		callback_registered = true;
	}
	/* a new session may start at another point of history */
	evstore_registry_reset_historic();
	decoder_relcache_callback((Datum) 0, InvalidOid);
}

static void
decoder_shutdown(LogicalDecodingContext *ctx)
{
	DecoderData *data = ctx->output_plugin_private;

	if (data != NULL)
	{
		MemoryContextDelete(data->cxt);
		ctx->output_plugin_private = NULL;
	}
}

static void
decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderData *data = ctx->output_plugin_private;

	data->sent_begin = false;
	data->txn_events = 0;
}

/*
 * Format the commit fields every event of this transaction carries, once,
 * when its first event is emitted.  Decoding happens after the commit was
 * read, so they are known.
 */
static void
format_txn_tail(DecoderData *data, ReorderBufferTXN *txn)
{
	StringInfoData tail;

	initStringInfo(&tail);
	appendStringInfoString(&tail, data->format == FORMAT_CLOUDEVENTS ?
						   ",\"commitlsn\":" : ",\"commit_lsn\":");
	decoder_append_lsn(&tail, txn->final_lsn);
	if (data->format == FORMAT_CLOUDEVENTS)
		appendStringInfo(&tail, ",\"xid\":\"%u\",\"committime\":", txn->xid);
	else
		appendStringInfo(&tail, ",\"xid\":%u,\"commit_time\":", txn->xid);
	decoder_append_timestamptz(&tail, txn->xact_time.commit_time);
	appendStringInfoChar(&tail, '}');
	if (tail.len >= (int) sizeof(data->txn_tail))
		elog(ERROR, "evstore decoder: transaction fields too long");
	memcpy(data->txn_tail, tail.data, tail.len + 1);
	pfree(tail.data);
}

static void
write_begin_record(LogicalDecodingContext *ctx, DecoderData *data,
				   ReorderBufferTXN *txn)
{
	OutputPluginPrepareWrite(ctx, false);
	appendStringInfo(ctx->out, "{\"kind\":\"begin\",\"xid\":%u,\"commit_lsn\":",
					 txn->xid);
	decoder_append_lsn(ctx->out, txn->final_lsn);
	appendStringInfoString(ctx->out, ",\"commit_time\":");
	decoder_append_timestamptz(ctx->out, txn->xact_time.commit_time);
	appendStringInfoChar(ctx->out, '}');
	OutputPluginWrite(ctx, false);
}

static void
decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   XLogRecPtr commit_lsn)
{
	DecoderData *data = ctx->output_plugin_private;
	bool		wrote = data->sent_begin;

	data->skipped_changes = 0;

	/* let an idle or filtered slot advance (and a walsender keep alive) */
	OutputPluginUpdateProgress(ctx, !wrote);

	if (!wrote || !data->include_transaction)
		return;

	OutputPluginPrepareWrite(ctx, true);
	appendStringInfo(ctx->out, "{\"kind\":\"commit\",\"xid\":%u,\"commit_lsn\":",
					 txn->xid);
	decoder_append_lsn(ctx->out, commit_lsn);
	appendStringInfoString(ctx->out, ",\"confirm_lsn\":");
	decoder_append_lsn(ctx->out, txn->end_lsn);
	appendStringInfoString(ctx->out, ",\"commit_time\":");
	decoder_append_timestamptz(ctx->out, txn->xact_time.commit_time);
	appendStringInfo(ctx->out, ",\"events\":" INT64_FORMAT "}", data->txn_events);
	OutputPluginWrite(ctx, true);
}

/* A change we do not emit: report progress now and then. */
static inline void
skip_change(LogicalDecodingContext *ctx, DecoderData *data)
{
	if (++data->skipped_changes >= DECODER_PROGRESS_EVERY)
	{
		data->skipped_changes = 0;
		OutputPluginUpdateProgress(ctx, false);
	}
}

static bool
filter_match(const NameFilter *f, Datum d, DecoderColumn c)
{
	struct varlena *v = pg_detoast_datum_packed(decoder_column_varlena(d, c));
	const char *s = VARDATA_ANY(v);
	int			len = VARSIZE_ANY_EXHDR(v);

	for (int i = 0; i < f->n; i++)
		if (f->lens[i] == len && memcmp(f->names[i], s, len) == 0)
			return true;
	return false;
}

/*
 * Declarative upcasters as of the decoded point of history (the registry
 * is read with the decoding snapshot), and the CloudEvents dataschema of
 * the event's type and version when a schema is registered for it.
 */
static void
decoder_upcast(DecoderData *data)
{
	int32		version = 0;
	Registry   *reg;
	text	   *type;

	data->dataschema = NULL;
	if (COLUMN_IS_NULL(COL_EVENT_TYPE) || COLUMN_IS_NULL(COL_DATA))
		return;
	if (data->upcast)
	{
		EvstoreUpcaster *up = evstore_upcaster_begin(NULL, UPCAST_DECODER);

		if (up)
			(void) evstore_upcaster_datums(up, &COLUMN_VALUE(COL_EVENT_TYPE),
										   &COLUMN_VALUE(COL_DATA),
										   &COLUMN_VALUE(COL_METADATA),
										   &COLUMN_IS_NULL(COL_METADATA), &version);
	}
	if (data->format != FORMAT_CLOUDEVENTS)
		return;
	reg = evstore_registry();
	if (likely(reg->nschemas == 0))
		return;
	if (version == 0)
		version = evstore_event_schema_version(COLUMN_IS_NULL(COL_METADATA) ? NULL :
											   DatumGetJsonbP(COLUMN_VALUE(COL_METADATA)));
	type = DatumGetTextPP(COLUMN_VALUE(COL_EVENT_TYPE));
	data->dataschema = evstore_dataschema_uri(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type),
											  version);
}

static void
decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation relation, ReorderBufferChange *change)
{
	DecoderData *data = ctx->output_plugin_private;
	EventsRelEntry *rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	MemoryContext old;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL)
	{
		skip_change(ctx, data);
		return;
	}
	/*
	 * Only inserts into evstore.events or one of its shards.  A row of a
	 * shard written under a replication origin was copied there by Citus (a
	 * shard move or split: its initial copy and the catch-up through logical
	 * replication), not appended: the node it came from emitted it when it
	 * was appended.
	 */
	rel = decoder_events_rel(relation);
	if (rel->kind == EVENTS_REL_NONE ||
		(rel->kind == EVENTS_REL_SHARD && change->origin_id != InvalidRepOriginId))
	{
		skip_change(ctx, data);
		return;
	}

	desc = RelationGetDescr(relation);
	if (unlikely(!rel->resolved))
		decoder_resolve_columns(rel, desc);
	if (unlikely(rel->max_attnum > desc->natts))
		elog(ERROR, "evstore decoder: stale attribute numbers for evstore.events");
	/* a copy: an invalidation while the change is written may drop rel */
	memcpy(data->attnum, rel->attnum, sizeof(data->attnum));

	if (unlikely(data->nalloc < desc->natts))
	{
		old = MemoryContextSwitchTo(data->cxt);
		if (data->values)
		{
			pfree(data->values);
			pfree(data->nulls);
		}
		data->values = palloc(sizeof(Datum) * desc->natts);
		data->nulls = palloc(sizeof(bool) * desc->natts);
		data->nalloc = desc->natts;
		MemoryContextSwitchTo(old);
	}

	old = MemoryContextSwitchTo(data->change_cxt);

	tuple = EVSTORE_CHANGE_NEWTUPLE(change);
	/* heap_deform_tuple copes with tuples of fewer attributes (added columns) */
	heap_deform_tuple(tuple, desc, data->values, data->nulls);

	if ((data->categories.n > 0 &&
		 (COLUMN_IS_NULL(COL_CATEGORY) ||
		  !filter_match(&data->categories, COLUMN_VALUE(COL_CATEGORY), COL_CATEGORY))) ||
		(data->event_types.n > 0 &&
		 (COLUMN_IS_NULL(COL_EVENT_TYPE) ||
		  !filter_match(&data->event_types, COLUMN_VALUE(COL_EVENT_TYPE), COL_EVENT_TYPE))))
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(data->change_cxt);
		skip_change(ctx, data);
		return;
	}

	decoder_upcast(data);

	if (!data->sent_begin)
	{
		format_txn_tail(data, txn);
		if (data->include_transaction)
			write_begin_record(ctx, data, txn);
		data->sent_begin = true;
	}

	OutputPluginPrepareWrite(ctx, true);
	if (data->format == FORMAT_CLOUDEVENTS)
		decoder_write_cloudevents(ctx->out, data);
	else
		decoder_write_json(ctx->out, data);
	OutputPluginWrite(ctx, true);
	data->txn_events++;

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}
