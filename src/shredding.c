/*-------------------------------------------------------------------------
 *
 * shredding.c
 *	  Crypto-shredding (forgettable payloads, SPEC section 8).
 *
 * Selected fields of a jsonb document are replaced by a marker object
 * {"$evstore_enc": "<base64>"} holding the field's JSON text encrypted with
 * AES-256-GCM under a data key that belongs to one data subject.  Data keys
 * live in evstore.subject_keys, only ever wrapped (AES-256-GCM again) under
 * a master key that comes from a file or a command outside SQL.  Forgetting
 * a subject deletes its wrapped key; the ciphertext stays where it is and
 * reads as JSON null from then on.  docs/shredding.md has the byte formats
 * and the threat model.
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

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hashfn.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* The marker object's only key */
#define MARKER_KEY			"$evstore_enc"
#define MARKER_KEY_LEN		(sizeof(MARKER_KEY) - 1)

/* Ciphertext format, version 1: ver(1) | key id(8, big-endian) | nonce(12) | ct | tag(16) */
#define ENC_VERSION			1
#define ENC_HEADER_LEN		(1 + KEYID_LEN)
#define ENC_OVERHEAD		(ENC_HEADER_LEN + NONCE_LEN + TAG_LEN)

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

/* A key handed out to one function call; wiped after each use. */
typedef struct KeyInfo
{
	int64		key_id;
	bool		forgotten;
	int			subjlen;
	const char *subject;
	uint8		key[KEY_LEN];
} KeyInfo;

static KeyInfo call_key;

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
	/* (call_key is not touched: cache_key() may flush while it is in use) */
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
	if (event == SUBXACT_EVENT_ABORT_SUB && keys_changed_in_xact)
		cache_stale = true;
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

	CacheRegisterRelcacheCallback(key_relcache_callback, (Datum) 0);
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
static void
begin_call(void)
{
	AcceptInvalidationMessages();
	shred_wipe(&call_key, sizeof(call_key));
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
	scan = index_beginscan(rel, index, SnapshotSelf, 1, 0);
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
static void
get_key_by_id(int64 key_id, KeyInfo *out)
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
static void
get_subject_key(const char *subject, int subjlen, bool allow_forgotten,
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
 * protect
 * ====================================================================== */

typedef struct ProtectCtx
{
	const char *subject;
	int			subjlen;
	bool		allow_forgotten;
	bool		have_key;
	bool		changed;
	StringInfoData pt;
} ProtectCtx;

/* Is this value a ciphertext marker?  (exactly one key, "$evstore_enc") */
static bool
is_marker(JsonbContainer *jc, JsonbValue *val)
{
	JsonbValue *v;

	if (!JsonContainerIsObject(jc))
		return false;
	v = getKeyJsonValueFromContainer(jc, MARKER_KEY, MARKER_KEY_LEN, val);
	if (v == NULL)
		return false;
	if (JsonContainerSize(jc) != 1 || v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
				 errmsg("malformed evstore ciphertext marker"),
				 errdetail("An object with the key \"%s\" must have no other key and a string value.",
						   MARKER_KEY)));
	return true;
}

static void
value_to_json(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(out,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvString:
			{
				const char *str = v->val.string.val;
				int			len = v->val.string.len;
				bool		plain = true;

				/* most strings need no escaping: copy them in one go */
				for (int i = 0; i < len; i++)
				{
					unsigned char c = (unsigned char) str[i];

					if (c < 0x20 || c == '"' || c == '\\')
					{
						plain = false;
						break;
					}
				}
				if (plain)
				{
					enlargeStringInfo(out, len + 2);
					appendStringInfoCharMacro(out, '"');
					appendBinaryStringInfo(out, str, len);
					appendStringInfoCharMacro(out, '"');
				}
				else
				{
					char	   *s = pnstrdup(str, len);

					escape_json(out, s);
					pfree(s);
				}
			}
			break;
		case jbvBinary:
			(void) JsonbToCString(out, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

static void
push_marker(JsonbParseState **ps, char *b64, int b64len)
{
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.val = MARKER_KEY;
	k.val.string.len = MARKER_KEY_LEN;
	v.type = jbvString;
	v.val.string.val = b64;
	v.val.string.len = b64len;
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(ps, WJB_KEY, &k);
	pushJsonbValue(ps, WJB_VALUE, &v);
	pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/* Standard base64 with padding, three bytes at a time; returns the length */
static int
b64_encode(const uint8 *src, int len, char *dst)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char	   *d = dst;
	int			i = 0;

	for (; i + 2 < len; i += 3)
	{
		uint32		w = ((uint32) src[i] << 16) | ((uint32) src[i + 1] << 8) | src[i + 2];

		*d++ = alphabet[(w >> 18) & 63];
		*d++ = alphabet[(w >> 12) & 63];
		*d++ = alphabet[(w >> 6) & 63];
		*d++ = alphabet[w & 63];
	}
	if (i < len)
	{
		uint32		w = (uint32) src[i] << 16;

		if (i + 1 < len)
			w |= (uint32) src[i + 1] << 8;
		*d++ = alphabet[(w >> 18) & 63];
		*d++ = alphabet[(w >> 12) & 63];
		*d++ = (i + 1 < len) ? alphabet[(w >> 6) & 63] : '=';
		*d++ = '=';
	}
	return (int) (d - dst);
}

static void
push_encrypted(ProtectCtx *ctx, JsonbValue *v, JsonbParseState **ps)
{
	int			ptlen;
	int			bloblen;
	uint8	   *blob;
	char	   *b64;
	int			b64len;

	if (!ctx->have_key)
	{
		get_subject_key(ctx->subject, ctx->subjlen, ctx->allow_forgotten, &call_key);
		ctx->have_key = true;
	}
	resetStringInfo(&ctx->pt);
	value_to_json(&ctx->pt, v);
	ptlen = ctx->pt.len;
	bloblen = ENC_OVERHEAD + ptlen;
	blob = palloc(bloblen);
	blob[0] = ENC_VERSION;
	shred_put_be64(blob + 1, (uint64) call_key.key_id);
	shred_random_nonce(blob + ENC_HEADER_LEN);
	shred_gcm_encrypt(call_key.key, blob + ENC_HEADER_LEN,
					  blob, ENC_HEADER_LEN,
					  (const uint8 *) ctx->subject, ctx->subjlen,
					  (const uint8 *) ctx->pt.data, ptlen,
					  blob + ENC_HEADER_LEN + NONCE_LEN,
					  blob + ENC_HEADER_LEN + NONCE_LEN + ptlen);
	shred_wipe(ctx->pt.data, ctx->pt.len);
	b64 = palloc(pg_b64_enc_len(bloblen) + 1);
	b64len = b64_encode(blob, bloblen, b64);
	pfree(blob);
	push_marker(ps, b64, b64len);
	ctx->changed = true;
}

/*
 * Copy a jsonb container into *ps, value by value.  For each object value
 * and array element, visit() may push something else in its place (and
 * returns true), or returns false to have the value copied unchanged.  key
 * is the value's key (NULL for an array element), index the element's
 * position.  Returns what the container's closing token returned.
 */
typedef bool (*JsonbVisitor) (void *arg, JsonbIteratorToken tok,
							  const JsonbValue *key, int index,
							  JsonbValue *v, JsonbParseState **ps);

static JsonbValue *
copy_container(JsonbContainer *jc, JsonbParseState **ps,
			   JsonbVisitor visit, void *arg)
{
	JsonbIterator *it = JsonbIteratorInit(jc);
	JsonbValue	v;
	JsonbValue	key;
	JsonbValue *result = NULL;
	JsonbIteratorToken tok;
	int			index = 0;

	check_stack_depth();
	memset(&key, 0, sizeof(key));
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				pushJsonbValue(ps, tok, NULL);
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				result = pushJsonbValue(ps, tok, NULL);
				break;
			case WJB_KEY:
				key = v;
				pushJsonbValue(ps, WJB_KEY, &v);
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!visit(arg, tok, tok == WJB_VALUE ? &key : NULL, index, &v, ps))
					pushJsonbValue(ps, tok, &v);
				if (tok == WJB_ELEM)
					index++;
				break;
			default:
				elog(ERROR, "unexpected jsonb iterator token %d", (int) tok);
		}
	}
	return result;
}

/* protect(): one level of the walk, with the paths that reach it */
typedef struct ProtectLevel
{
	ProtectCtx *ctx;
	List	   *set;
} ProtectLevel;

static bool
protect_visit(void *arg, JsonbIteratorToken tok, const JsonbValue *key,
			  int index, JsonbValue *v, JsonbParseState **ps)
{
	ProtectLevel *level = (ProtectLevel *) arg;
	bool		terminal;
	bool		done = true;
	JsonbValue	mv;
	List	   *matched = shred_path_match(level->set, key, index, &terminal);

	if (matched == NIL)
		done = false;
	else if (v->type == jbvBinary && is_marker(v->val.binary.data, &mv))
		done = false;			/* already protected */
	else if (terminal)
		push_encrypted(level->ctx, v, ps);
	else if (v->type == jbvBinary)
	{
		ProtectLevel inner = {level->ctx, matched};

		(void) copy_container(v->val.binary.data, ps, protect_visit, &inner);
	}
	else
		done = false;
	list_free(matched);
	return done;
}

static JsonbValue *
protect_container(ProtectCtx *ctx, JsonbContainer *jc, List *set,
				  JsonbParseState **ps)
{
	ProtectLevel level = {ctx, set};

	return copy_container(jc, ps, protect_visit, &level);
}

static Datum
protect_internal(FunctionCallInfo fcinfo, bool allow_forgotten)
{
	Jsonb	   *data;
	int			subjlen;
	char	   *subject;
	ArrayType  *paths;
	int			nelems;
	PathNode   *root;
	ProtectCtx	ctx;
	JsonbParseState *ps = NULL;
	JsonbValue *result;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	subject = evstore_text_arg(fcinfo, 1, "subject", &subjlen);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("paths must not be null")));
	paths = PG_GETARG_ARRAYTYPE_P(2);
	root = shred_parse_paths(fcinfo, paths, &nelems);

	data = PG_GETARG_JSONB_P(0);
	if (nelems == 0 || JB_ROOT_IS_SCALAR(data))
		PG_RETURN_JSONB_P(data);

	begin_call();
	memset(&ctx, 0, sizeof(ctx));
	ctx.subject = subject;
	ctx.subjlen = subjlen;
	ctx.allow_forgotten = allow_forgotten;
	initStringInfo(&ctx.pt);

	result = protect_container(&ctx, &data->root, list_make1(root), &ps);
	shred_wipe(&call_key, sizeof(call_key));
	shred_wipe(ctx.pt.data, ctx.pt.maxlen);
	if (!ctx.changed)
		PG_RETURN_JSONB_P(data);
	/* the root's END token returned the finished document */
	Assert(ps == NULL && result != NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}

/* ======================================================================
 * reveal
 * ====================================================================== */

typedef struct RevealCtx
{
	Jsonb	   *placeholder;
} RevealCtx;

static void
malformed(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
			 errmsg("%s", msg),
			 detail ? errdetail("%s", detail) : 0));
}

/* The value of a Jsonb document as one JsonbValue (scalar or binary). */
static void
jsonb_as_value(Jsonb *jb, JsonbValue *v)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, v))
			elog(ERROR, "could not extract jsonb scalar");
	}
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/*
 * Decrypt one marker's string into *out; the placeholder when the key is
 * forgotten.
 */
static void
decrypt_marker(RevealCtx *ctx, const char *b64, int b64len, JsonbValue *out)
{
	int			maxlen = pg_b64_dec_len(b64len);
	uint8	   *blob = palloc(maxlen + 1);
	int			n;
	int64		key_id;
	int			ptlen;
	char	   *pt;
	bool		ok;

	n = pg_b64_decode(b64, b64len, (char *) blob, maxlen);
	if (n < 0)
		malformed("invalid base64 in evstore ciphertext",
				  "The value of \"" MARKER_KEY "\" is not valid base64.");
	if (n >= 1 && blob[0] != ENC_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
				 errmsg("unsupported evstore ciphertext version %d", blob[0]),
				 errdetail("This version of evstore reads ciphertext version %d.", ENC_VERSION)));
	if (n < ENC_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
				 errmsg("evstore ciphertext is truncated"),
				 errdetail("It is %d bytes long; the smallest ciphertext is %d bytes.",
						   n, ENC_OVERHEAD)));
	key_id = (int64) shred_get_be64(blob + 1);
	get_key_by_id(key_id, &call_key);
	if (call_key.forgotten)
	{
		pfree(blob);
		jsonb_as_value(ctx->placeholder, out);
		return;
	}
	ptlen = n - ENC_OVERHEAD;
	pt = palloc(ptlen + 1);
	ok = shred_gcm_decrypt(call_key.key, blob + ENC_HEADER_LEN,
						   blob, ENC_HEADER_LEN,
						   (const uint8 *) call_key.subject, call_key.subjlen,
						   blob + ENC_HEADER_LEN + NONCE_LEN, ptlen,
						   blob + ENC_HEADER_LEN + NONCE_LEN + ptlen,
						   (uint8 *) pt);
	shred_wipe(call_key.key, KEY_LEN);
	pfree(blob);
	if (!ok)
	{
		shred_wipe(pt, ptlen);
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_CIPHERTEXT_AUTH_FAILED),
				 errmsg("evstore ciphertext failed authentication"),
				 errdetail("The ciphertext, its nonce, its tag or its key id was altered, or it was made by another key."),
				 errhint("Ciphertext must be stored exactly as evstore.protect() returned it.")));
	}
	pt[ptlen] = '\0';

	/*
	 * Fast path for the commonest case, a string without escapes: the JSON
	 * text is exactly '"' value '"'.  (The plaintext was authenticated, so it
	 * is what protect() wrote: valid UTF-8 with control characters escaped.)
	 */
	if (ptlen >= 2 && pt[0] == '"' && pt[ptlen - 1] == '"' &&
		memchr(pt + 1, '\\', ptlen - 2) == NULL &&
		memchr(pt + 1, '"', ptlen - 2) == NULL)
	{
		out->type = jbvString;
		out->val.string.val = pt + 1;
		out->val.string.len = ptlen - 2;
		return;
	}
	jsonb_as_value(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pt))), out);
}

static JsonbValue *reveal_container(RevealCtx *ctx, JsonbContainer *jc,
									JsonbParseState **ps);

static bool
reveal_visit(void *arg, JsonbIteratorToken tok, const JsonbValue *key,
			 int index, JsonbValue *v, JsonbParseState **ps)
{
	RevealCtx  *ctx = (RevealCtx *) arg;
	JsonbValue	mv;
	JsonbValue	dv;

	if (v->type != jbvBinary)
		return false;
	if (!is_marker(v->val.binary.data, &mv))
	{
		(void) reveal_container(ctx, v->val.binary.data, ps);
		return true;
	}
	decrypt_marker(ctx, mv.val.string.val, mv.val.string.len, &dv);
	/* a protected object may itself hold protected fields */
	if (dv.type == jbvBinary &&
		memmem(dv.val.binary.data, dv.val.binary.len,
			   MARKER_KEY, MARKER_KEY_LEN) != NULL)
		(void) reveal_container(ctx, dv.val.binary.data, ps);
	else
		pushJsonbValue(ps, tok, &dv);
	return true;
}

static JsonbValue *
reveal_container(RevealCtx *ctx, JsonbContainer *jc, JsonbParseState **ps)
{
	return copy_container(jc, ps, reveal_visit, ctx);
}

/*
 * Can the document contain a marker?  Jsonb stores object keys verbatim, so
 * a document whose bytes do not contain the marker key has none.
 */
static bool
has_marker_key(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
		return false;
	return memmem(VARDATA(jb), VARSIZE(jb) - VARHDRSZ,
				  MARKER_KEY, MARKER_KEY_LEN) != NULL;
}

static Jsonb *
json_null(void)
{
	JsonbValue	v;

	v.type = jbvNull;
	return JsonbValueToJsonb(&v);
}

static Datum
reveal_internal(FunctionCallInfo fcinfo, Jsonb *placeholder)
{
	Jsonb	   *data;
	RevealCtx	ctx;
	JsonbParseState *ps = NULL;
	JsonbValue	mv;
	Jsonb	   *res;

	data = PG_GETARG_JSONB_P(0);
	if (!has_marker_key(data))
		PG_RETURN_JSONB_P(data);

	begin_call();
	ctx.placeholder = placeholder ? placeholder : json_null();
	if (is_marker(&data->root, &mv))
	{
		JsonbValue	dv;

		decrypt_marker(&ctx, mv.val.string.val, mv.val.string.len, &dv);
		if (dv.type == jbvBinary &&
			memmem(dv.val.binary.data, dv.val.binary.len,
				   MARKER_KEY, MARKER_KEY_LEN) != NULL)
		{
			res = JsonbValueToJsonb(reveal_container(&ctx, dv.val.binary.data, &ps));
		}
		else
			res = JsonbValueToJsonb(&dv);
	}
	else
	{
		JsonbValue *result = reveal_container(&ctx, &data->root, &ps);

		Assert(ps == NULL && result != NULL);
		res = JsonbValueToJsonb(result);
	}
	shred_wipe(&call_key, sizeof(call_key));
	PG_RETURN_JSONB_P(res);
}

/* ======================================================================
 * SQL-callable functions
 * ====================================================================== */

PG_FUNCTION_INFO_V1(evstore_protect);

/* evstore.protect(data jsonb, subject text, paths text[]) -> jsonb */
Datum
evstore_protect(PG_FUNCTION_ARGS)
{
	return protect_internal(fcinfo, false);
}

PG_FUNCTION_INFO_V1(evstore_protect_allow);

/* evstore.protect(data jsonb, subject text, paths text[], allow_forgotten boolean) -> jsonb */
Datum
evstore_protect_allow(PG_FUNCTION_ARGS)
{
	bool		allow = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);

	return protect_internal(fcinfo, allow);
}

PG_FUNCTION_INFO_V1(evstore_reveal);

/* evstore.reveal(data jsonb) -> jsonb */
Datum
evstore_reveal(PG_FUNCTION_ARGS)
{
	return reveal_internal(fcinfo, NULL);
}

PG_FUNCTION_INFO_V1(evstore_reveal_placeholder);

/* evstore.reveal(data jsonb, placeholder jsonb) -> jsonb */
Datum
evstore_reveal_placeholder(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	return reveal_internal(fcinfo, PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1));
}

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

	begin_call();
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

	begin_call();
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

PG_FUNCTION_INFO_V1(evstore_rotate_master_key);

/* evstore.rotate_master_key() -> bigint */
Datum
evstore_rotate_master_key(PG_FUNCTION_ARGS)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	List	   *rows = NIL;
	ListCell   *lc;
	EvstoreWriter w;
	int64		count = 0;
	int32		target;

	begin_call();
	/* read the key source afresh: a new version may just have been added */
	shred_wipe_master_keys();
	shred_load_master_keys();
	target = shred_current_master_version;

	/* keep key creation and forget() out while we re-wrap */
	rel = table_open(keyrel.rel, ShareRowExclusiveLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, SnapshotSelf, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		KeyRow	   *row = palloc0(sizeof(KeyRow));

		fill_key_row(slot, row);
		if (!row->forgotten && row->master_version != target)
			rows = lappend(rows, row);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	evstore_writer_open(&w, rel);
	foreach(lc, rows)
	{
		KeyRow	   *row = lfirst(lc);
		uint8		key[KEY_LEN];
		Datum		values[Natts_keys];
		bool		nulls[Natts_keys];

		CHECK_FOR_INTERRUPTS();
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
		evstore_writer_update(&w, &row->tid, values, nulls);
		count++;
	}
	evstore_writer_close(&w);
	table_close(rel, NoLock);	/* held until the transaction ends */
	PG_RETURN_INT64(count);
}
