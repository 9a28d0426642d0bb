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
 * evstore.events is recognised by its OID, cached per process and dropped
 * by a relcache invalidation.  The attribute numbers of the columns we print
 * are resolved by name (and checked by type OID) once per invalidation, so
 * a renamed, dropped or retyped column is a clean ERROR, never a bad read.
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

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/tupdesc.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
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

/* The columns of evstore.events we print, in output order. */
typedef enum DecoderColumn
{
	COL_GLOBAL_POSITION,
	COL_STREAM_ID,
	COL_STREAM_VERSION,
	COL_EVENT_ID,
	COL_EVENT_TYPE,
	COL_DATA,
	COL_METADATA,
	COL_RECORDED_AT,
	COL_CATEGORY,
	COL_STREAM_BUCKET,
	NUM_COLUMNS
} DecoderColumn;

static const struct
{
	const char *name;
	Oid			type;
}			decoder_columns[NUM_COLUMNS] =
{
	{"global_position", INT8OID},
	{"stream_id", TEXTOID},
	{"stream_version", INT8OID},
	{"event_id", UUIDOID},
	{"event_type", TEXTOID},
	{"data", JSONBOID},
	{"metadata", JSONBOID},
	{"recorded_at", TIMESTAMPTZOID},
	{"category", TEXTOID},
	{"stream_bucket", INT2OID},
};

/*
 * Per-process cache: the OID of evstore.events (InvalidOid when it does not
 * exist at the decoded point of history) and the attribute numbers of its
 * columns.  Dropped by decoder_relcache_callback.
 */
static struct
{
	bool		valid;			/* relid is current */
	Oid			relid;
	bool		resolved;		/* attnums are current for relid */
	AttrNumber	attnum[NUM_COLUMNS];
	AttrNumber	max_attnum;
}			events_cache;

static bool callback_registered = false;

typedef enum DecoderFormat
{
	FORMAT_JSON,
	FORMAT_CLOUDEVENTS
} DecoderFormat;

/* A filter list: comma-separated names. */
typedef struct NameFilter
{
	int			n;
	char	  **names;
	int		   *lens;
} NameFilter;

typedef struct DecoderData
{
	MemoryContext cxt;			/* long-lived: options, arrays */
	MemoryContext change_cxt;	/* reset after every change */

	/* options */
	NameFilter	categories;
	NameFilter	event_types;
	DecoderFormat format;
	bool		include_transaction;
	bool		include_metadata;
	char	   *source;			/* cloudevents source, NULL = default */

	/* ",\"source\":\"...\"" once computed (cloudevents) */
	char	   *source_json;

	/* deformed tuple */
	Datum	   *values;
	bool	   *nulls;
	int			nalloc;

	/* state of the transaction being decoded */
	bool		sent_begin;
	int64		txn_events;
	char		txn_tail[128];	/* commit fields, preformatted per txn */
	int			skipped_changes;
} DecoderData;

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
	if (!events_cache.valid)
		return;
	/* while the table is unknown, any new relation may be it */
	if (relid == InvalidOid || relid == events_cache.relid ||
		!OidIsValid(events_cache.relid))
	{
		events_cache.valid = false;
		events_cache.resolved = false;
	}
}

/* OID of evstore.events as of the decoded point of history, or InvalidOid. */
static inline Oid
decoder_events_relid(void)
{
	if (likely(events_cache.valid))
		return events_cache.relid;
	else
	{
		Oid			nsp = get_namespace_oid("evstore", true);

		events_cache.relid = OidIsValid(nsp) ?
			get_relname_relid("events", nsp) : InvalidOid;
		events_cache.resolved = false;
		events_cache.valid = true;
		return events_cache.relid;
	}
}

/*
 * Find each printed column in the descriptor by name and check its type.
 * Done once per relcache invalidation of evstore.events.
 */
static void
decoder_resolve_columns(TupleDesc desc)
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
		events_cache.attnum[c] = found;
		maxatt = Max(maxatt, found);
	}
	events_cache.max_attnum = maxatt;
	events_cache.resolved = true;
}

/* ------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------
 */
static const char *
option_value(DefElem *elem)
{
	if (elem->arg == NULL)
		return NULL;
	if (!IsA(elem->arg, String))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value of evstore output plugin option \"%s\" must be a string",
						elem->defname)));
	return strVal(elem->arg);
}

static bool
option_bool(DefElem *elem)
{
	const char *v = option_value(elem);
	bool		result;

	if (v == NULL)
		return true;			/* "-o include-transaction" alone */
	if (!parse_bool(v, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value \"%s\" for evstore output plugin option \"%s\"",
						v, elem->defname),
				 errhint("Use true or false.")));
	return result;
}

/*
 * Parse "a,b,c" into a filter.  Surrounding spaces are trimmed; a backslash
 * takes the next character literally (so "\," is a comma in a name).
 */
static void
option_list(DefElem *elem, NameFilter *f)
{
	const char *v = option_value(elem);
	const char *p;
	StringInfoData item;
	List	   *items = NIL;
	ListCell   *lc;
	int			i;

	if (v == NULL || *v == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evstore output plugin option \"%s\" requires a value",
						elem->defname),
				 errhint("Pass a comma-separated list of names, e.g. -o %s=order,invoice.",
						 elem->defname)));

	initStringInfo(&item);
	p = v;
	for (;;)
	{
		if (*p == ',' || *p == '\0')
		{
			int			start = 0,
						end = item.len;

			while (start < end && item.data[start] == ' ')
				start++;
			while (end > start && item.data[end - 1] == ' ')
				end--;
			if (start == end)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for evstore output plugin option \"%s\"",
								v, elem->defname),
						 errdetail("The list contains an empty name.")));
			items = lappend(items, pnstrdup(item.data + start, end - start));
			resetStringInfo(&item);
			if (*p == '\0')
				break;
			p++;
			continue;
		}
		if (*p == '\\' && p[1] != '\0')
			p++;
		appendStringInfoChar(&item, *p);
		p++;
	}

	f->n = list_length(items);
	f->names = palloc(sizeof(char *) * f->n);
	f->lens = palloc(sizeof(int) * f->n);
	i = 0;
	foreach(lc, items)
	{
		f->names[i] = lfirst(lc);
		f->lens[i] = strlen(f->names[i]);
		i++;
	}
}

static void
option_twice(DefElem *elem, bool *seen)
{
	if (*seen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evstore output plugin option \"%s\" is given more than once",
						elem->defname)));
	*seen = true;
}

static void
decoder_parse_options(DecoderData *data, List *options)
{
	ListCell   *lc;
	bool		seen_categories = false,
				seen_types = false,
				seen_format = false,
				seen_source = false,
				seen_txn = false,
				seen_meta = false;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "categories") == 0)
		{
			option_twice(elem, &seen_categories);
			option_list(elem, &data->categories);
		}
		else if (strcmp(elem->defname, "event-types") == 0)
		{
			option_twice(elem, &seen_types);
			option_list(elem, &data->event_types);
		}
		else if (strcmp(elem->defname, "format") == 0)
		{
			const char *v = option_value(elem);

			option_twice(elem, &seen_format);
			if (v != NULL && strcmp(v, "json") == 0)
				data->format = FORMAT_JSON;
			else if (v != NULL && strcmp(v, "cloudevents") == 0)
				data->format = FORMAT_CLOUDEVENTS;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for evstore output plugin option \"format\"",
								v ? v : ""),
						 errhint("Valid formats are \"json\" and \"cloudevents\".")));
		}
		else if (strcmp(elem->defname, "cloudevents-source") == 0)
		{
			const char *v = option_value(elem);

			option_twice(elem, &seen_source);
			if (v == NULL || *v == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("evstore output plugin option \"cloudevents-source\" requires a value"),
						 errhint("Pass a URI reference, e.g. -o cloudevents-source=/shop/orders.")));
			data->source = pstrdup(v);
		}
		else if (strcmp(elem->defname, "include-transaction") == 0)
		{
			option_twice(elem, &seen_txn);
			data->include_transaction = option_bool(elem);
		}
		else if (strcmp(elem->defname, "include-metadata") == 0)
		{
			option_twice(elem, &seen_meta);
			data->include_metadata = option_bool(elem);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized evstore output plugin option \"%s\"",
							elem->defname),
					 errhint("Valid options are categories, event-types, format, cloudevents-source, include-transaction and include-metadata.")));
	}
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
	decoder_parse_options(data, ctx->output_plugin_options);
	MemoryContextSwitchTo(old);

	ctx->output_plugin_private = data;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(decoder_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	/* a new session may start at another point of history */
	events_cache.valid = false;
	events_cache.resolved = false;
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
append_lsn(StringInfo out, XLogRecPtr lsn)
{
	appendStringInfo(out, "\"%X/%X\"", LSN_FORMAT_ARGS(lsn));
}

/* timestamptz as an RFC 3339 JSON string, in UTC */
static void
append_timestamptz(StringInfo out, TimestampTz ts)
{
	char		buf[MAXDATELEN + 1];
	int			utc = 0;

	JsonEncodeDateTime(buf, TimestampTzGetDatum(ts), TIMESTAMPTZOID, &utc);
	appendStringInfoChar(out, '"');
	appendStringInfoString(out, buf);
	appendStringInfoChar(out, '"');
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
	append_lsn(&tail, txn->final_lsn);
	if (data->format == FORMAT_CLOUDEVENTS)
		appendStringInfo(&tail, ",\"xid\":\"%u\",\"committime\":", txn->xid);
	else
		appendStringInfo(&tail, ",\"xid\":%u,\"commit_time\":", txn->xid);
	append_timestamptz(&tail, txn->xact_time.commit_time);
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
	append_lsn(ctx->out, txn->final_lsn);
	appendStringInfoString(ctx->out, ",\"commit_time\":");
	append_timestamptz(ctx->out, txn->xact_time.commit_time);
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
	append_lsn(ctx->out, commit_lsn);
	appendStringInfoString(ctx->out, ",\"confirm_lsn\":");
	append_lsn(ctx->out, txn->end_lsn);
	appendStringInfoString(ctx->out, ",\"commit_time\":");
	append_timestamptz(ctx->out, txn->xact_time.commit_time);
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

/*
 * A varlena column value, detoasted.  The reorder buffer reassembles the
 * TOAST chunks of an inserted row; an on-disk pointer here would mean they
 * are missing (or, for updates, that the value was unchanged), and reading
 * through it is not possible: error out instead.
 */
static struct varlena *
column_varlena(Datum d, DecoderColumn c)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	if (unlikely(VARATT_IS_EXTERNAL_ONDISK(v)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("value of column \"%s\" of evstore.events is not available in the decoded change",
						decoder_columns[c].name),
				 errdetail("The change carries a TOAST pointer without its data.")));
	return v;
}

static bool
filter_match(const NameFilter *f, Datum d, DecoderColumn c)
{
	struct varlena *v = pg_detoast_datum_packed(column_varlena(d, c));
	const char *s = VARDATA_ANY(v);
	int			len = VARSIZE_ANY_EXHDR(v);

	for (int i = 0; i < f->n; i++)
		if (f->lens[i] == len && memcmp(f->names[i], s, len) == 0)
			return true;
	return false;
}

/* a text value, JSON-escaped */
static void
append_text(StringInfo out, Datum d, DecoderColumn c)
{
	struct varlena *v = column_varlena(d, c);

	escape_json(out, text_to_cstring((text *) v));
}

static void
append_int64(StringInfo out, int64 n, bool quoted)
{
	char		buf[MAXINT8LEN + 1];
	int			len = pg_lltoa(n, buf);

	if (quoted)
		appendStringInfoChar(out, '"');
	appendBinaryStringInfo(out, buf, len);
	if (quoted)
		appendStringInfoChar(out, '"');
}

static void
append_uuid(StringInfo out, Datum d)
{
	static const char hex[] = "0123456789abcdef";
	pg_uuid_t  *u = DatumGetUUIDP(d);
	char		buf[38];
	char	   *p = buf;

	*p++ = '"';
	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u->data[i] >> 4];
		*p++ = hex[u->data[i] & 0x0F];
	}
	*p++ = '"';
	appendBinaryStringInfo(out, buf, p - buf);
}

static void
append_jsonb(StringInfo out, Datum d, DecoderColumn c)
{
	Jsonb	   *jb = (Jsonb *) pg_detoast_datum((struct varlena *) column_varlena(d, c));

	JsonbToCString(out, &jb->root, VARSIZE(jb));
}

/* metadata key "name" as a CloudEvents string attribute, when it is a string */
static void
append_metadata_attr(StringInfo out, Jsonb *meta, const char *key,
					 const char *attr)
{
	JsonbValue	k;
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(meta))
		return;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&meta->root, JB_FOBJECT, &k);
	if (v == NULL || v->type != jbvString)
		return;
	appendStringInfo(out, ",\"%s\":", attr);
	escape_json(out, pnstrdup(v->val.string.val, v->val.string.len));
}

/* value of column c, or JSON null */
#define COLUMN_IS_NULL(c)	(data->nulls[events_cache.attnum[c] - 1])
#define COLUMN_VALUE(c)		(data->values[events_cache.attnum[c] - 1])

static void
write_event_json(StringInfo out, DecoderData *data)
{
	appendStringInfoString(out, "{\"global_position\":");
	if (COLUMN_IS_NULL(COL_GLOBAL_POSITION))
		appendStringInfoString(out, "null");
	else
		append_int64(out, DatumGetInt64(COLUMN_VALUE(COL_GLOBAL_POSITION)), false);

	appendStringInfoString(out, ",\"stream_id\":");
	if (COLUMN_IS_NULL(COL_STREAM_ID))
		appendStringInfoString(out, "null");
	else
		append_text(out, COLUMN_VALUE(COL_STREAM_ID), COL_STREAM_ID);

	appendStringInfoString(out, ",\"stream_version\":");
	if (COLUMN_IS_NULL(COL_STREAM_VERSION))
		appendStringInfoString(out, "null");
	else
		append_int64(out, DatumGetInt64(COLUMN_VALUE(COL_STREAM_VERSION)), false);

	appendStringInfoString(out, ",\"event_id\":");
	if (COLUMN_IS_NULL(COL_EVENT_ID))
		appendStringInfoString(out, "null");
	else
		append_uuid(out, COLUMN_VALUE(COL_EVENT_ID));

	appendStringInfoString(out, ",\"event_type\":");
	if (COLUMN_IS_NULL(COL_EVENT_TYPE))
		appendStringInfoString(out, "null");
	else
		append_text(out, COLUMN_VALUE(COL_EVENT_TYPE), COL_EVENT_TYPE);

	appendStringInfoString(out, ",\"data\":");
	if (COLUMN_IS_NULL(COL_DATA))
		appendStringInfoString(out, "null");
	else
		append_jsonb(out, COLUMN_VALUE(COL_DATA), COL_DATA);

	if (data->include_metadata)
	{
		appendStringInfoString(out, ",\"metadata\":");
		if (COLUMN_IS_NULL(COL_METADATA))
			appendStringInfoString(out, "null");
		else
			append_jsonb(out, COLUMN_VALUE(COL_METADATA), COL_METADATA);
	}

	appendStringInfoString(out, ",\"recorded_at\":");
	if (COLUMN_IS_NULL(COL_RECORDED_AT))
		appendStringInfoString(out, "null");
	else
		append_timestamptz(out, DatumGetTimestampTz(COLUMN_VALUE(COL_RECORDED_AT)));

	appendStringInfoString(out, ",\"category\":");
	if (COLUMN_IS_NULL(COL_CATEGORY))
		appendStringInfoString(out, "null");
	else
		append_text(out, COLUMN_VALUE(COL_CATEGORY), COL_CATEGORY);

	appendStringInfoString(out, ",\"stream_bucket\":");
	if (COLUMN_IS_NULL(COL_STREAM_BUCKET))
		appendStringInfoString(out, "null");
	else
		append_int64(out, DatumGetInt16(COLUMN_VALUE(COL_STREAM_BUCKET)), false);

	appendStringInfoString(out, data->txn_tail);
}

/*
 * CloudEvents 1.0, JSON event format.  Extension attribute names are lower
 * case alphanumerics; CloudEvents integers are 32-bit, so bigint values
 * (positions, versions, xids) are strings.
 */
static void
write_event_cloudevents(StringInfo out, DecoderData *data)
{
	if (data->source_json == NULL)
	{
		StringInfoData s;
		MemoryContext old = MemoryContextSwitchTo(data->cxt);

		initStringInfo(&s);
		appendStringInfoString(&s, ",\"source\":");
		if (data->source != NULL)
			escape_json(&s, data->source);
		else
		{
			char	   *db = get_database_name(MyDatabaseId);

			escape_json(&s, psprintf("/evstore/%s", db ? db : "unknown"));
		}
		data->source_json = s.data;
		MemoryContextSwitchTo(old);
	}

	appendStringInfoString(out, "{\"specversion\":\"1.0\",\"id\":");
	if (COLUMN_IS_NULL(COL_EVENT_ID))
		appendStringInfoString(out, "null");
	else
		append_uuid(out, COLUMN_VALUE(COL_EVENT_ID));

	appendStringInfoString(out, data->source_json);

	appendStringInfoString(out, ",\"type\":");
	if (COLUMN_IS_NULL(COL_EVENT_TYPE))
		appendStringInfoString(out, "null");
	else
		append_text(out, COLUMN_VALUE(COL_EVENT_TYPE), COL_EVENT_TYPE);

	if (!COLUMN_IS_NULL(COL_STREAM_ID))
	{
		appendStringInfoString(out, ",\"subject\":");
		append_text(out, COLUMN_VALUE(COL_STREAM_ID), COL_STREAM_ID);
	}
	if (!COLUMN_IS_NULL(COL_RECORDED_AT))
	{
		appendStringInfoString(out, ",\"time\":");
		append_timestamptz(out, DatumGetTimestampTz(COLUMN_VALUE(COL_RECORDED_AT)));
	}
	appendStringInfoString(out, ",\"datacontenttype\":\"application/json\",\"data\":");
	if (COLUMN_IS_NULL(COL_DATA))
		appendStringInfoString(out, "null");
	else
		append_jsonb(out, COLUMN_VALUE(COL_DATA), COL_DATA);

	/* evstore extension attributes */
	if (!COLUMN_IS_NULL(COL_STREAM_ID))
	{
		appendStringInfoString(out, ",\"streamid\":");
		append_text(out, COLUMN_VALUE(COL_STREAM_ID), COL_STREAM_ID);
	}
	if (!COLUMN_IS_NULL(COL_STREAM_VERSION))
	{
		appendStringInfoString(out, ",\"streamversion\":");
		append_int64(out, DatumGetInt64(COLUMN_VALUE(COL_STREAM_VERSION)), true);
	}
	if (!COLUMN_IS_NULL(COL_GLOBAL_POSITION))
	{
		appendStringInfoString(out, ",\"globalposition\":");
		append_int64(out, DatumGetInt64(COLUMN_VALUE(COL_GLOBAL_POSITION)), true);
	}
	if (!COLUMN_IS_NULL(COL_CATEGORY))
	{
		appendStringInfoString(out, ",\"category\":");
		append_text(out, COLUMN_VALUE(COL_CATEGORY), COL_CATEGORY);
	}
	if (!COLUMN_IS_NULL(COL_STREAM_BUCKET))
	{
		appendStringInfoString(out, ",\"streambucket\":");
		append_int64(out, DatumGetInt16(COLUMN_VALUE(COL_STREAM_BUCKET)), false);
	}
	if (data->include_metadata && !COLUMN_IS_NULL(COL_METADATA))
	{
		struct varlena *v = column_varlena(COLUMN_VALUE(COL_METADATA), COL_METADATA);
		Jsonb	   *meta = (Jsonb *) pg_detoast_datum(v);
		StringInfoData s;

		append_metadata_attr(out, meta, "correlation_id", "correlationid");
		append_metadata_attr(out, meta, "causation_id", "causationid");
		/* the whole object, as JSON text (attributes cannot be objects) */
		initStringInfo(&s);
		JsonbToCString(&s, &meta->root, VARSIZE(meta));
		appendStringInfoString(out, ",\"metadata\":");
		escape_json(out, s.data);
	}
	appendStringInfoString(out, data->txn_tail);
}

static void
decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation relation, ReorderBufferChange *change)
{
	DecoderData *data = ctx->output_plugin_private;
	TupleDesc	desc;
	HeapTuple	tuple;
	MemoryContext old;

	/* only inserts into evstore.events, recognised by OID */
	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		RelationGetRelid(relation) != decoder_events_relid() ||
		change->data.tp.newtuple == NULL)
	{
		skip_change(ctx, data);
		return;
	}

	desc = RelationGetDescr(relation);
	if (unlikely(!events_cache.resolved))
		decoder_resolve_columns(desc);
	if (unlikely(events_cache.max_attnum > desc->natts))
		elog(ERROR, "evstore decoder: stale attribute numbers for evstore.events");

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

#if PG_VERSION_NUM >= 170000
	tuple = change->data.tp.newtuple;
#else
	tuple = &change->data.tp.newtuple->tuple;
#endif
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

	if (!data->sent_begin)
	{
		format_txn_tail(data, txn);
		if (data->include_transaction)
			write_begin_record(ctx, data, txn);
		data->sent_begin = true;
	}

	OutputPluginPrepareWrite(ctx, true);
	if (data->format == FORMAT_CLOUDEVENTS)
		write_event_cloudevents(ctx->out, data);
	else
		write_event_json(ctx->out, data);
	OutputPluginWrite(ctx, true);
	data->txn_events++;

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}
