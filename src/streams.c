/*-------------------------------------------------------------------------
 *
 * streams.c
 *	  Per-stream locking and state lookup.
 *
 * Appends to one stream are serialized by a transaction-scoped lock on a
 * 64-bit hash of the stream id (an advisory lock tag with our own class
 * number, so it never collides with application advisory locks).  While a
 * backend holds it, no other appender of that stream is in flight, so the
 * stream's latest committed state is read with SnapshotSelf and compared
 * with the expected version regardless of the isolation level.  Different
 * streams take different locks and never wait for each other.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* locktag_field4 marking evstore's stream locks in pg_locks ("ES") */
#define EVSTORE_LOCK_CLASS	0x4553

void
evstore_lock_stream(const char *stream_id, int len)
{
	LOCKTAG		tag;
	uint64		h = hash_bytes_extended((const unsigned char *) stream_id, len,
										UINT64CONST(0x65767374));

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 EVSTORE_LOCK_CLASS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * Fetch the first heap tuple matching an equality/range scan on an index.
 * Keys refer to index columns; collations are taken from the index.
 */
bool
evstore_index_lookup(Relation heap, Oid indexoid, ScanKey keys, int nkeys,
					 Snapshot snapshot, TupleTableSlot *slot)
{
	Relation	index = index_open(indexoid, AccessShareLock);
	IndexScanDesc scan;
	bool		found;

	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = index->rd_indcollation[keys[i].sk_attno - 1];
	scan = evstore_index_beginscan(heap, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/*
 * Read a stream's row from evstore.streams with the given snapshot
 * (SnapshotSelf under the stream lock; the statement snapshot for reads).
 */
void
evstore_stream_state_snapshot(Relation streams, const char *stream_id,
							  Snapshot snapshot, EvstoreStreamState *st)
{
	ScanKeyData key;
	TupleTableSlot *slot = table_slot_create(streams, NULL);

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
				CStringGetTextDatum(stream_id));
	memset(st, 0, sizeof(*st));
	st->version = -1;
	if (evstore_index_lookup(streams,
							 evstore_catalog_for_rel(RelationGetRelid(streams))->streams_pkey, &key, 1,
							 snapshot, slot))
	{
		bool		isnull;

		st->exists = true;
		st->version = DatumGetInt64(slot_getattr(slot, Anum_streams_version, &isnull));
		st->first_version = DatumGetInt64(slot_getattr(slot, Anum_streams_first_version, &isnull));
		(void) slot_getattr(slot, Anum_streams_deleted_at, &isnull);
		st->deleted = !isnull;
		st->tombstoned = DatumGetBool(slot_getattr(slot, Anum_streams_tombstoned, &isnull));
		st->created_at = DatumGetTimestampTz(slot_getattr(slot, Anum_streams_created_at, &isnull));
		ItemPointerCopy(&slot->tts_tid, &st->tid);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/* Latest committed state; the caller holds the stream lock. */
void
evstore_stream_state(Relation streams, const char *stream_id, EvstoreStreamState *st)
{
	evstore_stream_state_snapshot(streams, stream_id, SnapshotSelf, st);
}

/*
 * The version expected-version checks compare with: -1 for a stream that
 * does not exist or was soft-deleted (it can be started again).
 */
int64
evstore_stream_current_version(const EvstoreStreamState *st)
{
	if (!st->exists || st->deleted)
		return -1;
	return st->version;
}
