/*-------------------------------------------------------------------------
 *
 * append.c
 *	  evstore.append_event and evstore.append_events.
 *
 * An append:
 *	 1. validates its input (nothing is written for bad input);
 *	 2. takes the stream's lock (streams.c), so appends to one stream are
 *		serialized and appends to different streams never wait;
 *	 3. recognises a retry by the first event's id and returns the original
 *		result without writing (idempotent append);
 *	 4. checks the expected version against the latest committed version
 *		and raises ES001 on a mismatch, under every isolation level;
 *	 5. publishes its read_all fence, draws global positions and inserts the
 *		events and the stream's row through the table AM (write.c).
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "schema.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "commands/sequence.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

/* Called for every appended event, in order, inside the append. */
evstore_event_hook_type evstore_event_hook = NULL;
evstore_batch_end_hook_type evstore_batch_end_hook = NULL;
evstore_append_done_hook_type evstore_append_done_hook = NULL;

/* GUCs */
static int	max_batch_events = 5000;
static int	max_event_bytes = 1024 * 1024;

/* error context: which event of a batch is being looked at */
typedef struct BatchContext
{
	const char *stream_id;
	int			index;
} BatchContext;

void
evstore_append_init(void)
{
	DefineCustomIntVariable("evstore.max_batch_events",
							"Largest number of events one append may carry.",
							NULL,
							&max_batch_events,
							5000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("evstore.max_event_size",
							"Largest size of one event's data plus metadata.",
							NULL,
							&max_event_bytes,
							1024 * 1024, 1024, MaxAllocSize / 1024 * 1024,
							PGC_SUSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}

static void
batch_error_callback(void *arg)
{
	BatchContext *bc = (BatchContext *) arg;

	if (bc->index >= 0)
		errcontext("event %d of the batch for stream \"%s\"", bc->index, bc->stream_id);
}

static char *
uuid_str(const pg_uuid_t *u)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(u)));
}

/* Refuse expected_version values that mean nothing (22023). */
void
evstore_check_expected_version(bool has_expected, int64 expected)
{
	if (!has_expected)
		return;
	if (expected >= 0 || expected == EVSTORE_EXPECT_ANY ||
		expected == EVSTORE_EXPECT_NO_STREAM || expected == EVSTORE_EXPECT_EXISTS)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid expected_version %lld", (long long) expected),
			 errdetail("Use NULL or -2 (any), -1 (no stream), -4 (stream exists) or a version >= 0.")));
}

static const char *
expected_name(int64 expected, char *buf)
{
	switch (expected)
	{
		case EVSTORE_EXPECT_ANY:
			return "any";
		case EVSTORE_EXPECT_NO_STREAM:
			return "-1 (no stream)";
		case EVSTORE_EXPECT_EXISTS:
			return "-4 (stream exists)";
		default:
			snprintf(buf, 32, "%lld", (long long) expected);
			return buf;
	}
}

static void
check_event_size(const EvstoreNewEvent *ev)
{
	Size		sz = VARSIZE(ev->data) + (ev->metadata ? VARSIZE(ev->metadata) : 0);

	if (sz > (Size) max_event_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event is too large"),
				 errdetail("Its data and metadata take %zu bytes; evstore.max_event_size is %d bytes.",
						   sz, max_event_bytes),
				 errhint("Store large payloads elsewhere and reference them from the event, or raise evstore.max_event_size.")));
}

static void
check_metadata(Jsonb *metadata)
{
	if (metadata && !(JB_ROOT_IS_OBJECT(metadata)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata must be a JSON object or null")));
}

/*
 * The metadata keys evstore indexes (correlation_id, causation_id: the
 * expression indexes of src/evstore.sql on metadata ->> key) hold
 * identifiers: like stream ids and event types, their text may take at most
 * EVSTORE_MAX_ID_BYTES, so that an index entry always fits a btree page
 * (whose limit, about 2700 bytes, would otherwise fail the append with a
 * raw "index row size exceeds maximum" error).
 */
static void
check_indexed_metadata(Jsonb *metadata)
{
	static const char *const keys[] = {"correlation_id", "causation_id"};

	if (metadata == NULL)
		return;
	for (int k = 0; k < (int) lengthof(keys); k++)
	{
		JsonbValue	kv;
		JsonbValue *v;
		Size		len;

		kv.type = jbvString;
		kv.val.string.val = (char *) keys[k];
		kv.val.string.len = strlen(keys[k]);
		v = findJsonbValueFromContainer(&metadata->root, JB_FOBJECT, &kv);
		if (v == NULL || v->type == jbvNull || v->type == jbvBool)
			continue;
		if (v->type == jbvString)
			len = v->val.string.len;
		else
		{
			/* what metadata ->> key yields for a number, array or object */
			text	   *t = DatumGetTextPP(DirectFunctionCall2(jsonb_object_field_text,
															   JsonbPGetDatum(metadata),
															   CStringGetTextDatum(keys[k])));

			len = VARSIZE_ANY_EXHDR(t);
		}
		if (len > EVSTORE_MAX_ID_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("metadata %s is too long", keys[k]),
					 errdetail("It is %zu bytes long; the limit is %d bytes.",
							   len, EVSTORE_MAX_ID_BYTES),
					 errhint("evstore indexes metadata %s; use a short identifier, and put longer values under another key.",
							 keys[k])));
	}
}

static void
check_type_text(text *type)
{
	int			len = VARSIZE_ANY_EXHDR(type);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type must not be empty")));
	if (len > EVSTORE_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event type is too long"),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   len, EVSTORE_MAX_ID_BYTES)));
}

static int
uuid_cmp_qsort(const void *a, const void *b)
{
	return memcmp(((const pg_uuid_t *) a)->data, ((const pg_uuid_t *) b)->data,
				  UUID_LEN);
}

/* Two events of one batch must not carry the same id. */
static void
check_batch_ids(const EvstoreNewEvent *events, int n)
{
	pg_uuid_t  *ids;
	int			nids = 0;

	if (n < 2)
		return;
	ids = palloc(n * sizeof(pg_uuid_t));
	for (int i = 0; i < n; i++)
		if (events[i].has_id)
			ids[nids++] = events[i].id;
	qsort(ids, nids, sizeof(pg_uuid_t), uuid_cmp_qsort);
	for (int i = 1; i < nids; i++)
		if (memcmp(ids[i - 1].data, ids[i].data, UUID_LEN) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
					 errmsg("event id %s appears more than once in the batch",
							uuid_str(&ids[i]))));
	pfree(ids);
}

/* check_indexed_metadata() for every event of a batch, before any lock */
static void
check_batch_metadata(const char *stream_id, const EvstoreNewEvent *evs, int n)
{
	BatchContext bc;
	ErrorContextCallback errcb;

	bc.stream_id = stream_id;
	bc.index = -1;
	errcb.callback = batch_error_callback;
	errcb.arg = &bc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (int i = 0; i < n; i++)
	{
		if (n > 1)
			bc.index = i;
		check_indexed_metadata(evs[i].metadata);
	}
	error_context_stack = errcb.previous;
}

/*
 * Where an event id is stored, seen through the given snapshot.  In
 * distributed mode ids are unique per stream: *stream_id holds the stream
 * to look in on entry.
 */
static bool
find_event_by_id(Relation events, const pg_uuid_t *id, Snapshot snapshot,
				 char **stream_id, int64 *version, int64 *position)
{
	const EvstoreCatalog *cat = evstore_catalog_for_rel(RelationGetRelid(events));
	ScanKeyData keys[2];
	TupleTableSlot *slot = table_slot_create(events, NULL);
	bool		found;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(id));
	/* distributed: ids are unique per stream, index (event_id, stream_id) */
	if (cat->distributed)
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(*stream_id));
	found = evstore_index_lookup(events, cat->events_id_idx, keys,
								 cat->distributed ? 2 : 1, snapshot, slot);
	if (found)
	{
		bool		isnull;

		*stream_id = TextDatumGetCString(slot_getattr(slot, Anum_events_stream_id, &isnull));
		*version = DatumGetInt64(slot_getattr(slot, Anum_events_stream_version, &isnull));
		*position = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));
	}
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * The batch's first event id is already stored.  If the whole batch was
 * appended before, to this stream, at consecutive versions and in this
 * order, the append is a retry: return the original result.  Otherwise the
 * ids clash (ES003).
 */
static void
check_retry(Relation events, const char *stream_id, const EvstoreNewEvent *evs, int n,
			const char *first_stream, int64 first_version, int64 first_position,
			EvstoreAppendResult *result)
{
	int64		last_version = first_version;
	int64		last_position = first_position;

	if (strcmp(first_stream, stream_id) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
				 errmsg("event id %s already exists in stream \"%s\"",
						uuid_str(&evs[0].id), first_stream),
				 errdetail("Event ids are unique across the store; this append targets stream \"%s\".",
						   stream_id)));

	for (int i = 1; i < n; i++)
	{
		char	   *s = (char *) stream_id;
		int64		v,
					p;

		if (!evs[i].has_id ||
			!find_event_by_id(events, &evs[i].id, SnapshotSelf, &s, &v, &p) ||
			strcmp(s, stream_id) != 0 || v != first_version + i)
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
					 errmsg("event id %s was already appended to stream \"%s\" in a different batch",
							uuid_str(&evs[0].id), stream_id),
					 errdetail("Event %d of this batch does not match what was stored after it, so this is not a retry of the same append.",
							   i)));
		last_version = v;
		last_position = p;
	}
	result->stream_version = last_version;
	result->global_position = last_position;
}

/* global_position of the stream's event at version (under the stream lock) */
static int64
last_position(Relation events, const EvstoreCatalog *cat, text *stream, int64 version)
{
	ScanKeyData keys[2];
	TupleTableSlot *slot = table_slot_create(events, NULL);
	int64		result = 0;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(stream));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(version));
	if (evstore_index_lookup(events, cat->events_stream_idx, keys, 2, SnapshotSelf, slot))
	{
		bool		isnull;

		result = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));
	}
	ExecDropSingleTupleTableSlot(slot);
	return result;
}

static void
raise_id_conflict(Relation events, const char *stream_id, const pg_uuid_t *id)
{
	char	   *s = (char *) stream_id;
	int64		v,
				p;
	SnapshotData dirty;

	InitDirtySnapshot(dirty);
	if (find_event_by_id(events, id, &dirty, &s, &v, &p) &&
		TransactionIdIsValid(dirty.xmin))
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
				 errmsg("event id %s is being appended to stream \"%s\" by another transaction",
						uuid_str(id), s),
				 errdetail("Event ids are unique across the store.")));
	s = (char *) stream_id;
	if (find_event_by_id(events, id, SnapshotSelf, &s, &v, &p))
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
				 errmsg("event id %s already exists in stream \"%s\"", uuid_str(id), s),
				 errdetail("Event ids are unique across the store.")));
	ereport(ERROR,
			(errcode(ERRCODE_EVSTORE_DUPLICATE_EVENT_ID),
			 errmsg("event id %s is being appended by another transaction", uuid_str(id)),
			 errdetail("Event ids are unique across the store.")));
}

/*
 * The append itself, for C callers too.  stream_id has been validated
 * (non-empty, at most EVSTORE_MAX_ID_BYTES); events have been validated
 * (type non-empty, metadata an object or NULL, size within limits).  The
 * lengths of the indexed metadata keys are checked here, for every caller.
 */
void
evstore_append_batch(const char *stream_id, int sidlen, EvstoreNewEvent *evs, int n,
		  bool has_expected, int64 expected, EvstoreAppendResult *result)
{
	const EvstoreCatalog *cat;
	Relation	events_rel;
	Relation	streams_rel;
	EvstoreStreamState st;
	int64		current;
	int64		version;
	TimestampTz now;
	text	   *stream_text;
	text	   *category_text;
	int16		bucket;
	EvstoreWriter w;
	BatchContext bc;
	ErrorContextCallback errcb;
	char		buf[32];
	MemoryContext event_cxt;
	MemoryContext outer_cxt;
	int64		stream_last_position = 0;

	if (!has_expected)
		expected = EVSTORE_EXPECT_ANY;
	evstore_require_preload();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot append events during recovery")));
	PreventCommandIfReadOnly("evstore.append_event()");

	check_batch_ids(evs, n);
	evstore_schema_prepare_batch(evs, n);	/* schema versions, validation */
	check_batch_metadata(stream_id, evs, n);

	cat = evstore_catalog_for_append(stream_id, sidlen);	/* ES020 before any lock */
	evstore_lock_stream(stream_id, sidlen);
	streams_rel = table_open(cat->streams_rel, RowExclusiveLock);
	events_rel = table_open(cat->events_rel, RowExclusiveLock);

	evstore_stream_state(streams_rel, stream_id, &st);

	/* a retry of an append that already happened? */
	if (evs[0].has_id)
	{
		char	   *s = (char *) stream_id;
		int64		v,
					p;

		if (find_event_by_id(events_rel, &evs[0].id, SnapshotSelf, &s, &v, &p))
		{
			check_retry(events_rel, stream_id, evs, n, s, v, p, result);
			evstore_stats_count(EVSTORE_STAT_RETRIES, 1);
			table_close(events_rel, NoLock);
			table_close(streams_rel, NoLock);
			return;
		}
	}

	if (st.tombstoned)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_STREAM_DELETED),
				 errmsg("stream \"%s\" is tombstoned", stream_id),
				 errdetail("A tombstoned stream is closed for good; nothing can be appended to it.")));

	current = evstore_stream_current_version(&st);
	if ((expected == EVSTORE_EXPECT_NO_STREAM && current != -1) ||
		(expected == EVSTORE_EXPECT_EXISTS && current == -1) ||
		(expected >= 0 && expected != current))
	{
		evstore_stats_count(EVSTORE_STAT_CONFLICTS, 1);
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\": expected %s, actual %lld",
						stream_id, expected_name(expected, buf), (long long) current),
				 errdetail("Another append changed the stream, or the stream is not in the state the caller assumed."),
				 errhint("Reload the stream and retry the command.")));
	}

	/* from here on we write */
	evstore_fence_publish();

	now = GetCurrentTimestamp();
	stream_text = cstring_to_text_with_len(stream_id, sidlen);
	category_text = cstring_to_text_with_len(stream_id,
											 evstore_category_len(stream_id, sidlen));
	bucket = (int16) (evstore_stream_hash(stream_id, sidlen) % EVSTORE_BUCKETS);
	version = st.exists ? st.version : -1;
	/* distributed: positions must keep increasing in the stream (fence.c) */
	if (cat->distributed && st.exists && st.version >= 0)
		stream_last_position = last_position(events_rel, cat, stream_text, st.version);
	/* ... and above what a shard moved or split here holds (shard_feed.c) */
	if (cat->distributed)
		stream_last_position = Max(stream_last_position,
								   evstore_shard_position_floor(events_rel));

	bc.stream_id = stream_id;
	bc.index = -1;
	errcb.callback = batch_error_callback;
	errcb.arg = &bc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	evstore_writer_open(&w, events_rel);

	/*
	 * Events go at the end of the heap, never into free space the FSM knows
	 * of.  Once VACUUM has recorded the few bytes left over on every full
	 * page of a large store, small events would otherwise land one per old
	 * page all over the table: random reads and dirty-page writes for every
	 * append, and a heap no longer in position order (bench/growth.sh: 8
	 * clients at 10M events ran at half the speed of 100k before this).
	 */
	w.insert_options = TABLE_INSERT_SKIP_FSM;

	/*
	 * What one event allocates (its id, index look-ups, projections) is
	 * freed before the next, so memory stays bounded in any batch size.
	 */
	event_cxt = AllocSetContextCreate(CurrentMemoryContext, "evstore append event",
									  ALLOCSET_DEFAULT_SIZES);
	outer_cxt = MemoryContextSwitchTo(event_cxt);
	for (int i = 0; i < n; i++)
	{
		Datum		values[Natts_events];
		bool		nulls[Natts_events];
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));
		List	   *conflicts;

		if (n > 1)
			bc.index = i;
		CHECK_FOR_INTERRUPTS();
		if (evs[i].has_id)
			*id = evs[i].id;
		else
			evstore_uuid_v7(id->data);

		memset(nulls, 0, sizeof(nulls));
		values[Anum_events_global_position - 1] =
			Int64GetDatum(i == 0 && stream_last_position > 0 ?
						  evstore_fence_next_position_after(stream_last_position) :
						  evstore_fence_next_position());
		values[Anum_events_stream_id - 1] = PointerGetDatum(stream_text);
		values[Anum_events_stream_version - 1] = Int64GetDatum(++version);
		values[Anum_events_event_id - 1] = UUIDPGetDatum(id);
		values[Anum_events_event_type - 1] = PointerGetDatum(evs[i].type);
		values[Anum_events_data - 1] = JsonbPGetDatum(evs[i].data);
		values[Anum_events_metadata - 1] = JsonbPGetDatum(evs[i].metadata);
		nulls[Anum_events_metadata - 1] = (evs[i].metadata == NULL);
		values[Anum_events_recorded_at - 1] = TimestampTzGetDatum(now);
		values[Anum_events_category - 1] = PointerGetDatum(category_text);
		values[Anum_events_stream_bucket - 1] = Int16GetDatum(bucket);

		conflicts = evstore_writer_insert(&w, values, nulls, cat->events_id_idx);
		if (conflicts != NIL)
			raise_id_conflict(events_rel, stream_id, id);
		if (evstore_event_hook)
			evstore_event_hook(events_rel, w.slot);

		result->stream_version = version;
		result->global_position = DatumGetInt64(values[Anum_events_global_position - 1]);
		MemoryContextReset(event_cxt);
	}
	MemoryContextSwitchTo(outer_cxt);
	MemoryContextDelete(event_cxt);
	if (evstore_batch_end_hook)
		evstore_batch_end_hook();
	evstore_writer_close(&w);
	bc.index = -1;

	/* the stream's row */
	{
		Datum		values[Natts_streams];
		bool		nulls[Natts_streams];

		memset(nulls, 0, sizeof(nulls));
		values[Anum_streams_stream_id - 1] = PointerGetDatum(stream_text);
		values[Anum_streams_category - 1] = PointerGetDatum(category_text);
		values[Anum_streams_version - 1] = Int64GetDatum(version);
		values[Anum_streams_first_version - 1] = Int64GetDatum(st.exists && st.deleted ?
															  st.version + 1 : st.first_version);
		values[Anum_streams_created_at - 1] = TimestampTzGetDatum(now);
		values[Anum_streams_updated_at - 1] = TimestampTzGetDatum(now);
		nulls[Anum_streams_deleted_at - 1] = true;
		values[Anum_streams_tombstoned - 1] = BoolGetDatum(false);

		evstore_writer_open(&w, streams_rel);
		if (st.exists)
		{
			values[Anum_streams_created_at - 1] = TimestampTzGetDatum(st.created_at);
			evstore_writer_update(&w, &st.tid, values, nulls);
		}
		else
			(void) evstore_writer_insert(&w, values, nulls, InvalidOid);
		evstore_writer_close(&w);
	}

	error_context_stack = errcb.previous;
	/* like any DML, keep the table locks until the transaction ends */
	table_close(events_rel, NoLock);
	table_close(streams_rel, NoLock);

	/* make the new rows visible to the rest of this transaction */
	CommandCounterIncrement();

	evstore_stats_count(EVSTORE_STAT_APPENDS, 1);
	evstore_stats_count(EVSTORE_STAT_EVENTS, n);

	/* consumers' wake-up (wakeup.c) */
	if (evstore_append_done_hook)
		evstore_append_done_hook(stream_id, sidlen);
}

/* An evstore.append_result datum for a function returning that type. */
Datum
evstore_append_result_datum(FunctionCallInfo fcinfo, const EvstoreAppendResult *r)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "evstore: return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int64GetDatum(r->stream_version);
	values[1] = Int64GetDatum(r->global_position);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

PG_FUNCTION_INFO_V1(evstore_append_event);

/* evstore.append_event(stream_id text, event_type text, data jsonb, metadata jsonb, expected_version bigint, event_id uuid) -> evstore.append_result */
Datum
evstore_append_event(PG_FUNCTION_ARGS)
{
	int			sidlen;
	char	   *stream_id = evstore_text_arg(fcinfo, 0, "stream_id", &sidlen);
	EvstoreNewEvent	ev;
	EvstoreAppendResult result;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type must not be null")));
	ev.type = PG_GETARG_TEXT_P(1);
	check_type_text(ev.type);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data must not be null"),
				 errhint("Use '{}'::jsonb for an event without a payload.")));
	ev.data = PG_GETARG_JSONB_P(2);
	ev.metadata = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	check_metadata(ev.metadata);
	evstore_check_expected_version(!PG_ARGISNULL(4), PG_ARGISNULL(4) ? 0 : PG_GETARG_INT64(4));
	ev.has_id = !PG_ARGISNULL(5);
	if (ev.has_id)
		ev.id = *PG_GETARG_UUID_P(5);
	check_event_size(&ev);

	evstore_append_batch(stream_id, sidlen, &ev, 1,
			  !PG_ARGISNULL(4), PG_ARGISNULL(4) ? 0 : PG_GETARG_INT64(4), &result);
	PG_RETURN_DATUM(evstore_append_result_datum(fcinfo, &result));
}

/* Name the first key of an event object that we do not know. */
static void
reject_unknown_keys(JsonbContainer *obj)
{
	static const char *const keys[] = {"type", "data", "metadata", "id", NULL};

	evstore_jsonb_reject_unknown_keys(obj, keys, "event object",
									  "An event object has the keys \"type\", \"data\", \"metadata\" and \"id\".");
}

static void
parse_event(JsonbValue *elem, EvstoreNewEvent *ev)
{
	JsonbContainer *obj;
	JsonbValue *v;
	int			known = 0;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event must be a JSON object, not %s", evstore_jsonb_type_name(elem))));
	obj = elem->val.binary.data;

	v = evstore_jsonb_key(obj, "type");
	if (v == NULL || v->type == jbvNull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event has no \"type\"")));
	known++;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event \"type\" must be a string, not %s", evstore_jsonb_type_name(v))));
	ev->type = cstring_to_text_with_len(v->val.string.val, v->val.string.len);
	check_type_text(ev->type);

	v = evstore_jsonb_key(obj, "data");
	if (v == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event has no \"data\""),
				 errhint("Use \"data\": {} for an event without a payload.")));
	known++;
	ev->data = JsonbValueToJsonb(v);

	ev->metadata = NULL;
	v = evstore_jsonb_key(obj, "metadata");
	if (v != NULL)
	{
		known++;
		if (v->type != jbvNull)
		{
			if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event \"metadata\" must be a JSON object or null, not %s",
								evstore_jsonb_type_name(v))));
			ev->metadata = JsonbValueToJsonb(v);
		}
	}

	ev->has_id = false;
	v = evstore_jsonb_key(obj, "id");
	if (v != NULL)
	{
		known++;
		if (v->type != jbvNull)
		{
			char	   *s;

			if (v->type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event \"id\" must be a UUID string, not %s", evstore_jsonb_type_name(v))));
			s = pnstrdup(v->val.string.val, v->val.string.len);
			ev->id = *DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(s)));
			ev->has_id = true;
		}
	}

	if ((int) JsonContainerSize(obj) > known)
		reject_unknown_keys(obj);
	check_event_size(ev);
}

PG_FUNCTION_INFO_V1(evstore_append_events);

/* evstore.append_events(stream_id text, events jsonb, expected_version bigint) -> evstore.append_result */
Datum
evstore_append_events(PG_FUNCTION_ARGS)
{
	int			sidlen;
	char	   *stream_id = evstore_text_arg(fcinfo, 0, "stream_id", &sidlen);
	Jsonb	   *batch;
	int			n;
	EvstoreNewEvent   *evs;
	EvstoreAppendResult result;
	BatchContext bc;
	ErrorContextCallback errcb;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("events must not be null")));
	batch = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(batch) || JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array of event objects"),
				 errhint("Pass e.g. '[{\"type\": \"OrderPlaced\", \"data\": {}}]'.")));
	evstore_check_expected_version(!PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2));

	n = JB_ROOT_COUNT(batch);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array")));
	if (n > max_batch_events)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events in one append: %d", n),
				 errdetail("evstore.max_batch_events is %d.", max_batch_events),
				 errhint("Split the batch, or raise evstore.max_batch_events.")));

	bc.stream_id = stream_id;
	errcb.callback = batch_error_callback;
	errcb.arg = &bc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	evs = palloc(n * sizeof(EvstoreNewEvent));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&batch->root, i);

		bc.index = i;
		parse_event(elem, &evs[i]);
	}
	error_context_stack = errcb.previous;

	evstore_append_batch(stream_id, sidlen, evs, n,
			  !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2), &result);
	PG_RETURN_DATUM(evstore_append_result_datum(fcinfo, &result));
}

/*
 * For other appenders (append_multi.c): parse one event object of the
 * append_events input format, with the same checks and errors.
 */
void
evstore_parse_event_object(JsonbValue *elem, EvstoreNewEvent *ev)
{
	parse_event(elem, ev);
}

/* The evstore.max_batch_events setting. */
int
evstore_max_batch_events(void)
{
	return max_batch_events;
}
