/*-------------------------------------------------------------------------
 *
 * decoder_format.c
 *	  The output plugin's writers: one decoded event as evstore's JSON
 *	  object or as a CloudEvents 1.0 JSON event, and the JSON forms of the
 *	  values they print.  They append to the caller's buffer and allocate
 *	  only in the current (per-change) memory context.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "decoder.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

/* The columns of evstore.events the plugin prints, in output order. */
const DecoderColumnInfo decoder_columns[NUM_COLUMNS] =
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

void
decoder_append_lsn(StringInfo out, XLogRecPtr lsn)
{
	appendStringInfo(out, "\"%X/%X\"", LSN_FORMAT_ARGS(lsn));
}

/* timestamptz as an RFC 3339 JSON string, in UTC */
void
decoder_append_timestamptz(StringInfo out, TimestampTz ts)
{
	char		buf[MAXDATELEN + 1];
	int			utc = 0;

	JsonEncodeDateTime(buf, TimestampTzGetDatum(ts), TIMESTAMPTZOID, &utc);
	appendStringInfoChar(out, '"');
	appendStringInfoString(out, buf);
	appendStringInfoChar(out, '"');
}

/*
 * A varlena column value, detoasted.  The reorder buffer reassembles the
 * TOAST chunks of an inserted row; an on-disk pointer here would mean they
 * are missing (or, for updates, that the value was unchanged), and reading
 * through it is not possible: error out instead.
 */
struct varlena *
decoder_column_varlena(Datum d, DecoderColumn c)
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

/* a text value, JSON-escaped */
static void
append_text(StringInfo out, Datum d, DecoderColumn c)
{
	struct varlena *v = decoder_column_varlena(d, c);

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
	Jsonb	   *jb = (Jsonb *) pg_detoast_datum((struct varlena *) decoder_column_varlena(d, c));

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

void
decoder_write_json(StringInfo out, DecoderData *data)
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
		decoder_append_timestamptz(out, DatumGetTimestampTz(COLUMN_VALUE(COL_RECORDED_AT)));

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
void
decoder_write_cloudevents(StringInfo out, DecoderData *data)
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
		decoder_append_timestamptz(out, DatumGetTimestampTz(COLUMN_VALUE(COL_RECORDED_AT)));
	}
	appendStringInfoString(out, ",\"datacontenttype\":\"application/json\"");
	if (data->dataschema)
	{
		appendStringInfoString(out, ",\"dataschema\":");
		escape_json(out, data->dataschema);
	}
	appendStringInfoString(out, ",\"data\":");
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
		struct varlena *v = decoder_column_varlena(COLUMN_VALUE(COL_METADATA), COL_METADATA);
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
