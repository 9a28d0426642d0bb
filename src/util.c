/*-------------------------------------------------------------------------
 *
 * util.c
 *	  Small helpers: categories, stream hashing, UUIDv7, argument checks.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include <sys/time.h>
#include <uuid/uuid.h>

#include "access/tableam.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

/*
 * Length in bytes of the category of a stream id: everything before the
 * first '-', or the whole id when it has none.
 */
int
evstore_category_len(const char *stream_id, int len)
{
	const char *dash = memchr(stream_id, '-', len);

	return dash ? (int) (dash - stream_id) : len;
}

/*
 * 32-bit FNV-1a over the stream id's bytes, masked to 31 bits so it is a
 * non-negative SQL integer.  Fixed forever: consumer groups depend on it.
 */
uint32
evstore_stream_hash(const char *str, int len)
{
	uint32		h = 2166136261u;

	for (int i = 0; i < len; i++)
	{
		h ^= (unsigned char) str[i];
		h *= 16777619u;
	}
	return h & 0x7fffffff;
}

/*
 * A version 7 UUID: 48 bits of Unix milliseconds, then 12 bits that count
 * up within one millisecond in this backend (so ids from one backend are
 * strictly increasing), then random bits from libuuid.
 */
void
evstore_uuid_v7(unsigned char *out)
{
	static uint64 last_ms = 0;
	static uint32 counter = 0;
	struct timeval tv;
	uint64		ms;

	uuid_generate_random(out);
	gettimeofday(&tv, NULL);
	ms = (uint64) tv.tv_sec * 1000 + tv.tv_usec / 1000;

	if (ms <= last_ms)
	{
		ms = last_ms;
		if (++counter > 0xfff)
		{
			ms++;
			counter = out[6] & 0x03;	/* restart low, leave headroom */
		}
	}
	else
		counter = ((out[6] << 8) | out[7]) & 0x3ff;	/* random start, headroom */
	last_ms = ms;

	out[0] = (ms >> 40) & 0xff;
	out[1] = (ms >> 32) & 0xff;
	out[2] = (ms >> 24) & 0xff;
	out[3] = (ms >> 16) & 0xff;
	out[4] = (ms >> 8) & 0xff;
	out[5] = ms & 0xff;
	out[6] = 0x70 | ((counter >> 8) & 0x0f);
	out[7] = counter & 0xff;
	out[8] = (out[8] & 0x3f) | 0x80;	/* RFC 9562 variant */
}

/*
 * Fetch a required, non-empty text argument as a C string.
 */
char *
evstore_text_arg(FunctionCallInfo fcinfo, int argno, const char *what, int *len)
{
	text	   *t;
	int			l;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	t = PG_GETARG_TEXT_PP(argno);
	l = VARSIZE_ANY_EXHDR(t);
	if (l == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (l > EVSTORE_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long", what),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   l, EVSTORE_MAX_ID_BYTES)));
	*len = l;
	return text_to_cstring(t);
}

PG_FUNCTION_INFO_V1(evstore_category);

/* evstore.category(stream_id text) -> text */
Datum
evstore_category(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(s,
											  evstore_category_len(s, VARSIZE_ANY_EXHDR(t))));
}

PG_FUNCTION_INFO_V1(evstore_stream_hash_sql);

/* evstore.stream_hash(stream_id text) -> integer */
Datum
evstore_stream_hash_sql(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT32((int32) evstore_stream_hash(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

PG_FUNCTION_INFO_V1(evstore_uuid_generate_v7);

/* evstore.uuid_generate_v7() -> uuid */
Datum
evstore_uuid_generate_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

	evstore_uuid_v7(u->data);
	PG_RETURN_UUID_P(u);
}

/* The JSON type of a value, for error messages. */
const char *
evstore_jsonb_type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "array" : "object";
		case jbvArray:
			return "array";
		case jbvObject:
			return "object";
		default:
			return "value";
	}
}

/* The value of key in a JSON object, or NULL. */
JsonbValue *
evstore_jsonb_key(JsonbContainer *obj, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(obj, JB_FOBJECT, &k);
}

/*
 * Refuse a JSON object with a key that is not in keys (NULL-terminated):
 * what names the object in the message, hint lists the keys it may have.
 */
void
evstore_jsonb_reject_unknown_keys(JsonbContainer *obj, const char *const *keys,
								  const char *what, const char *hint)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;

		if (tok != WJB_KEY)
			continue;
		for (int i = 0; keys[i] != NULL && !known; i++)
			known = (v.val.string.len == (int) strlen(keys[i]) &&
					 strncmp(v.val.string.val, keys[i], v.val.string.len) == 0);
		if (known)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown key \"%.*s\" in %s",
						v.val.string.len, v.val.string.val, what),
				 errhint("%s", hint)));
	}
}

/* Whether the table holds a row visible to a fresh snapshot. */
bool
evstore_relation_has_rows(Relation rel)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, GetLatestSnapshot(), 0, NULL);
	bool		found = table_scan_getnextslot(scan, ForwardScanDirection, slot);

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}
