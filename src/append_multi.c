/*-------------------------------------------------------------------------
 *
 * append_multi.c
 *	  evstore.append_multi (several streams, all or nothing) and
 *	  evstore.lock_streams.
 *
 * A transaction that appends to several streams holds each stream's lock
 * (streams.c) until it ends.  Two such transactions that take the locks in
 * opposite orders deadlock.  append_multi therefore validates its whole
 * input first, then takes every stream's lock in one canonical order (the
 * stream ids' bytes, as ORDER BY stream_id COLLATE "C" sorts them), and
 * only then appends, stream by stream in input order, through
 * evstore_append_batch, which checks each stream's expected version under
 * its lock.  Any error (ES001 names the stream) aborts the statement, so
 * nothing of the call is kept.  lock_streams takes the same locks in the
 * same order for applications that call append_events several times in one
 * transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/tuplestore.h"

/* one element of the appends array */
typedef struct MultiItem
{
	int			index;			/* in the input array */
	char	   *stream_id;
	int			sidlen;
	bool		has_expected;
	int64		expected;
	EvstoreNewEvent *evs;
	int			n;
} MultiItem;

/* error context: which element (and event) of the input is being parsed */
typedef struct MultiContext
{
	int			index;
	const char *stream_id;
	int			event;
} MultiContext;

static void
multi_error_callback(void *arg)
{
	MultiContext *mc = (MultiContext *) arg;

	if (mc->index < 0)
		return;
	if (mc->event >= 0)
		errcontext("event %d of element %d of appends (stream \"%s\")",
				   mc->event, mc->index, mc->stream_id ? mc->stream_id : "?");
	else if (mc->stream_id)
		errcontext("element %d of appends (stream \"%s\")", mc->index, mc->stream_id);
	else
		errcontext("element %d of appends", mc->index);
}

/* Name the first key of an element that is not one of ours. */
static void
reject_unknown_element_keys(JsonbContainer *obj)
{
	static const char *const keys[] = {"stream_id", "expected_version", "events", NULL};

	evstore_jsonb_reject_unknown_keys(obj, keys, "appends element",
									  "An element of appends has the keys \"stream_id\", \"expected_version\" and \"events\".");
}

static int64
parse_expected_version(JsonbValue *v)
{
	Datum		num;
	int64		expected;

	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"expected_version\" must be an integer or null, not %s",
						evstore_jsonb_type_name(v))));
	num = NumericGetDatum(v->val.numeric);
	expected = DatumGetInt64(DirectFunctionCall1(numeric_int8, num));
	if (!DatumGetBool(DirectFunctionCall2(numeric_eq, num,
										  DirectFunctionCall1(int8_numeric,
															  Int64GetDatum(expected)))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"expected_version\" must be an integer or null")));
	evstore_check_expected_version(true, expected);
	return expected;
}

static void
parse_item(JsonbValue *elem, MultiItem *item, MultiContext *mc)
{
	JsonbContainer *obj;
	JsonbValue *v;
	JsonbContainer *events;
	int			known = 0;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("appends element must be a JSON object, not %s", evstore_jsonb_type_name(elem)),
				 errhint("Pass e.g. '[{\"stream_id\": \"order-1\", \"expected_version\": 0, \"events\": [...]}, ...]'.")));
	obj = elem->val.binary.data;

	v = evstore_jsonb_key(obj, "stream_id");
	if (v == NULL || v->type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("appends element has no \"stream_id\"")));
	known++;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"stream_id\" must be a string, not %s", evstore_jsonb_type_name(v))));
	if (v->val.string.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	if (v->val.string.len > EVSTORE_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stream_id is too long"),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   v->val.string.len, EVSTORE_MAX_ID_BYTES)));
	item->stream_id = pnstrdup(v->val.string.val, v->val.string.len);
	item->sidlen = v->val.string.len;
	mc->stream_id = item->stream_id;

	item->has_expected = false;
	item->expected = 0;
	v = evstore_jsonb_key(obj, "expected_version");
	if (v != NULL)
	{
		known++;
		if (v->type != jbvNull)
		{
			item->expected = parse_expected_version(v);
			item->has_expected = true;
		}
	}

	v = evstore_jsonb_key(obj, "events");
	if (v == NULL || v->type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("appends element has no \"events\"")));
	known++;
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"events\" must be a JSON array of event objects, not %s",
						evstore_jsonb_type_name(v))));
	events = v->val.binary.data;
	item->n = JsonContainerSize(events);
	if (item->n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"events\" must not be an empty array")));

	if ((int) JsonContainerSize(obj) > known)
		reject_unknown_element_keys(obj);

	item->evs = palloc(item->n * sizeof(EvstoreNewEvent));
	for (int i = 0; i < item->n; i++)
	{
		JsonbValue *ev = getIthJsonbValueFromContainer(events, i);

		mc->event = i;
		evstore_parse_event_object(ev, &item->evs[i]);
	}
	mc->event = -1;
}

/* canonical lock order: the stream ids' bytes (COLLATE "C") */
static int
stream_id_cmp(const char *a, int la, const char *b, int lb)
{
	int			c = memcmp(a, b, Min(la, lb));

	return c != 0 ? c : (la > lb) - (la < lb);
}

static int
item_ptr_cmp(const void *a, const void *b)
{
	const MultiItem *x = *(MultiItem *const *) a;
	const MultiItem *y = *(MultiItem *const *) b;

	return stream_id_cmp(x->stream_id, x->sidlen, y->stream_id, y->sidlen);
}

static int
uuid_qsort_cmp(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

static void
check_appendable(const char *what)
{
	evstore_require_preload();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot append events during recovery")));
	PreventCommandIfReadOnly(what);
}

PG_FUNCTION_INFO_V1(evstore_append_multi);

/* evstore.append_multi(appends jsonb) -> TABLE (stream_id text, stream_version bigint, global_position bigint) */
Datum
evstore_append_multi(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *input;
	int			nitems;
	int			total = 0;
	int			nids = 0;
	MultiItem  *items;
	MultiItem **order;
	pg_uuid_t  *ids;
	MultiContext mc;
	ErrorContextCallback errcb;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("appends must not be null")));
	input = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_ARRAY(input) || JB_ROOT_IS_SCALAR(input))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("appends must be a JSON array of objects"),
				 errhint("Pass e.g. '[{\"stream_id\": \"order-1\", \"expected_version\": 0, \"events\": [{\"type\": \"OrderPlaced\", \"data\": {}}]}]'.")));
	nitems = JB_ROOT_COUNT(input);
	if (nitems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("appends must not be an empty array")));

	/* 1. parse and validate everything: nothing is locked or written yet */
	mc.index = -1;
	mc.stream_id = NULL;
	mc.event = -1;
	errcb.callback = multi_error_callback;
	errcb.arg = &mc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	items = palloc(nitems * sizeof(MultiItem));
	for (int i = 0; i < nitems; i++)
	{
		mc.index = i;
		mc.stream_id = NULL;
		items[i].index = i;
		parse_item(getIthJsonbValueFromContainer(&input->root, i), &items[i], &mc);
		total += items[i].n;
		if (total > evstore_max_batch_events())
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many events in one append_multi: more than %d",
							evstore_max_batch_events()),
					 errdetail("evstore.max_batch_events limits the events of all streams of one call together."),
					 errhint("Split the call, or raise evstore.max_batch_events.")));
	}
	error_context_stack = errcb.previous;

	/* each stream once; the canonical order */
	order = palloc(nitems * sizeof(MultiItem *));
	for (int i = 0; i < nitems; i++)
		order[i] = &items[i];
	qsort(order, nitems, sizeof(MultiItem *), item_ptr_cmp);
	for (int i = 1; i < nitems; i++)
		if (item_ptr_cmp(&order[i - 1], &order[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream \"%s\" appears more than once in appends",
							order[i]->stream_id),
					 errhint("Put all events of a stream in one element.")));

	/* an event id twice in the call would fail half-way: refuse it now */
	ids = palloc(total * sizeof(pg_uuid_t));
	for (int i = 0; i < nitems; i++)
		for (int j = 0; j < items[i].n; j++)
			if (items[i].evs[j].has_id)
				ids[nids++] = items[i].evs[j].id;
	qsort(ids, nids, sizeof(pg_uuid_t), uuid_qsort_cmp);
	for (int i = 1; i < nids; i++)
		if (memcmp(ids[i - 1].data, ids[i].data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
					 errmsg("event id %s appears more than once in appends",
							DatumGetCString(DirectFunctionCall1(uuid_out,
																UUIDPGetDatum(&ids[i]))))));
	pfree(ids);

	/* 2. every stream's lock, in the canonical order, before any append */
	check_appendable("evstore.append_multi()");
	for (int i = 0; i < nitems; i++)
		evstore_lock_stream(order[i]->stream_id, order[i]->sidlen);

	/* 3. the appends, in input order (global positions follow it) */
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nitems; i++)
	{
		MultiItem  *it = &items[i];
		EvstoreAppendResult r;
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		evstore_append_batch(it->stream_id, it->sidlen, it->evs, it->n,
							 it->has_expected, it->expected, &r);
		values[0] = PointerGetDatum(cstring_to_text_with_len(it->stream_id, it->sidlen));
		values[1] = Int64GetDatum(r.stream_version);
		values[2] = Int64GetDatum(r.global_position);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

typedef struct LockId
{
	char	   *id;
	int			len;
} LockId;

static int
lock_id_cmp(const void *a, const void *b)
{
	const LockId *x = (const LockId *) a;
	const LockId *y = (const LockId *) b;

	return stream_id_cmp(x->id, x->len, y->id, y->len);
}

PG_FUNCTION_INFO_V1(evstore_lock_streams);

/* evstore.lock_streams(stream_ids text[]) -> void */
Datum
evstore_lock_streams(PG_FUNCTION_ARGS)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	LockId	   *ids;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream_ids must not be null")));
	arr = PG_GETARG_ARRAYTYPE_P(0);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("stream_ids must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	ids = palloc(Max(n, 1) * sizeof(LockId));
	for (int i = 0; i < n; i++)
	{
		text	   *t;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("stream_ids must not contain nulls")));
		t = DatumGetTextPP(elems[i]);
		ids[i].len = VARSIZE_ANY_EXHDR(t);
		if (ids[i].len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream_id must not be empty")));
		if (ids[i].len > EVSTORE_MAX_ID_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("stream_id is too long"),
					 errdetail("It is %d bytes long; the limit is %d bytes.",
							   ids[i].len, EVSTORE_MAX_ID_BYTES)));
		ids[i].id = text_to_cstring(t);
	}
	check_appendable("evstore.lock_streams()");
	qsort(ids, n, sizeof(LockId), lock_id_cmp);
	for (int i = 0; i < n; i++)
		if (i == 0 || lock_id_cmp(&ids[i - 1], &ids[i]) != 0)
			evstore_lock_stream(ids[i].id, ids[i].len);
	PG_RETURN_VOID();
}
