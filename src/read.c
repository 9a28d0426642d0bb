/*-------------------------------------------------------------------------
 *
 * read.c
 *	  evstore.read_stream, evstore.stream_version and evstore.read_all.
 *
 * read_stream and stream_version read with the statement's snapshot, like
 * any SELECT.  read_all first computes the fence horizon (fence.c), then
 * takes a fresh snapshot and returns only events at or below the horizon,
 * so a poller never skips an event that commits late.  Filters on
 * categories (and category prefixes) and consumer groups are served by
 * merging ordered index scans on (category, global_position) or
 * (stream_bucket, global_position).
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"
#include "schema.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/binaryheap.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include <math.h>

PG_FUNCTION_INFO_V1(evstore_read_stream);

/* evstore.read_stream(stream_id text, from_version bigint, max_count bigint, backwards boolean) -> SETOF evstore.events */
Datum
evstore_read_stream(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			sidlen;
	char	   *stream_id = evstore_text_arg(fcinfo, 0, "stream_id", &sidlen);
	bool		has_from = !PG_ARGISNULL(1);
	int64		from = has_from ? PG_GETARG_INT64(1) : 0;
	bool		has_max = !PG_ARGISNULL(2);
	int64		max_count = has_max ? PG_GETARG_INT64(2) : 0;
	bool		backwards = PG_ARGISNULL(3) ? false : PG_GETARG_BOOL(3);
	const EvstoreCatalog *cat;
	Relation	streams_rel;
	Relation	events_rel;
	Relation	index;
	EvstoreStreamState st;
	Snapshot	snapshot;
	ScanKeyData keys[2];
	int			nkeys = 1;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		count = 0;
	int64		lower;
	EvstoreUpcaster *up;

	if (has_from && from < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_version must be >= 0 or NULL, not %lld", (long long) from)));
	if (has_max && max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be >= 0 or NULL, not %lld", (long long) max_count)));

	InitMaterializedSRF(fcinfo, 0);
	if (has_max && max_count == 0)
		return (Datum) 0;

	cat = evstore_catalog_for_stream(stream_id, sidlen);
	snapshot = GetActiveSnapshot();
	streams_rel = table_open(cat->streams_rel, AccessShareLock);
	evstore_stream_state_snapshot(streams_rel, stream_id, snapshot, &st);
	table_close(streams_rel, AccessShareLock);
	if (!st.exists || st.deleted)
		return (Datum) 0;
	lower = st.first_version;

	events_rel = table_open(cat->events_rel, AccessShareLock);
	index = index_open(cat->events_stream_idx, AccessShareLock);

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ,
				PointerGetDatum(cstring_to_text_with_len(stream_id, sidlen)));
	keys[0].sk_collation = index->rd_indcollation[0];
	if (!backwards)
	{
		if (has_from && from > lower)
			lower = from;
		if (lower > 0)
			ScanKeyInit(&keys[nkeys++], 2, BTGreaterEqualStrategyNumber, F_INT8GE,
						Int64GetDatum(lower));
	}
	else if (has_from)
		ScanKeyInit(&keys[nkeys++], 2, BTLessEqualStrategyNumber, F_INT8LE,
					Int64GetDatum(from));

	slot = table_slot_create(events_rel, NULL);
	up = evstore_upcaster_begin(RelationGetDescr(events_rel), UPCAST_READ);
	scan = evstore_index_beginscan(events_rel, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (index_getnext_slot(scan, backwards ? BackwardScanDirection : ForwardScanDirection, slot))
	{
		/* a long stream must be cancellable between any two events */
		CHECK_FOR_INTERRUPTS();
		if (backwards)
		{
			bool		isnull;
			int64		v = DatumGetInt64(slot_getattr(slot, Anum_events_stream_version, &isnull));

			if (v < lower)
				break;
		}
		tuplestore_puttupleslot(rsinfo->setResult,
								up ? evstore_upcaster_slot(up, slot) : slot);
		if (has_max && ++count >= max_count)
			break;
	}
	evstore_upcaster_end(up);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(events_rel, AccessShareLock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(evstore_stream_version);

/* evstore.stream_version(stream_id text) -> bigint */
Datum
evstore_stream_version(PG_FUNCTION_ARGS)
{
	int			sidlen;
	char	   *stream_id = evstore_text_arg(fcinfo, 0, "stream_id", &sidlen);
	Relation	streams_rel;
	EvstoreStreamState st;

	streams_rel = table_open(evstore_catalog_for_stream(stream_id, sidlen)->streams_rel,
							 AccessShareLock);
	evstore_stream_state_snapshot(streams_rel, stream_id, GetActiveSnapshot(), &st);
	table_close(streams_rel, AccessShareLock);
	PG_RETURN_INT64(evstore_stream_current_version(&st));
}

/*
 * One ordered index scan taking part in a merge.
 */
typedef struct MergeScan
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		position;		/* of the tuple in slot */
} MergeScan;

static int
merge_cmp(Datum a, Datum b, void *arg)
{
	MergeScan  *sa = (MergeScan *) DatumGetPointer(a);
	MergeScan  *sb = (MergeScan *) DatumGetPointer(b);

	/* binaryheap is a max-heap: invert for smallest position first */
	if (sa->position < sb->position)
		return 1;
	if (sa->position > sb->position)
		return -1;
	return 0;
}

static bool
merge_advance(MergeScan *ms)
{
	bool		isnull;

	if (!index_getnext_slot(ms->scan, ForwardScanDirection, ms->slot))
		return false;
	ms->position = DatumGetInt64(slot_getattr(ms->slot, Anum_events_global_position, &isnull));
	return true;
}

typedef struct ReadAllArgs
{
	int64		after;
	int64		horizon;
	int			max_count;
	/* filters; NULL/0 when absent */
	Datum	   *categories;
	int			ncategories;
	char	  **event_types;
	int		   *event_type_lens;
	int			nevent_types;
	int			group_member;
	int			group_size;
	Datum	   *prefixes;		/* category prefixes, sorted, unique */
	int			nprefixes;
	bool		include_system;	/* false: leave out types starting with '$' */
	EvstoreEventsRelations rels;	/* what to scan */
} ReadAllArgs;

static bool
passes_filters(const ReadAllArgs *a, TupleTableSlot *slot, bool check_group)
{
	bool		isnull;

	if (!a->include_system)
	{
		text	   *t = DatumGetTextPP(slot_getattr(slot, Anum_events_event_type, &isnull));

		if (VARSIZE_ANY_EXHDR(t) > 0 && *VARDATA_ANY(t) == '$')
			return false;
	}
	if (a->nevent_types > 0)
	{
		text	   *t = DatumGetTextPP(slot_getattr(slot, Anum_events_event_type, &isnull));
		int			len = VARSIZE_ANY_EXHDR(t);
		bool		match = false;

		for (int i = 0; i < a->nevent_types && !match; i++)
			match = (a->event_type_lens[i] == len &&
					 memcmp(a->event_types[i], VARDATA_ANY(t), len) == 0);
		if (!match)
			return false;
	}
	if (check_group && a->group_size > 0)
	{
		int16		bucket = DatumGetInt16(slot_getattr(slot, Anum_events_stream_bucket, &isnull));

		if (bucket % a->group_size != a->group_member)
			return false;
	}
	return true;
}

/*
 * Open one scan of "index" for rows with first column = key (when
 * has_key), and after < global_position <= horizon.
 */
static MergeScan *
open_scan(Relation heap, Relation index, Snapshot snapshot, const ReadAllArgs *a,
		  bool has_key, Datum key, RegProcedure eqproc, int poscol)
{
	MergeScan  *ms = palloc(sizeof(MergeScan));
	ScanKeyData keys[3];
	int			nkeys = 0;

	if (has_key)
	{
		ScanKeyInit(&keys[nkeys], 1, BTEqualStrategyNumber, eqproc, key);
		keys[nkeys].sk_collation = index->rd_indcollation[0];
		nkeys++;
	}
	ScanKeyInit(&keys[nkeys++], poscol, BTGreaterStrategyNumber, F_INT8GT,
				Int64GetDatum(a->after));
	ScanKeyInit(&keys[nkeys++], poscol, BTLessEqualStrategyNumber, F_INT8LE,
				Int64GetDatum(a->horizon));
	ms->slot = table_slot_create(heap, NULL);
	ms->scan = evstore_index_beginscan(heap, index, snapshot, nkeys, 0);
	index_rescan(ms->scan, keys, nkeys, NULL, 0);
	return ms;
}

static int	text_datum_cmp(const void *a, const void *b);

static bool
has_prefix(text *t, text *prefix)
{
	int			pl = VARSIZE_ANY_EXHDR(prefix);

	return (int) VARSIZE_ANY_EXHDR(t) >= pl &&
		memcmp(VARDATA_ANY(t), VARDATA_ANY(prefix), pl) == 0;
}

/*
 * The categories stored in the category index that start with one of the
 * prefixes (byte-wise), merged with the explicit categories; sorted and
 * unique.  The index is walked one distinct category at a time (a "skip
 * scan": one descent per category, never a walk over its events).  Under
 * the C collation the categories with a prefix are neighbours in the index:
 * the walk starts at each prefix and stops after its last category.  In
 * another collation they need not be, so every distinct category of the
 * store is visited.
 */
static Datum *
categories_with_prefixes(Relation heap, Relation index, Snapshot snapshot,
						 const ReadAllArgs *a, int *nout)
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
	int			max = a->ncategories + 16;
	int			n = 0;
	int			out = 0;
	Datum	   *result = palloc(max * sizeof(Datum));
	bool		bytewise;

	for (int i = 0; i < a->ncategories; i++)
		result[n++] = a->categories[i];

	bytewise = evstore_collation_is_c(index->rd_indcollation[0]);
	slot = table_slot_create(heap, NULL);
	scan = evstore_index_beginscan(heap, index, snapshot, 1, 0);
	/* bytewise: one walk per prefix; otherwise one walk over everything */
	for (int p = 0; p < (bytewise ? a->nprefixes : 1); p++)
	{
		if (bytewise)
			ScanKeyInit(&key, 1, BTGreaterEqualStrategyNumber, F_TEXT_GE, a->prefixes[p]);
		else
			ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNOTNULL, 1,
								   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid,
								   (Datum) 0);
		key.sk_collation = index->rd_indcollation[0];
		for (;;)
		{
			bool		isnull;
			bool		match = false;
			text	   *cat;

			CHECK_FOR_INTERRUPTS();
			index_rescan(scan, &key, 1, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, slot))
				break;
			cat = DatumGetTextPCopy(slot_getattr(slot, Anum_events_category, &isnull));
			for (int i = bytewise ? p : 0; i < (bytewise ? p + 1 : a->nprefixes) && !match; i++)
				match = has_prefix(cat, DatumGetTextPP(a->prefixes[i]));
			if (match)
			{
				if (n == max)
				{
					max *= 2;
					result = repalloc(result, max * sizeof(Datum));
				}
				result[n++] = PointerGetDatum(cat);
			}
			else if (bytewise)
				break;			/* past the prefix's categories */
			/* next: the first entry of a greater category */
			ScanKeyInit(&key, 1, BTGreaterStrategyNumber, F_TEXT_GT, PointerGetDatum(cat));
			key.sk_collation = index->rd_indcollation[0];
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	qsort(result, n, sizeof(Datum), text_datum_cmp);
	for (int i = 0; i < n; i++)
		if (out == 0 || text_datum_cmp(&result[out - 1], &result[i]) != 0)
			result[out++] = result[i];
	*nout = out;
	return result;
}

static int
read_all_scan(ReturnSetInfo *rsinfo, const ReadAllArgs *a)
{
	Relation	heap;
	Relation	index;
	Snapshot	snapshot;
	List	   *scans = NIL;
	binaryheap *bh;
	int			emitted = 0;
	bool		check_group;
	ListCell   *lc;
	EvstoreUpcaster *up;

	/* a snapshot taken after the horizon: it sees every event below it */
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	heap = table_open(a->rels.heap, AccessShareLock);
	up = evstore_upcaster_begin(RelationGetDescr(heap), UPCAST_READ);

	if (a->ncategories > 0 || a->nprefixes > 0)
	{
		Datum	   *cats = a->categories;
		int			ncats = a->ncategories;

		index = index_open(a->rels.category_idx, AccessShareLock);
		if (a->nprefixes > 0)
			cats = categories_with_prefixes(heap, index, snapshot, a, &ncats);
		for (int i = 0; i < ncats; i++)
			scans = lappend(scans, open_scan(heap, index, snapshot, a, true,
											 cats[i], F_TEXTEQ, 2));
		check_group = true;
	}
	else if (a->group_size > 0)
	{
		index = index_open(a->rels.bucket_idx, AccessShareLock);
		for (int b = a->group_member; b < EVSTORE_BUCKETS; b += a->group_size)
			scans = lappend(scans, open_scan(heap, index, snapshot, a, true,
											 Int16GetDatum((int16) b), F_INT2EQ, 2));
		check_group = false;
	}
	else
	{
		index = index_open(a->rels.position_idx, AccessShareLock);
		scans = lappend(scans, open_scan(heap, index, snapshot, a, false, 0, InvalidOid, 1));
		check_group = false;
	}

	bh = binaryheap_allocate(list_length(scans), merge_cmp, NULL);
	foreach(lc, scans)
	{
		MergeScan  *ms = (MergeScan *) lfirst(lc);

		if (merge_advance(ms))
			binaryheap_add_unordered(bh, PointerGetDatum(ms));
	}
	binaryheap_build(bh);

	while (!binaryheap_empty(bh) && emitted < a->max_count)
	{
		MergeScan  *ms = (MergeScan *) DatumGetPointer(binaryheap_first(bh));

		CHECK_FOR_INTERRUPTS();
		if (passes_filters(a, ms->slot, check_group))
		{
			tuplestore_puttupleslot(rsinfo->setResult,
									up ? evstore_upcaster_slot(up, ms->slot) : ms->slot);
			emitted++;
		}
		if (merge_advance(ms))
			binaryheap_replace_first(bh, PointerGetDatum(ms));
		else
			(void) binaryheap_remove_first(bh);
	}

	foreach(lc, scans)
	{
		MergeScan  *ms = (MergeScan *) lfirst(lc);

		index_endscan(ms->scan);
		ExecDropSingleTupleTableSlot(ms->slot);
	}
	binaryheap_free(bh);
	evstore_upcaster_end(up);
	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	UnregisterSnapshot(snapshot);
	evstore_stats_count(EVSTORE_STAT_READ_ALL_EVENTS, emitted);
	return emitted;
}

static int
text_datum_cmp(const void *a, const void *b)
{
	text	   *ta = DatumGetTextPP(*(const Datum *) a);
	text	   *tb = DatumGetTextPP(*(const Datum *) b);
	int			la = VARSIZE_ANY_EXHDR(ta);
	int			lb = VARSIZE_ANY_EXHDR(tb);
	int			c = memcmp(VARDATA_ANY(ta), VARDATA_ANY(tb), Min(la, lb));

	return c != 0 ? c : (la > lb) - (la < lb);
}

/* Deconstruct a text[] filter; NULL elements are an error; sorted, unique. */
static Datum *
text_array_arg(ArrayType *arr, const char *what, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	int			count,
				out = 0;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
	for (int i = 0; i < count; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", what)));
	qsort(elems, count, sizeof(Datum), text_datum_cmp);
	for (int i = 0; i < count; i++)
		if (out == 0 || text_datum_cmp(&elems[out - 1], &elems[i]) != 0)
			elems[out++] = elems[i];
	*n = out;
	return elems;
}

/*
 * Parse read_all's arguments, which start at argument off; false when the
 * filters match nothing.
 */
static bool
read_all_args(FunctionCallInfo fcinfo, int off, ReadAllArgs *a)
{
	int			nargs = PG_NARGS() - off;

	memset(a, 0, sizeof(*a));
	a->after = PG_ARGISNULL(off) ? 0 : PG_GETARG_INT64(off);
	a->max_count = PG_ARGISNULL(off + 1) ? 1000 : PG_GETARG_INT32(off + 1);
	if (a->after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must be >= 0, not %lld", (long long) a->after)));
	if (a->max_count <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be > 0, not %d", a->max_count)));
	if (PG_ARGISNULL(off + 4) != PG_ARGISNULL(off + 5))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("group_member and group_size must be given together")));
	if (!PG_ARGISNULL(off + 5))
	{
		a->group_member = PG_GETARG_INT32(off + 4);
		a->group_size = PG_GETARG_INT32(off + 5);
		if (a->group_size < 1 || a->group_size > EVSTORE_BUCKETS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("group_size must be between 1 and %d, not %d",
							EVSTORE_BUCKETS, a->group_size)));
		if (a->group_member < 0 || a->group_member >= a->group_size)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("group_member must be between 0 and %d, not %d",
							a->group_size - 1, a->group_member)));
		if (a->group_size == 1)
			a->group_size = 0;	/* one member gets everything */
	}

	/* a call through the 0.2.0 signature (old SQL definition) has 6 args */
	a->include_system = (nargs < 8 || PG_ARGISNULL(off + 7)) ? true : PG_GETARG_BOOL(off + 7);

	/*
	 * The category filter is the union of categories and category_prefixes;
	 * an empty union matches nothing, an empty prefix every category.
	 */
	if (!PG_ARGISNULL(off + 2))
		a->categories = text_array_arg(PG_GETARG_ARRAYTYPE_P(off + 2), "categories",
									   &a->ncategories);
	if (nargs >= 7 && !PG_ARGISNULL(off + 6))
	{
		a->prefixes = text_array_arg(PG_GETARG_ARRAYTYPE_P(off + 6), "category_prefixes",
									 &a->nprefixes);
		if (a->nprefixes > 0 && VARSIZE_ANY_EXHDR(DatumGetTextPP(a->prefixes[0])) == 0)
		{
			/* '' sorts first and is a prefix of everything: no filter */
			a->ncategories = 0;
			a->nprefixes = 0;
		}
		else if (a->ncategories + a->nprefixes == 0)
			return false;
	}
	else if (!PG_ARGISNULL(off + 2) && a->ncategories == 0)
		return false;			/* an empty list matches nothing */
	if (!PG_ARGISNULL(off + 3))
	{
		Datum	   *types = text_array_arg(PG_GETARG_ARRAYTYPE_P(off + 3), "event_types",
										   &a->nevent_types);

		if (a->nevent_types == 0)
			return false;
		a->event_types = palloc(a->nevent_types * sizeof(char *));
		a->event_type_lens = palloc(a->nevent_types * sizeof(int));
		for (int i = 0; i < a->nevent_types; i++)
		{
			text	   *t = DatumGetTextPP(types[i]);

			a->event_types[i] = VARDATA_ANY(t);
			a->event_type_lens[i] = VARSIZE_ANY_EXHDR(t);
		}
	}
	return true;
}

/*
 * read_all's timeout, in microseconds: 0 = do not wait, -1 = no limit
 * (more than a century, or an infinite interval).  A month counts 30 days.
 */
static int64
wait_timeout_usecs(Interval *iv)
{
	double		us = (double) iv->time +
		((double) iv->month * DAYS_PER_MONTH + (double) iv->day) * (double) USECS_PER_DAY;

	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be >= 0 or NULL, not %s",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)))),
				 errhint("NULL or 0 returns at once; a positive interval waits up to that long for an event.")));
	if (us >= 100.0 * DAYS_PER_YEAR * USECS_PER_DAY)
		return -1;
	return (int64) ceil(us);
}

/*
 * Wait until read_all would return an event, then return it (with those
 * after it, up to max_count), or return nothing at the deadline.  Events at
 * or below a horizon already scanned were all visible to that scan and
 * matched no filter, so each re-check scans only what lies between the last
 * horizon and the new one, with a new snapshot: in any isolation level, as
 * every read_all call does.
 */
/*
 * When appends end faster than this, a waiter re-checks once per gap for
 * all of them instead of once each: a commit then waits at most this long
 * more to be returned, and a busy store wakes each waiter at most 1,000
 * times a second (see bench/wakeup.sh).
 */
#define READ_ALL_RECHECK_GAP_US 1000

static void
read_all_wait_loop(ReturnSetInfo *rsinfo, ReadAllArgs *a, int64 scanned,
				   TimestampTz deadline, bool matches_nothing)
{
	/* what a re-check allocates is freed before the next one */
	MemoryContext recheck = AllocSetContextCreate(CurrentMemoryContext,
												  "evstore read_all wait",
												  ALLOCSET_DEFAULT_SIZES);

	TimestampTz checked = 0;

	for (;;)
	{
		uint64		seen = evstore_fence_wait_counter();

		if (!matches_nothing)
		{
			MemoryContext old = MemoryContextSwitchTo(recheck);
			int64		horizon = evstore_fence_horizon();
			int			emitted = 0;

			if (horizon > scanned)
			{
				a->after = scanned;
				a->horizon = horizon;
				emitted = read_all_scan(rsinfo, a);
				scanned = horizon;
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(recheck);
			if (emitted > 0)
				break;
			checked = GetCurrentTimestamp();
		}
		/* at most one re-check per READ_ALL_RECHECK_GAP_US of appends */
		if (!evstore_fence_wait_for_change(seen, checked + READ_ALL_RECHECK_GAP_US, deadline))
			break;
	}
	MemoryContextDelete(recheck);
}

static void
read_all_wait(ReturnSetInfo *rsinfo, ReadAllArgs *a, int64 scanned,
			  TimestampTz deadline, bool matches_nothing)
{
	evstore_fence_wait_begin();
	PG_TRY();
	{
		read_all_wait_loop(rsinfo, a, scanned, deadline, matches_nothing);
	}
	PG_FINALLY();
	{
		evstore_fence_wait_end();
	}
	PG_END_TRY();
}

PG_FUNCTION_INFO_V1(evstore_read_all);

/* evstore.read_all(after_position bigint, max_count integer, categories text[], event_types text[], group_member integer, group_size integer, category_prefixes text[], include_system boolean, timeout interval) -> SETOF evstore.events */
Datum
evstore_read_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const EvstoreCatalog *cat;
	ReadAllArgs a;
	bool		matches_nothing;
	int64		wait_us = 0;
	TimestampTz deadline = 0;

	matches_nothing = !read_all_args(fcinfo, 0, &a);
	/* a call through an 8-argument signature (0.3.0's filters) has no timeout */
	if (PG_NARGS() >= 9 && !PG_ARGISNULL(8))
		wait_us = wait_timeout_usecs(PG_GETARG_INTERVAL_P(8));
	InitMaterializedSRF(fcinfo, 0);
	evstore_stats_count(EVSTORE_STAT_READ_ALL_CALLS, 1);
	/* without a timeout, a filter that matches nothing returns at once */
	if (matches_nothing && wait_us == 0)
		return (Datum) 0;

	evstore_fence_refuse_on_standby("evstore.read_all()");
	if (wait_us != 0 && evstore_fence_holds_back())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("evstore.read_all() cannot wait in a transaction that has appended events"),
				 errdetail("Until it ends, this transaction holds read_all back below its own first event, so a wait could not see the events appended after it."),
				 errhint("Commit (or roll back) the appends before waiting, or call it without a timeout.")));

	cat = evstore_catalog();
	a.rels.heap = cat->events_rel;
	a.rels.position_idx = cat->events_pkey;
	a.rels.category_idx = cat->events_category_idx;
	a.rels.bucket_idx = cat->events_bucket_idx;
	a.horizon = evstore_fence_horizon();
	if (!matches_nothing && a.horizon > a.after && read_all_scan(rsinfo, &a) > 0)
		return (Datum) 0;
	if (wait_us == 0)
		return (Datum) 0;
	if (wait_us > 0)
		deadline = GetCurrentTimestamp() + wait_us;
	read_all_wait(rsinfo, &a, Max(a.after, a.horizon), deadline, matches_nothing);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(evstore_read_all_shard);

/* evstore.read_all_shard(shard_id bigint, after_position bigint, max_count integer, categories text[], event_types text[], group_member integer, group_size integer, category_prefixes text[], include_system boolean) -> SETOF evstore.events */
Datum
evstore_read_all_shard(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ReadAllArgs a;
	int64		shardid;
	bool		any;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("shard_id must not be null")));
	shardid = PG_GETARG_INT64(0);
	any = read_all_args(fcinfo, 1, &a);
	InitMaterializedSRF(fcinfo, 0);
	evstore_stats_count(EVSTORE_STAT_READ_ALL_CALLS, 1);

	evstore_fence_refuse_on_standby("evstore.read_all_shard()");

	/* this node's placement, before the horizon and the snapshot */
	evstore_shard_relations(shardid, &a.rels);
	if (!any)
		return (Datum) 0;
	a.horizon = evstore_fence_horizon();
	if (a.horizon <= a.after)
		return (Datum) 0;
	read_all_scan(rsinfo, &a);
	return (Datum) 0;
}
