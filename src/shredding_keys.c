/*-------------------------------------------------------------------------
 *
 * shredding_keys.c
 *	  Crypto-shredding: the data keys.  The key table evstore.subject_keys,
 *	  the per-backend cache of unwrapped keys and its invalidation, and the
 *	  SQL functions that change the key table: forget(), is_forgotten(),
 *	  rotate_master_key().
 *
 * Each backend caches unwrapped data keys in hash tables that live in their
 * own memory context.  forget() registers a relcache invalidation of the key
 * table; it is broadcast when the forgetting transaction commits, our
 * relcache callback marks the cache stale, and every SQL entry point calls
 * AcceptInvalidationMessages() and drops a stale cache (wiping the key
 * bytes) before it looks at a cached key.  The callback itself only sets a
 * flag, so no cache entry is freed while a function is using it.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "shredding.h"
#include "compat.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* locktag_field4 of the per-subject advisory lock ("KY") */
#define SUBJECT_LOCK_CLASS	0x4B59

/* Attribute numbers of evstore.subject_keys */
enum
{
	Anum_keys_key_id = 1,
	Anum_keys_subject,
	Anum_keys_master_version,
	Anum_keys_wrapped_key,
	Anum_keys_created_at,
	Anum_keys_forgotten_at,
	Natts_keys = Anum_keys_forgotten_at
};

/* ---------- settings ---------- */

static int	key_cache_size = 10000;

/* ---------- per-backend cache of unwrapped data keys ---------- */

typedef struct KeyEntry
{
	int64		key_id;			/* hash key */
	bool		forgotten;
	int			subjlen;
	char	   *subject;		/* allocated in cache_cxt */
	uint8		key[KEY_LEN];
} KeyEntry;

typedef struct SubjectEntry
{
	uint64		hash;			/* hash key: hash of the subject */
	int			subjlen;
	char	   *subject;
	int64		key_id;
} SubjectEntry;

static MemoryContext cache_cxt = NULL;
static HTAB *key_hash = NULL;
static HTAB *subject_hash = NULL;
static bool cache_stale = false;
static bool keys_changed_in_xact = false;

/* the key of the running SQL call (KeyInfo, shredding.h) */
KeyInfo		shred_call_key;

/* ---------- OIDs of the key table ---------- */

typedef struct KeyRel
{
	bool		valid;
	Oid			rel;
	Oid			pkey;
	Oid			subject_idx;
} KeyRel;

static KeyRel keyrel;

static void flush_key_cache(void);

/* ======================================================================
 * Memory hygiene, invalidation, setup
 * ====================================================================== */

/* Drop every cached data key, wiping the key bytes first. */
static void
flush_key_cache(void)
{
	if (key_hash != NULL)
	{
		HASH_SEQ_STATUS status;
		KeyEntry   *e;

		hash_seq_init(&status, key_hash);
		while ((e = (KeyEntry *) hash_seq_search(&status)) != NULL)
			shred_wipe(e->key, KEY_LEN);
	}
	key_hash = NULL;
	subject_hash = NULL;
	if (cache_cxt != NULL)
		MemoryContextReset(cache_cxt);
	/* (shred_call_key is not touched: cache_key() may flush while it is in use) */
	/* the cipher context holds the last key schedule */
	shred_cipher_reset();
	cache_stale = false;
}

static void
key_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		(keyrel.valid && (relid == keyrel.rel || relid == keyrel.pkey ||
						  relid == keyrel.subject_idx)))
	{
		cache_stale = true;
		keyrel.valid = false;
	}
}

static void
shredding_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* keys created or forgotten by the aborted transaction: undone */
			if (keys_changed_in_xact)
				cache_stale = true;
			keys_changed_in_xact = false;
			if (shred_master_loaded)
				shred_wipe_master_keys();
			shred_wipe(&shred_call_key, sizeof(shred_call_key));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			keys_changed_in_xact = false;
			if (shred_master_loaded)
				shred_wipe_master_keys();
			break;
		default:
			break;
	}
}

static void
shredding_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	if (keys_changed_in_xact)
		cache_stale = true;
	/* an error path: the master keys are loaded again when needed */
	if (shred_master_loaded)
		shred_wipe_master_keys();
	shred_wipe(&shred_call_key, sizeof(shred_call_key));
}

/* Mark the key cache stale: a master key setting changed. */
void
shred_mark_key_cache_stale(void)
{
	cache_stale = true;
}

static void
key_cache_size_assign(int newval, void *extra)
{
	cache_stale = true;
}

void
evstore_shredding_init(void)
{
	shred_masterkey_init();
	DefineCustomIntVariable("evstore.key_cache_size",
							"Unwrapped data keys each session may cache (0 disables the cache).",
							NULL,
							&key_cache_size,
							10000, 0, 1000000,
							PGC_USERSET,
							0,
							NULL, key_cache_size_assign, NULL);

	evstore_register_relcache_callback(key_relcache_callback);
	RegisterXactCallback(shredding_xact_callback, NULL);
	RegisterSubXactCallback(shredding_subxact_callback, NULL);
}

static void
lookup_key_rel(void)
{
	Oid			nsp = get_namespace_oid("evstore", true);

	keyrel.rel = OidIsValid(nsp) ? get_relname_relid("subject_keys", nsp) : InvalidOid;
	keyrel.pkey = OidIsValid(nsp) ? get_relname_relid("subject_keys_pkey", nsp) : InvalidOid;
	keyrel.subject_idx = OidIsValid(nsp) ? get_relname_relid("subject_keys_subject_idx", nsp) : InvalidOid;
	if (!OidIsValid(keyrel.rel) || !OidIsValid(keyrel.pkey) ||
		!OidIsValid(keyrel.subject_idx))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore key table \"evstore.subject_keys\" does not exist"),
				 errhint("Update the extension with ALTER EXTENSION evstore UPDATE;")));
	keyrel.valid = true;
}

/*
 * Start of every SQL entry point: take in invalidations (a committed
 * forget() elsewhere marks the cache stale) and drop a stale cache.
 */
void
shred_begin_call(void)
{
	AcceptInvalidationMessages();
	shred_wipe(&shred_call_key, sizeof(shred_call_key));
	if (cache_stale)
		flush_key_cache();
	if (!keyrel.valid)
		lookup_key_rel();
}

static void
ensure_cache(void)
{
	HASHCTL		ctl;

	if (key_hash != NULL)
		return;
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext,
										  "evstore shredding key cache",
										  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hcxt = cache_cxt;
	key_hash = hash_create("evstore data keys", 256, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(SubjectEntry);
	ctl.hcxt = cache_cxt;
	subject_hash = hash_create("evstore subjects", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static uint64
subject_hash_value(const char *subject, int len)
{
	return hash_bytes_extended((const unsigned char *) subject, len,
							   UINT64CONST(0x7368726564));
}

/* ======================================================================
 * The key table
 * ====================================================================== */

typedef struct KeyRow
{
	int64		key_id;
	bool		forgotten;
	int32		master_version;
	bytea	   *wrapped;		/* NULL when forgotten */
	char	   *subject;
	int			subjlen;
	ItemPointerData tid;
	Datum		created_at;
} KeyRow;

static void
fill_key_row(TupleTableSlot *slot, KeyRow *row)
{
	bool		isnull;
	Datum		d;
	text	   *t;

	row->key_id = DatumGetInt64(slot_getattr(slot, Anum_keys_key_id, &isnull));
	t = DatumGetTextPP(slot_getattr(slot, Anum_keys_subject, &isnull));
	row->subjlen = VARSIZE_ANY_EXHDR(t);
	row->subject = pnstrdup(VARDATA_ANY(t), row->subjlen);
	d = slot_getattr(slot, Anum_keys_wrapped_key, &isnull);
	row->wrapped = isnull ? NULL : DatumGetByteaPCopy(d);
	d = slot_getattr(slot, Anum_keys_master_version, &isnull);
	row->master_version = isnull ? 0 : DatumGetInt32(d);
	(void) slot_getattr(slot, Anum_keys_forgotten_at, &isnull);
	row->forgotten = !isnull || row->wrapped == NULL;
	row->created_at = slot_getattr(slot, Anum_keys_created_at, &isnull);
	ItemPointerCopy(&slot->tts_tid, &row->tid);
	if (row->subjlen > EVSTORE_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("subject of data key %lld in evstore.subject_keys is too long",
						(long long) row->key_id)));
}

/*
 * All rows of one subject (by subject index) or one key id (by primary key),
 * read with SnapshotSelf: everything committed so far plus this
 * transaction's own rows, whatever the transaction snapshot is, so a
 * committed forget() is always seen.  A concurrent update can make both
 * versions of a row visible; callers let a forgotten version win.
 */
static List *
scan_key_rows(Relation rel, bool by_subject, const char *subject, int subjlen,
			  int64 key_id)
{
	Relation	index = index_open(by_subject ? keyrel.subject_idx : keyrel.pkey,
								   AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData skey;
	List	   *rows = NIL;

	if (by_subject)
		ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_TEXTEQ,
					PointerGetDatum(cstring_to_text_with_len(subject, subjlen)));
	else
		ScanKeyInit(&skey, 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum(key_id));
	skey.sk_collation = index->rd_indcollation[0];
	scan = evstore_index_beginscan(rel, index, SnapshotSelf, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		KeyRow	   *row = palloc0(sizeof(KeyRow));

		fill_key_row(slot, row);
		rows = lappend(rows, row);
	}
	index_endscan(scan);
	index_close(index, AccessShareLock);
	ExecDropSingleTupleTableSlot(slot);
	return rows;
}

static void
lock_subject(const char *subject, int subjlen)
{
	LOCKTAG		tag;
	uint64		h = subject_hash_value(subject, subjlen);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 SUBJECT_LOCK_CLASS);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Put an unwrapped key (or a forgotten key id) into the cache. */
static KeyEntry *
cache_key(int64 key_id, bool forgotten, const char *subject, int subjlen,
		  const uint8 *key)
{
	KeyEntry   *e;
	bool		found;

	if (key_cache_size <= 0)
		return NULL;
	ensure_cache();
	if (hash_get_num_entries(key_hash) >= key_cache_size)
	{
		flush_key_cache();
		ensure_cache();
	}
	e = (KeyEntry *) hash_search(key_hash, &key_id, HASH_ENTER, &found);
	e->forgotten = forgotten;
	e->subjlen = subjlen;
	e->subject = MemoryContextStrdup(cache_cxt, subject);
	if (key != NULL && !forgotten)
		memcpy(e->key, key, KEY_LEN);
	else
		memset(e->key, 0, KEY_LEN);
	if (!forgotten)
	{
		uint64		h = subject_hash_value(subject, subjlen);
		SubjectEntry *s = (SubjectEntry *) hash_search(subject_hash, &h, HASH_ENTER, &found);

		s->subject = e->subject;
		s->subjlen = subjlen;
		s->key_id = key_id;
	}
	return e;
}

static void
keyinfo_from_entry(KeyEntry *e, KeyInfo *out)
{
	out->key_id = e->key_id;
	out->forgotten = e->forgotten;
	out->subject = e->subject;
	out->subjlen = e->subjlen;
	memcpy(out->key, e->key, KEY_LEN);
}

/*
 * The key of a key id found in a ciphertext.  Unknown key ids are an error;
 * forgotten ones come back with forgotten = true.
 */
void
shred_get_key_by_id(int64 key_id, KeyInfo *out)
{
	Relation	rel;
	List	   *rows;
	ListCell   *lc;
	KeyRow	   *live = NULL;
	bool		forgotten = false;
	bool		found = false;

	if (key_hash != NULL)
	{
		KeyEntry   *e = (KeyEntry *) hash_search(key_hash, &key_id, HASH_FIND, NULL);

		if (e != NULL)
		{
			keyinfo_from_entry(e, out);
			return;
		}
	}

	rel = table_open(keyrel.rel, AccessShareLock);
	rows = scan_key_rows(rel, false, NULL, 0, key_id);
	table_close(rel, AccessShareLock);
	foreach(lc, rows)
	{
		KeyRow	   *row = lfirst(lc);

		found = true;
		if (row->forgotten)
			forgotten = true;
		else
			live = row;
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_UNKNOWN_KEY),
				 errmsg("evstore data key %lld does not exist", (long long) key_id),
				 errdetail("The ciphertext names a data key that is not in evstore.subject_keys."),
				 errhint("The key table must be restored together with the events; ciphertext cannot move between databases with different key tables.")));

	if (!forgotten && live == NULL)
		elog(ERROR, "no live version of data key %lld", (long long) key_id);
	if (forgotten)
		live = (KeyRow *) linitial(rows);
	out->key_id = key_id;
	out->forgotten = forgotten;
	out->subject = live->subject;
	out->subjlen = live->subjlen;
	if (!forgotten)
		shred_unwrap_key(live->wrapped, live->master_version, key_id,
						 live->subject, live->subjlen, out->key);
	else
		memset(out->key, 0, KEY_LEN);
	{
		KeyEntry   *e = cache_key(key_id, forgotten, out->subject, out->subjlen,
								  out->key);

		if (e != NULL)
			out->subject = e->subject;
	}
}

/*
 * The live key of a subject, created when the subject has none.  A
 * forgotten subject is an error unless allow_forgotten.
 */
void
shred_get_subject_key(const char *subject, int subjlen, bool allow_forgotten,
					  KeyInfo *out)
{
	Relation	rel;
	List	   *rows;
	ListCell   *lc;
	KeyRow	   *live = NULL;
	bool		any_forgotten = false;

	if (subject_hash != NULL)
	{
		uint64		h = subject_hash_value(subject, subjlen);
		SubjectEntry *s = (SubjectEntry *) hash_search(subject_hash, &h, HASH_FIND, NULL);

		if (s != NULL && s->subjlen == subjlen &&
			memcmp(s->subject, subject, subjlen) == 0)
		{
			KeyEntry   *e = (KeyEntry *) hash_search(key_hash, &s->key_id, HASH_FIND, NULL);

			if (e != NULL && !e->forgotten)
			{
				keyinfo_from_entry(e, out);
				return;
			}
		}
	}

	/* Serialize key creation and forget() per subject. */
	lock_subject(subject, subjlen);
	rel = table_open(keyrel.rel, RowExclusiveLock);
	rows = scan_key_rows(rel, true, subject, subjlen, 0);
	foreach(lc, rows)
	{
		KeyRow	   *row = lfirst(lc);

		if (row->forgotten)
		{
			any_forgotten = true;
			/* a forgotten version of a live row wins */
			if (live != NULL && live->key_id == row->key_id)
				live = NULL;
		}
		else
		{
			bool		dead = false;
			ListCell   *lc2;

			foreach(lc2, rows)
			{
				KeyRow	   *other = lfirst(lc2);

				if (other->forgotten && other->key_id == row->key_id)
					dead = true;
			}
			if (!dead)
				live = row;
		}
	}

	if (live != NULL)
	{
		out->key_id = live->key_id;
		shred_unwrap_key(live->wrapped, live->master_version, live->key_id,
						 subject, subjlen, out->key);
	}
	else
	{
		EvstoreWriter w;
		Datum		values[Natts_keys];
		bool		nulls[Natts_keys];
		int64		key_id;
		bytea	   *wrapped;

		if (any_forgotten && !allow_forgotten)
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_SUBJECT_FORGOTTEN),
					 errmsg("subject \"%s\" has been forgotten", subject),
					 errdetail("evstore.forget() destroyed this subject's key; new data for it would need a new key."),
					 errhint("To store new data for this subject anyway, call evstore.protect(data, subject, paths, allow_forgotten => true).")));

		shred_load_master_keys();
		shred_random_bytes(out->key, KEY_LEN);
		do
		{
			shred_random_bytes((uint8 *) &key_id, sizeof(key_id));
		} while (key_id == 0);
		wrapped = shred_wrap_key(out->key, shred_current_master_version,
								 key_id, subject, subjlen);

		memset(nulls, 0, sizeof(nulls));
		values[Anum_keys_key_id - 1] = Int64GetDatum(key_id);
		values[Anum_keys_subject - 1] = PointerGetDatum(cstring_to_text_with_len(subject, subjlen));
		values[Anum_keys_master_version - 1] = Int32GetDatum(shred_current_master_version);
		values[Anum_keys_wrapped_key - 1] = PointerGetDatum(wrapped);
		values[Anum_keys_created_at - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		nulls[Anum_keys_forgotten_at - 1] = true;
		values[Anum_keys_forgotten_at - 1] = (Datum) 0;

		evstore_writer_open(&w, rel);
		(void) evstore_writer_insert(&w, values, nulls, InvalidOid);
		evstore_writer_close(&w);
		keys_changed_in_xact = true;
		out->key_id = key_id;
	}
	table_close(rel, NoLock);	/* held until the transaction ends */

	out->forgotten = false;
	out->subject = subject;
	out->subjlen = subjlen;
	(void) cache_key(out->key_id, false, subject, subjlen, out->key);
}

/* ======================================================================
 * SQL-callable functions
 * ====================================================================== */

PG_FUNCTION_INFO_V1(evstore_forget);

/* evstore.forget(subject text) -> boolean */
Datum
evstore_forget(PG_FUNCTION_ARGS)
{
	int			subjlen;
	char	   *subject = evstore_text_arg(fcinfo, 0, "subject", &subjlen);
	Relation	rel;
	List	   *rows;
	ListCell   *lc;
	bool		had_key = false;
	EvstoreWriter w;
	Datum		values[Natts_keys];
	bool		nulls[Natts_keys];
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	shred_begin_call();
	lock_subject(subject, subjlen);
	rel = table_open(keyrel.rel, RowExclusiveLock);
	rows = scan_key_rows(rel, true, subject, subjlen, 0);
	evstore_writer_open(&w, rel);
	foreach(lc, rows)
	{
		KeyRow	   *row = lfirst(lc);

		if (row->forgotten)
			continue;
		had_key = true;
		memset(nulls, 0, sizeof(nulls));
		values[Anum_keys_key_id - 1] = Int64GetDatum(row->key_id);
		values[Anum_keys_subject - 1] = PointerGetDatum(cstring_to_text_with_len(subject, subjlen));
		nulls[Anum_keys_master_version - 1] = true;
		values[Anum_keys_master_version - 1] = (Datum) 0;
		nulls[Anum_keys_wrapped_key - 1] = true;
		values[Anum_keys_wrapped_key - 1] = (Datum) 0;
		values[Anum_keys_created_at - 1] = row->created_at;
		values[Anum_keys_forgotten_at - 1] = TimestampTzGetDatum(now);
		evstore_writer_update(&w, &row->tid, values, nulls);
	}
	if (rows == NIL)
	{
		/* no key yet: remember the subject as forgotten all the same */
		int64		key_id;

		do
		{
			shred_random_bytes((uint8 *) &key_id, sizeof(key_id));
		} while (key_id == 0);
		memset(nulls, 0, sizeof(nulls));
		values[Anum_keys_key_id - 1] = Int64GetDatum(key_id);
		values[Anum_keys_subject - 1] = PointerGetDatum(cstring_to_text_with_len(subject, subjlen));
		nulls[Anum_keys_master_version - 1] = true;
		values[Anum_keys_master_version - 1] = (Datum) 0;
		nulls[Anum_keys_wrapped_key - 1] = true;
		values[Anum_keys_wrapped_key - 1] = (Datum) 0;
		values[Anum_keys_created_at - 1] = TimestampTzGetDatum(now);
		values[Anum_keys_forgotten_at - 1] = TimestampTzGetDatum(now);
		(void) evstore_writer_insert(&w, values, nulls, InvalidOid);
	}
	evstore_writer_close(&w);
	table_close(rel, NoLock);	/* held until the transaction ends */

	/*
	 * Every session drops its cached keys when this transaction commits (and
	 * this one at the end of the command).
	 */
	CacheInvalidateRelcacheByRelid(keyrel.rel);
	cache_stale = true;
	/* if this transaction rolls back, what we cache meanwhile is wrong */
	keys_changed_in_xact = true;
	PG_RETURN_BOOL(had_key);
}

PG_FUNCTION_INFO_V1(evstore_is_forgotten);

/* evstore.is_forgotten(subject text) -> boolean */
Datum
evstore_is_forgotten(PG_FUNCTION_ARGS)
{
	int			subjlen;
	char	   *subject = evstore_text_arg(fcinfo, 0, "subject", &subjlen);
	Relation	rel;
	List	   *rows;
	ListCell   *lc;
	List	   *dead_ids = NIL;
	bool		any_forgotten = false;
	bool		live = false;

	shred_begin_call();
	rel = table_open(keyrel.rel, AccessShareLock);
	rows = scan_key_rows(rel, true, subject, subjlen, 0);
	table_close(rel, AccessShareLock);
	foreach(lc, rows)
	{
		KeyRow	   *row = lfirst(lc);

		if (row->forgotten)
		{
			any_forgotten = true;
			dead_ids = lappend(dead_ids, row);
		}
	}
	foreach(lc, rows)
	{
		KeyRow	   *row = lfirst(lc);
		ListCell   *lc2;
		bool		dead = row->forgotten;

		foreach(lc2, dead_ids)
			if (((KeyRow *) lfirst(lc2))->key_id == row->key_id)
				dead = true;
		if (!dead)
			live = true;
	}
	PG_RETURN_BOOL(any_forgotten && !live);
}

/*
 * rotate_master_key() reads the key table in chunks of this many rows to
 * re-wrap, and re-wraps each row in a memory context of its own, so that its
 * memory does not grow with the number of keys.
 */
#define ROTATE_CHUNK_ROWS	1024

/* Re-wrap one key row under master key version target. */
static void
rotate_one(EvstoreWriter *w, KeyRow *row, int32 target, uint8 *key)
{
	Datum		values[Natts_keys];
	bool		nulls[Natts_keys];

	shred_unwrap_key(row->wrapped, row->master_version, row->key_id,
					 row->subject, row->subjlen, key);
	memset(nulls, 0, sizeof(nulls));
	values[Anum_keys_key_id - 1] = Int64GetDatum(row->key_id);
	values[Anum_keys_subject - 1] = PointerGetDatum(cstring_to_text_with_len(row->subject, row->subjlen));
	values[Anum_keys_master_version - 1] = Int32GetDatum(target);
	values[Anum_keys_wrapped_key - 1] =
		PointerGetDatum(shred_wrap_key(key, target, row->key_id,
									   row->subject, row->subjlen));
	shred_wipe(key, KEY_LEN);
	values[Anum_keys_created_at - 1] = row->created_at;
	nulls[Anum_keys_forgotten_at - 1] = true;
	values[Anum_keys_forgotten_at - 1] = (Datum) 0;
	evstore_writer_update(w, &row->tid, values, nulls);
}

PG_FUNCTION_INFO_V1(evstore_rotate_master_key);

/* evstore.rotate_master_key() -> bigint */
Datum
evstore_rotate_master_key(PG_FUNCTION_ARGS)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	EvstoreWriter w;
	KeyRow	   *chunk;
	MemoryContext chunk_cxt;
	MemoryContext row_cxt;
	MemoryContext oldcxt;
	uint8		key[KEY_LEN];
	volatile int64 count = 0;
	int32		target;

	shred_begin_call();
	/* read the key source afresh: a new version may just have been added */
	shred_wipe_master_keys();
	shred_load_master_keys();
	target = shred_current_master_version;

	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "evstore rotate_master_key chunk",
									  ALLOCSET_DEFAULT_SIZES);
	row_cxt = AllocSetContextCreate(CurrentMemoryContext,
									"evstore rotate_master_key row",
									ALLOCSET_DEFAULT_SIZES);
	chunk = palloc(sizeof(KeyRow) * ROTATE_CHUNK_ROWS);

	/* keep key creation and forget() out while we re-wrap */
	rel = table_open(keyrel.rel, ShareRowExclusiveLock);
	slot = table_slot_create(rel, NULL);

	/*
	 * One scan with SnapshotSelf: the rows this call re-wraps are updated
	 * while the scan goes on; their old versions are then invisible to it,
	 * and the new ones (which it may meet further on) are wrapped under
	 * target already, so each key is re-wrapped once.
	 */
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	evstore_writer_open(&w, rel);
	PG_TRY();
	{
		bool		more = true;

		while (more)
		{
			int			n = 0;

			/* the next chunk of rows to re-wrap */
			MemoryContextReset(chunk_cxt);
			oldcxt = MemoryContextSwitchTo(chunk_cxt);
			while (n < ROTATE_CHUNK_ROWS &&
				   (more = table_scan_getnextslot(scan, ForwardScanDirection, slot)))
			{
				bool		version_null,
							wrapped_null,
							forgotten_null;
				Datum		version;

				CHECK_FOR_INTERRUPTS();
				/* skip forgotten and current rows without copying them */
				version = slot_getattr(slot, Anum_keys_master_version, &version_null);
				(void) slot_getattr(slot, Anum_keys_wrapped_key, &wrapped_null);
				(void) slot_getattr(slot, Anum_keys_forgotten_at, &forgotten_null);
				if (wrapped_null || !forgotten_null ||
					(!version_null && DatumGetInt32(version) == target))
					continue;
				fill_key_row(slot, &chunk[n]);
				n++;
			}
			MemoryContextSwitchTo(oldcxt);

			/* re-wrap them, one row's memory at a time */
			for (int i = 0; i < n; i++)
			{
				CHECK_FOR_INTERRUPTS();
				oldcxt = MemoryContextSwitchTo(row_cxt);
				rotate_one(&w, &chunk[i], target, key);
				MemoryContextSwitchTo(oldcxt);
				MemoryContextReset(row_cxt);
				ResetPerTupleExprContext(w.estate);
				count++;
			}
		}
	}
	PG_FINALLY();
	{
		/* an unwrapped data key must not stay on the stack after an error */
		shred_wipe(key, KEY_LEN);
	}
	PG_END_TRY();
	evstore_writer_close(&w);
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);	/* held until the transaction ends */
	MemoryContextDelete(row_cxt);
	MemoryContextDelete(chunk_cxt);
	pfree(chunk);
	PG_RETURN_INT64(count);
}
