/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  evstore.delete_stream, evstore.tombstone_stream and the optional
 *	  LISTEN/NOTIFY wake-up of appends (evstore.notify_channel).
 *
 * Deleting a stream writes an explicit marker event into the stream itself
 * ("$StreamDeleted" or "$StreamTombstoned", at the version after the last
 * one) through evstore_append_batch, then marks the stream's row deleted.
 * The marker is what read_all, projections and the output plugin see: it
 * has a global position like any event (read_all's never-skip rule holds,
 * since the marker is appended under the fence), it lands in the stream's
 * own consumer-group bucket and after the stream's last event, so a
 * consumer learns about the deletion in order.  read_stream and
 * stream_version hide the whole stream, marker included.  A later append to
 * a soft-deleted stream continues after the marker (append.c sets
 * first_version); a tombstoned stream refuses appends with ES002.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

static void
raise_stream_tombstoned(const char *stream_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_EVSTORE_STREAM_DELETED),
			 errmsg("stream \"%s\" is tombstoned", stream_id),
			 errdetail("A tombstoned stream is closed for good; it cannot be deleted again or appended to.")));
}

/* Mark the stream's row deleted (and tombstoned); the caller holds the lock. */
static void
mark_stream_deleted(Relation streams_rel, const char *stream_id, bool tombstone)
{
	EvstoreStreamState st;
	TupleTableSlot *old;
	Datum		values[Natts_streams];
	bool		nulls[Natts_streams];
	TimestampTz now = GetCurrentTimestamp();
	EvstoreWriter w;

	evstore_stream_state(streams_rel, stream_id, &st);
	if (!st.exists)
		elog(ERROR, "evstore: stream row of \"%s\" vanished", stream_id);

	old = table_slot_create(streams_rel, NULL);
	if (!table_tuple_fetch_row_version(streams_rel, &st.tid, SnapshotSelf, old))
		elog(ERROR, "evstore: stream row of \"%s\" vanished", stream_id);
	slot_getallattrs(old);
	memcpy(values, old->tts_values, sizeof(values));
	memcpy(nulls, old->tts_isnull, sizeof(nulls));

	values[Anum_streams_updated_at - 1] = TimestampTzGetDatum(now);
	values[Anum_streams_deleted_at - 1] = TimestampTzGetDatum(now);
	nulls[Anum_streams_deleted_at - 1] = false;
	values[Anum_streams_tombstoned - 1] = BoolGetDatum(tombstone);

	evstore_writer_open(&w, streams_rel);
	evstore_writer_update(&w, &st.tid, values, nulls);
	evstore_writer_close(&w);
	ExecDropSingleTupleTableSlot(old);
	CommandCounterIncrement();
}

/*
 * Shared body of delete_stream and tombstone_stream.  Returns false when
 * there was nothing to do (soft delete of a stream that does not exist or
 * is already deleted).
 */
static bool
delete_stream(FunctionCallInfo fcinfo, bool tombstone, EvstoreAppendResult *result)
{
	int			sidlen;
	char	   *stream_id = evstore_text_arg(fcinfo, 0, "stream_id", &sidlen);
	bool		has_expected = !PG_ARGISNULL(1);
	int64		expected = has_expected ? PG_GETARG_INT64(1) : EVSTORE_EXPECT_ANY;
	EvstoreNewEvent ev;
	const EvstoreCatalog *cat;
	Relation	streams_rel;
	EvstoreStreamState st;
	int64		current;

	evstore_check_expected_version(has_expected, expected);
	ev.metadata = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	if (ev.metadata && !JB_ROOT_IS_OBJECT(ev.metadata))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata must be a JSON object or null")));

	evstore_require_preload();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot delete streams during recovery")));
	PreventCommandIfReadOnly(tombstone ? "evstore.tombstone_stream()" : "evstore.delete_stream()");

	cat = evstore_catalog_for_append(stream_id, sidlen);	/* ES020 before any lock */
	evstore_lock_stream(stream_id, sidlen);
	streams_rel = table_open(cat->streams_rel, RowExclusiveLock);
	evstore_stream_state(streams_rel, stream_id, &st);
	if (st.tombstoned)
		raise_stream_tombstoned(stream_id);
	current = evstore_stream_current_version(&st);

	if (!tombstone && current == -1)
	{
		/* nothing readable to delete: check the expectation, do nothing */
		if (expected >= 0 || expected == EVSTORE_EXPECT_EXISTS)
		{
			char		buf[32];

			snprintf(buf, sizeof(buf), "%lld", (long long) expected);
			evstore_stats_count(EVSTORE_STAT_CONFLICTS, 1);
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_WRONG_EXPECTED_VERSION),
					 errmsg("wrong expected version for stream \"%s\": expected %s, actual -1",
							stream_id,
							expected == EVSTORE_EXPECT_EXISTS ? "-4 (stream exists)" : buf),
					 errdetail(st.exists ? "The stream is already deleted." :
							   "The stream does not exist."),
					 errhint("Reload the stream and retry the command.")));
		}
		table_close(streams_rel, RowExclusiveLock);
		return false;
	}

	/* the marker event; evstore_append_batch checks the expected version */
	ev.type = cstring_to_text(tombstone ? "$StreamTombstoned" : "$StreamDeleted");
	ev.data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												 CStringGetDatum(psprintf("{\"last_version\": %lld}",
																		  (long long) current))));
	ev.has_id = false;
	evstore_append_batch(stream_id, sidlen, &ev, 1, has_expected, expected, result);

	mark_stream_deleted(streams_rel, stream_id, tombstone);
	table_close(streams_rel, NoLock);	/* held until the transaction ends */
	return true;
}

PG_FUNCTION_INFO_V1(evstore_delete_stream);

/* evstore.delete_stream(stream_id text, expected_version bigint, metadata jsonb) -> evstore.append_result */
Datum
evstore_delete_stream(PG_FUNCTION_ARGS)
{
	EvstoreAppendResult r;

	if (!delete_stream(fcinfo, false, &r))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(evstore_append_result_datum(fcinfo, &r));
}

PG_FUNCTION_INFO_V1(evstore_tombstone_stream);

/* evstore.tombstone_stream(stream_id text, expected_version bigint, metadata jsonb) -> evstore.append_result */
Datum
evstore_tombstone_stream(PG_FUNCTION_ARGS)
{
	EvstoreAppendResult r;

	(void) delete_stream(fcinfo, true, &r);
	PG_RETURN_DATUM(evstore_append_result_datum(fcinfo, &r));
}
