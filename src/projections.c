/*-------------------------------------------------------------------------
 *
 * projections.c
 *	  Projection triggers: read models maintained inside the appending
 *	  transaction (SPEC section 6, docs/projections.md).
 *
 * Dispatch does not use a trigger on evstore.events: it runs from
 * evstore_event_hook, which append.c calls for each event it inserts.  Rows
 * loaded by COPY (pg_restore) therefore never re-run projections whose read
 * models are restored anyway.
 *
 * Each backend caches the projection catalog (evstore.projections_catalog)
 * with its filters pre-parsed, so an event that no projection wants costs a
 * few string comparisons.  The cache is dropped on a relcache invalidation
 * of the catalog table (sent explicitly by create/drop/rebuild) or of a
 * sync projection's target table, and on any pg_proc change (handlers).
 *
 * Two kinds of projection:
 *	 handler  a function taking one evstore.events row;
 *	 sync	  evstore upserts the event's data attributes into same-named
 *			  columns of a target table, or deletes the row for some event
 *			  types.  Upserts go directly through the table AM
 *			  (projections_upsert.c) when the target allows; otherwise, and
 *			  for deletes, through saved SPI plans built on first use.
 *
 * Both run as the role that created the projection.  Statistics (events
 * applied by committed transactions, last position, last error) and
 * rebuild progress live in shared memory: counting them in a table would
 * make every append write a shared row.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* columns of evstore.projections_catalog */
enum
{
	Anum_pc_name = 1,
	Anum_pc_kind,
	Anum_pc_owner,
	Anum_pc_handler,
	Anum_pc_reset_function,
	Anum_pc_target,
	Anum_pc_key_column,
	Anum_pc_key_source,
	Anum_pc_upsert_types,
	Anum_pc_delete_types,
	Anum_pc_column_map,
	Anum_pc_categories,
	Anum_pc_event_types,
	Anum_pc_created_at,
	Anum_pc_rebuilt_at,
	Natts_pc = Anum_pc_rebuilt_at
};

#define PROJ_MAX_SLOTS		256
#define PROJ_ERRLEN			256
#define PROJ_NAME_MAX		(NAMEDATALEN - 1)
#define PROJ_MAX_SHAPES		16	/* upsert plans kept per sync projection */

/* ---------------------------------------------------------------------
 * Shared memory: statistics and rebuild progress
 * ---------------------------------------------------------------------
 */
typedef struct ProjStatSlot
{
	Oid			dbid;			/* InvalidOid: free */
	char		name[NAMEDATALEN];
	pg_atomic_uint64 processed;
	pg_atomic_uint64 last_pos;
	/* the rest is protected by the lock */
	char		last_error[PROJ_ERRLEN];
	int64		last_error_pos;
	TimestampTz last_error_at;
	int			rebuild_pid;
	TimestampTz rebuild_started;
	int64		rebuild_replayed;
	int64		rebuild_position;
	int64		rebuild_target;
} ProjStatSlot;

typedef struct ProjShared
{
	LWLock	   *lock;
	ProjStatSlot slots[PROJ_MAX_SLOTS];
} ProjShared;

static ProjShared *proj_shared = NULL;
static evstore_event_hook_type prev_event_hook = NULL;
static evstore_batch_end_hook_type prev_batch_end_hook = NULL;

/* ---------------------------------------------------------------------
 * Backend-local cache of the catalog
 * ---------------------------------------------------------------------
 */
typedef struct StrList
{
	int			n;				/* -1: no filter (everything matches) */
	char	  **s;
	int		   *len;
} StrList;

typedef struct SyncColumn
{
	char	   *colname;
	char	   *attname;		/* data attribute feeding it */
	int			attlen;
	AttrNumber	attnum;
	Oid			typid;
	int32		typmod;
	Oid			typioparam;
	FmgrInfo	infunc;
} SyncColumn;

typedef struct Projection
{
	char	   *name;
	bool		is_sync;
	Oid			owner;
	StrList		categories;
	StrList		event_types;	/* handler filter; sync: upsert types */
	StrList		delete_types;	/* sync only */
	char	   *broken;			/* why it cannot run, or NULL */

	/* handler */
	Oid			handler;
	Oid			reset_fn;
	FmgrInfo	flinfo;

	/* sync: definition */
	Oid			target;
	char	   *key_column;
	bool		key_is_stream;
	int			npath;
	char	  **path;
	Jsonb	   *column_map;

	/* sync: prepared on first use; one upsert plan per set of columns */
	bool		prepared;
	char	   *qrel;			/* quoted, qualified target name */
	int			nshapes;
	int			next_evict;
	Bitmapset  *shape_mask[PROJ_MAX_SHAPES];
	SPIPlanPtr	shape_plan[PROJ_MAX_SHAPES];
	SPIPlanPtr	delete_plan;
	SyncColumn	keycol;
	int			ncols;
	SyncColumn *cols;
	Datum	   *values;
	char	   *nulls;

	/*
	 * sync: the upsert without SPI (projections_upsert.c), NULL when the
	 * target needs the SPI plans.  fast_stale: the target changed since
	 * (a relcache invalidation arrived while the cache is pinned by a
	 * dispatch); the SPI plans revalidate themselves, so they take over.
	 */
	ProjUpsert *fast;
	bool		fast_stale;
	AttrNumber *fast_atts;
	bool	   *fast_nulls;

	/* pending statistics entry of this transaction */
	int			pend_idx;
	int			pend_level;
	uint64		pend_gen;
} Projection;

typedef struct ProjCache
{
	bool		valid;
	MemoryContext cxt;
	Oid			catalog_rel;	/* InvalidOid when the table does not exist */
	int			n;
	Projection *projs;
} ProjCache;

static ProjCache cache;
static List *old_plans = NIL;	/* plans of dropped caches, freed when safe */
static int	dispatch_depth = 0;
static MemoryContext event_cxt = NULL;

/* pending statistics of the current transaction */
typedef struct PendingStat
{
	char		name[NAMEDATALEN];
	int			level;			/* 0: dead */
	bool		reset;
	int64		count;
	int64		maxpos;
} PendingStat;

static PendingStat *pending = NULL;
static int	npending = 0;
static int	maxpending = 0;
static uint64 pending_gen = 1;
static bool rebuilding = false; /* this backend owns a rebuild_pid slot */

/* error context */
typedef struct ApplyContext
{
	Projection *p;
	int64		position;
	const char *stream_id;
	int64		version;
	const char *event_type;
	bool		rebuild;
} ApplyContext;

typedef struct ConvertContext
{
	const char *attname;
	SyncColumn *col;
} ConvertContext;

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */

/* What RequestAddinShmemSpace needs for the statistics. */
Size
evstore_projstats_shmem_size(void)
{
	return sizeof(ProjShared);
}

/* From the shmem_request_hook: the space and the lock. */
void
evstore_projstats_shmem_request(void)
{
	RequestAddinShmemSpace(evstore_projstats_shmem_size());
	RequestNamedLWLockTranche("evstore projections", 1);
}

/* From the shmem_startup_hook: attach to (or create) the statistics. */
void
evstore_projstats_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	proj_shared = ShmemInitStruct("evstore projections", sizeof(ProjShared), &found);
	if (!found)
	{
		memset(proj_shared, 0, sizeof(ProjShared));
		proj_shared->lock = &(GetNamedLWLockTranche("evstore projections"))->lock;
		for (int i = 0; i < PROJ_MAX_SLOTS; i++)
		{
			pg_atomic_init_u64(&proj_shared->slots[i].processed, 0);
			pg_atomic_init_u64(&proj_shared->slots[i].last_pos, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * TEMPORARY: replaced by shmem.c at merge.  Until then the statistics
 * register their own shared-memory hooks, as before the split.
 */
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
projstats_shmem_request_tmp(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	evstore_projstats_shmem_request();
}

static void
projstats_shmem_startup_tmp(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	evstore_projstats_shmem_startup();
}

/* TEMPORARY: replaced by shmem.c at merge */
void
evstore_projstats_register_hooks_tmp(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = projstats_shmem_request_tmp;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = projstats_shmem_startup_tmp;
}

/* Slot of a projection of this database; caller holds the lock. */
static ProjStatSlot *
find_slot(const char *name, bool alloc)
{
	ProjStatSlot *free_slot = NULL;

	if (proj_shared == NULL)
		return NULL;
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
	{
		ProjStatSlot *s = &proj_shared->slots[i];

		if (s->dbid == MyDatabaseId && strcmp(s->name, name) == 0)
			return s;
		if (s->dbid == InvalidOid && free_slot == NULL)
			free_slot = s;
	}
	if (!alloc || free_slot == NULL)
		return NULL;
	free_slot->dbid = MyDatabaseId;
	strlcpy(free_slot->name, name, NAMEDATALEN);
	pg_atomic_write_u64(&free_slot->processed, 0);
	pg_atomic_write_u64(&free_slot->last_pos, 0);
	free_slot->last_error[0] = '\0';
	free_slot->last_error_pos = 0;
	free_slot->last_error_at = 0;
	free_slot->rebuild_pid = 0;
	return free_slot;
}

/* Forget a projection's statistics (create and drop). */
static void
reset_slot(const char *name)
{
	ProjStatSlot *s;

	if (proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	s = find_slot(name, false);
	if (s)
		s->dbid = InvalidOid;
	LWLockRelease(proj_shared->lock);
}

static void
record_error(const char *name, int64 position, const char *message)
{
	ProjStatSlot *s;

	if (proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	s = find_slot(name, true);
	if (s)
	{
		strlcpy(s->last_error, message, PROJ_ERRLEN);
		s->last_error_pos = position;
		s->last_error_at = GetCurrentTimestamp();
	}
	LWLockRelease(proj_shared->lock);
}

static void
atomic_max_u64(pg_atomic_uint64 *v, uint64 x)
{
	uint64		cur = pg_atomic_read_u64(v);

	while (cur < x && !pg_atomic_compare_exchange_u64(v, &cur, x))
		;
}

/* ---------------------------------------------------------------------
 * Pending statistics: counted per transaction, published at commit
 * ---------------------------------------------------------------------
 */
static PendingStat *
pending_entry(Projection *p)
{
	int			level = GetCurrentTransactionNestLevel();
	PendingStat *e;

	if (p->pend_gen == pending_gen && p->pend_level == level)
		return &pending[p->pend_idx];

	for (int i = 0; i < npending; i++)
	{
		if (pending[i].level == level && strcmp(pending[i].name, p->name) == 0)
		{
			p->pend_idx = i;
			p->pend_level = level;
			p->pend_gen = pending_gen;
			return &pending[i];
		}
	}
	if (npending == maxpending)
	{
		maxpending = maxpending ? maxpending * 2 : 16;
		if (pending == NULL)
			pending = MemoryContextAlloc(TopMemoryContext, maxpending * sizeof(PendingStat));
		else
			pending = repalloc(pending, maxpending * sizeof(PendingStat));
	}
	e = &pending[npending];
	strlcpy(e->name, p->name, NAMEDATALEN);
	e->level = level;
	e->reset = false;
	e->count = 0;
	e->maxpos = 0;
	p->pend_idx = npending++;
	p->pend_level = level;
	p->pend_gen = pending_gen;
	return e;
}

static inline void
pending_add(Projection *p, int64 position)
{
	PendingStat *e = pending_entry(p);

	e->count++;
	if (position > e->maxpos)
		e->maxpos = position;
}

static void
pending_publish(void)
{
	if (proj_shared == NULL || npending == 0)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < npending; i++)
	{
		PendingStat *e = &pending[i];
		ProjStatSlot *s;

		if (e->level == 0)
			continue;
		s = find_slot(e->name, true);
		if (s == NULL)
			continue;
		if (e->reset)
		{
			pg_atomic_write_u64(&s->processed, 0);
			pg_atomic_write_u64(&s->last_pos, 0);
		}
		pg_atomic_fetch_add_u64(&s->processed, e->count);
		atomic_max_u64(&s->last_pos, e->maxpos);
	}
	LWLockRelease(proj_shared->lock);
}

/* The transaction ended (and published at commit): its entries are gone. */
static void
proj_pending_discard(void)
{
	npending = 0;
	pending_gen++;
}

/* A subtransaction ended: its entries die (abort) or join the parent's. */
static void
proj_pending_subxact_end(SubXactEvent event)
{
	int			level;

	level = GetCurrentTransactionNestLevel();
	for (int i = 0; i < npending; i++)
	{
		if (pending[i].level < level)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
			pending[i].level = 0;
		else
			pending[i].level = level - 1;
	}
	pending_gen++;
}

/* A rebuild starts: show its progress; NULL without shared memory. */
static ProjStatSlot *
proj_rebuild_progress_start(const char *name, int64 target_pos)
{
	ProjStatSlot *ps = NULL;

	if (proj_shared)
	{
		LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
		ps = find_slot(name, true);
		if (ps)
		{
			ps->rebuild_pid = MyProcPid;
			ps->rebuild_started = GetCurrentTimestamp();
			ps->rebuild_replayed = 0;
			ps->rebuild_position = 0;
			ps->rebuild_target = target_pos;
			rebuilding = true;
		}
		LWLockRelease(proj_shared->lock);
	}
	return ps;
}

static void
rebuild_progress_clear(void)
{
	if (!rebuilding || proj_shared == NULL)
		return;
	LWLockAcquire(proj_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
		if (proj_shared->slots[i].rebuild_pid == MyProcPid)
			proj_shared->slots[i].rebuild_pid = 0;
	LWLockRelease(proj_shared->lock);
	rebuilding = false;
}

/* Drop the direct upserts' executor states of an aborting (sub)transaction. */
static void
upsert_states_forget(SubTransactionId subid)
{
	for (int i = 0; i < cache.n; i++)
		if (cache.projs[i].fast)
			proj_upsert_forget(cache.projs[i].fast, subid);
}

/* evstore_batch_end_hook: an append is done, release the executor states */
static void
projections_batch_end(void)
{
	if (prev_batch_end_hook)
		prev_batch_end_hook();
	for (int i = 0; i < cache.n; i++)
		if (cache.projs[i].fast)
			proj_upsert_release(cache.projs[i].fast);
}

static void
proj_xact_callback(XactEvent event, void *arg)
{
	/*
	 * The direct upserts' executor states are released at the end of each
	 * append; after an error they are only forgotten (the abort frees them).
	 */
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			upsert_states_forget(InvalidSubTransactionId);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			pending_publish();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			upsert_states_forget(InvalidSubTransactionId);
			proj_pending_discard();
			dispatch_depth = 0;
			rebuild_progress_clear();
			break;
		default:
			break;
	}
}

static void
proj_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		upsert_states_forget(mySubid);
	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	proj_pending_subxact_end(event);
}

/* ---------------------------------------------------------------------
 * Cache
 * ---------------------------------------------------------------------
 */
static void
proj_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cache.catalog_rel)
		cache.valid = false;
	if (relid == cache.catalog_rel && relid != InvalidOid)
		return;
	/* also while the cache is invalid but still in use by a dispatch */
	for (int i = 0; i < cache.n; i++)
		if (cache.projs[i].is_sync &&
			(relid == InvalidOid || cache.projs[i].target == relid))
		{
			cache.valid = false;
			cache.projs[i].fast_stale = true;
		}
}

static void
proj_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cache.valid = false;
}

static void
strlist_from_array(StrList *l, Datum d, bool isnull)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	l->n = -1;
	if (isnull)
		return;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	l->n = 0;
	l->s = palloc(sizeof(char *) * Max(n, 1));
	l->len = palloc(sizeof(int) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (enulls[i])
			continue;
		l->s[l->n] = TextDatumGetCString(elems[i]);
		l->len[l->n] = strlen(l->s[l->n]);
		l->n++;
	}
}

static inline bool
strlist_contains(const StrList *l, const char *s, int len)
{
	for (int i = 0; i < l->n; i++)
		if (l->len[i] == len && memcmp(l->s[i], s, len) == 0)
			return true;
	return false;
}

/* key_source: 'stream_id' or '$.a.b'; returns false when malformed */
static bool
parse_key_source(const char *src, bool *is_stream, int *npath, char ***path)
{
	const char *p;
	List	   *parts = NIL;
	int			i = 0;
	ListCell   *lc;

	if (strcmp(src, "stream_id") == 0)
	{
		*is_stream = true;
		*npath = 0;
		*path = NULL;
		return true;
	}
	*is_stream = false;
	if (strncmp(src, "$.", 2) != 0)
		return false;
	p = src + 2;
	for (;;)
	{
		const char *dot = strchr(p, '.');
		int			len = dot ? (int) (dot - p) : (int) strlen(p);

		if (len == 0)
			return false;
		parts = lappend(parts, pnstrdup(p, len));
		if (!dot)
			break;
		p = dot + 1;
	}
	*npath = list_length(parts);
	*path = palloc(sizeof(char *) * *npath);
	foreach(lc, parts)
		(*path)[i++] = lfirst(lc);
	return true;
}

static char *
broken_msg(const char *fmt, const char *arg)
{
	return psprintf(fmt, arg);
}

static void
load_row(Projection *p, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		d;
	char	   *kind;

	memset(p, 0, sizeof(Projection));
	/* name, kind and owner are NOT NULL in the catalog */
	p->name = TextDatumGetCString(slot_getattr(slot, Anum_pc_name, &isnull));
	kind = TextDatumGetCString(slot_getattr(slot, Anum_pc_kind, &isnull));
	p->is_sync = strcmp(kind, "sync") == 0;
	p->owner = DatumGetObjectId(slot_getattr(slot, Anum_pc_owner, &isnull));
	d = slot_getattr(slot, Anum_pc_categories, &isnull);
	strlist_from_array(&p->categories, d, isnull);

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(p->owner)))
		p->broken = broken_msg("the role that owned projection \"%s\" no longer exists", p->name);

	if (!p->is_sync)
	{
		d = slot_getattr(slot, Anum_pc_event_types, &isnull);
		strlist_from_array(&p->event_types, d, isnull);
		p->delete_types.n = 0;
		for (int k = 0; k < 2; k++)
		{
			int			att = k == 0 ? Anum_pc_handler : Anum_pc_reset_function;
			Oid			fn = InvalidOid;

			d = slot_getattr(slot, att, &isnull);
			if (!isnull)
			{
				LOCAL_FCINFO(fc, 1);
				Datum		r;

				InitFunctionCallInfoData(*fc, NULL, 1, InvalidOid, NULL, NULL);
				fc->args[0].value = d;
				fc->args[0].isnull = false;
				r = to_regprocedure(fc);
				if (fc->isnull)
				{
					if (p->broken == NULL)
						p->broken = psprintf("function %s of projection \"%s\" no longer exists",
											 TextDatumGetCString(d), p->name);
				}
				else
					fn = DatumGetObjectId(r);
			}
			if (k == 0)
				p->handler = fn;
			else
				p->reset_fn = fn;
		}
		if (p->broken == NULL && !OidIsValid(p->handler))
			p->broken = psprintf("projection \"%s\" has no handler", p->name);
		if (p->broken == NULL && OidIsValid(p->handler))
		{
			if (pg_proc_aclcheck(p->handler, p->owner, ACL_EXECUTE) != ACLCHECK_OK)
				p->broken = psprintf("owner of projection \"%s\" may no longer execute its handler",
									 p->name);
			else
				fmgr_info_cxt(p->handler, &p->flinfo, cache.cxt);
		}
	}
	else
	{
		char	   *src;
		bool		n1,
					n2,
					n3;

		d = slot_getattr(slot, Anum_pc_upsert_types, &isnull);
		strlist_from_array(&p->event_types, d, isnull);
		d = slot_getattr(slot, Anum_pc_delete_types, &isnull);
		strlist_from_array(&p->delete_types, d, isnull);
		if (p->delete_types.n < 0)
			p->delete_types.n = 0;
		d = slot_getattr(slot, Anum_pc_target, &n1);
		p->target = n1 ? InvalidOid : DatumGetObjectId(d);
		d = slot_getattr(slot, Anum_pc_key_column, &n2);
		p->key_column = n2 ? "" : pstrdup(NameStr(*DatumGetName(d)));
		d = slot_getattr(slot, Anum_pc_key_source, &n3);
		src = n3 ? "" : TextDatumGetCString(d);
		if ((n1 || n2 || n3) && p->broken == NULL)
			p->broken = psprintf("the definition of projection \"%s\" is incomplete", p->name);
		if (!parse_key_source(src, &p->key_is_stream, &p->npath, &p->path) && p->broken == NULL)
			p->broken = psprintf("invalid key source of projection \"%s\"", p->name);
		d = slot_getattr(slot, Anum_pc_column_map, &isnull);
		p->column_map = isnull ? NULL : DatumGetJsonbPCopy(d);
		if (p->broken == NULL && !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(p->target)))
			p->broken = broken_msg("target table of projection \"%s\" no longer exists", p->name);
	}
}

static int
proj_name_cmp(const void *a, const void *b)
{
	return strcmp(((const Projection *) a)->name, ((const Projection *) b)->name);
}

static void
free_cache(void)
{
	for (int i = 0; i < cache.n; i++)
	{
		Projection *p = &cache.projs[i];

		if (p->fast)
			proj_upsert_release(p->fast);
		for (int k = 0; k < p->nshapes; k++)
			old_plans = lappend(old_plans, p->shape_plan[k]);
		if (p->delete_plan)
			old_plans = lappend(old_plans, p->delete_plan);
	}
	if (cache.cxt)
		MemoryContextDelete(cache.cxt);
	cache.cxt = NULL;
	cache.n = 0;
	cache.projs = NULL;
}

/*
 * The cached catalog.  It is reloaded only outside of a dispatch, so
 * pointers into it stay valid while projections run.
 */
static ProjCache *
proj_cache(void)
{
	const EvstoreCatalog *cat;
	Oid			relid;
	Relation	rel;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;
	MemoryContext old;
	int			cap = 8;

	if (likely(cache.valid) || dispatch_depth > 0)
		return &cache;

	free_cache();
	if (old_plans != NIL)
	{
		ListCell   *lc;

		foreach(lc, old_plans)
			SPI_freeplan((SPIPlanPtr) lfirst(lc));
		list_free(old_plans);
		old_plans = NIL;
	}

	cat = evstore_catalog();
	relid = get_relname_relid("projections_catalog", cat->namespace_oid);
	cache.catalog_rel = relid;
	if (!OidIsValid(relid))
	{
		/* an older schema version: no projections, look again next time */
		return &cache;
	}

	cache.cxt = AllocSetContextCreate(CacheMemoryContext, "evstore projections",
									  ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cache.cxt);
	cache.projs = palloc(cap * sizeof(Projection));

	rel = table_open(relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		if (cache.n == cap)
		{
			cap *= 2;
			cache.projs = repalloc(cache.projs, cap * sizeof(Projection));
		}
		load_row(&cache.projs[cache.n++], slot);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	qsort(cache.projs, cache.n, sizeof(Projection), proj_name_cmp);
	MemoryContextSwitchTo(old);

	/* an invalidation that arrived while loading leaves the cache invalid */
	cache.valid = true;
	AcceptInvalidationMessages();
	return &cache;
}

static Projection *
find_projection(const char *name)
{
	ProjCache  *c = proj_cache();

	for (int i = 0; i < c->n; i++)
		if (strcmp(c->projs[i].name, name) == 0)
			return &c->projs[i];
	return NULL;
}

/* ---------------------------------------------------------------------
 * Attribute sync: target description and plans
 * ---------------------------------------------------------------------
 */

/* column_map: which attribute feeds column colname (NULL: none) */
static char *
column_source(Jsonb *map, const char *colname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		named_as_key = false;
	char	   *result = NULL;

	if (map == NULL)
		return pstrdup(colname);
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && key)
		{
			if (v.type == jbvString && (int) strlen(colname) == v.val.string.len &&
				memcmp(colname, v.val.string.val, v.val.string.len) == 0)
				result = key;
			if (strcmp(key, colname) == 0)
				named_as_key = true;
		}
	}
	if (result)
		return result;
	return named_as_key ? NULL : pstrdup(colname);
}

static void
init_column(SyncColumn *c, Form_pg_attribute att, const char *attname, MemoryContext cxt)
{
	Oid			infunc;

	c->colname = MemoryContextStrdup(cxt, NameStr(att->attname));
	c->attname = attname ? MemoryContextStrdup(cxt, attname) : NULL;
	c->attlen = attname ? strlen(attname) : 0;
	c->attnum = att->attnum;
	c->typid = att->atttypid;
	c->typmod = att->atttypmod;
	getTypeInputInfo(att->atttypid, &infunc, &c->typioparam);
	fmgr_info_cxt(infunc, &c->infunc, cxt);
}

/*
 * The upsert for events carrying exactly the columns in mask: columns not
 * in the event are left out of the INSERT (so a new row gets their
 * defaults) and out of the UPDATE (so an existing row keeps them).
 */
static SPIPlanPtr
build_shape_plan(Projection *p, Bitmapset *mask, bool keep)
{
	StringInfoData ins,
				vals,
				upd;
	Oid		   *argtypes = palloc(sizeof(Oid) * (1 + p->ncols));
	int			nargs = 1;
	int			i = -1;
	int			save_nestlevel;
	SPIPlanPtr	plan;

	initStringInfo(&ins);
	initStringInfo(&vals);
	initStringInfo(&upd);
	argtypes[0] = p->keycol.typid;
	appendStringInfo(&ins, "INSERT INTO %s AS t (%s", p->qrel, quote_identifier(p->key_column));
	appendStringInfoString(&vals, "$1");
	while ((i = bms_next_member(mask, i)) >= 0)
	{
		const char *qc = quote_identifier(p->cols[i].colname);

		argtypes[nargs++] = p->cols[i].typid;
		appendStringInfo(&ins, ", %s", qc);
		appendStringInfo(&vals, ", $%d", nargs);
		appendStringInfo(&upd, "%s%s = EXCLUDED.%s", nargs > 2 ? ", " : "", qc, qc);
	}
	appendStringInfo(&ins, ") VALUES (%s) ON CONFLICT (%s) DO ", vals.data,
					 quote_identifier(p->key_column));
	if (nargs > 1)
		appendStringInfo(&ins, "UPDATE SET %s", upd.data);
	else
		appendStringInfoString(&ins, "NOTHING");

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	plan = SPI_prepare_cursor(ins.data, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "evstore: could not prepare \"%s\": %s", ins.data,
			 SPI_result_code_string(SPI_result));
	if (keep)
		SPI_keepplan(plan);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	return keep ? plan : NULL;
}

/* The cached upsert plan for a set of columns, built when first seen. */
static SPIPlanPtr
shape_plan(Projection *p, Bitmapset *mask)
{
	int			k;
	MemoryContext old;

	for (k = 0; k < p->nshapes; k++)
		if (bms_equal(p->shape_mask[k], mask))
			return p->shape_plan[k];

	if (p->nshapes < PROJ_MAX_SHAPES)
		k = p->nshapes++;
	else
	{
		/* nothing is executing a plan of this projection at this point */
		k = p->next_evict;
		p->next_evict = (p->next_evict + 1) % PROJ_MAX_SHAPES;
		SPI_freeplan(p->shape_plan[k]);
		p->shape_plan[k] = NULL;
	}
	p->shape_plan[k] = build_shape_plan(p, mask, true);
	old = MemoryContextSwitchTo(cache.cxt);
	p->shape_mask[k] = bms_copy(mask);
	MemoryContextSwitchTo(old);
	return p->shape_plan[k];
}

/*
 * Describe the target and build the plans.  With keep, the plans are
 * saved in the projection; otherwise (create time) they only validate.
 * Raises clear errors for every problem with the definition.
 */
static void
sync_prepare(Projection *p, bool keep, MemoryContext cxt)
{
	Relation	rel;
	TupleDesc	td;
	AttrNumber	keyatt;
	Oid			opfamily = InvalidOid;
	Oid			opcintype = InvalidOid;
	Oid			keyindex = InvalidOid;
	Oid			eqop;
	List	   *indexes;
	ListCell   *lc;
	StringInfoData del;
	Oid			keytype;
	int			save_nestlevel;
	SPIPlanPtr	plan;
	MemoryContext old;

	rel = table_open(p->target, AccessShareLock);
	td = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target of projection \"%s\" must be a table", p->name),
				 errdetail("\"%s\" is not a table.", RelationGetRelationName(rel))));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target of projection \"%s\" must not be a temporary table", p->name),
				 errdetail("Appends from every session write the read model.")));
	if (RelationGetNamespace(rel) == evstore_catalog()->namespace_oid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a projection cannot write evstore's own table \"%s\"",
						RelationGetRelationName(rel))));

	keyatt = get_attnum(p->target, p->key_column);
	if (keyatt == InvalidAttrNumber || keyatt < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table \"%s\" does not exist",
						p->key_column, RelationGetRelationName(rel))));
	if (TupleDescAttr(td, keyatt - 1)->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("key column \"%s\" of table \"%s\" is a generated column",
						p->key_column, RelationGetRelationName(rel))));

	/* a unique index on exactly the key column (ON CONFLICT needs it) */
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ix = idx->rd_index;

		if (ix->indisunique && ix->indimmediate && ix->indisvalid &&
			ix->indnkeyatts == 1 && ix->indkey.values[0] == keyatt &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL))
		{
			opfamily = idx->rd_opfamily[0];
			opcintype = idx->rd_opcintype[0];
			keyindex = RelationGetRelid(idx);
		}
		index_close(idx, AccessShareLock);
		if (OidIsValid(opfamily))
			break;
	}
	if (!OidIsValid(opfamily))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("key column \"%s\" of table \"%s\" has no unique index",
						p->key_column, RelationGetRelationName(rel)),
				 errdetail("Attribute sync upserts rows with INSERT ... ON CONFLICT on the key."),
				 errhint("Make the key column the primary key or add a unique constraint on it alone.")));
	eqop = get_opfamily_member(opfamily, opcintype, opcintype, BTEqualStrategyNumber);
	if (!OidIsValid(eqop))
		elog(ERROR, "evstore: no equality operator for the key of \"%s\"",
			 RelationGetRelationName(rel));

	/* column_map: an object of attribute -> column name or null */
	if (p->column_map)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;

		if (!JB_ROOT_IS_OBJECT(p->column_map))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column_map must be a JSON object"),
					 errdetail("Map data attributes to column names, e.g. {\"qty\": \"quantity\"}; map to null to ignore an attribute.")));
		it = JsonbIteratorInit(&p->column_map->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_VALUE)
				continue;
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("values of column_map must be column names or null")));
			else
			{
				char	   *col = pnstrdup(v.val.string.val, v.val.string.len);
				AttrNumber	a = get_attnum(p->target, col);

				if (a == InvalidAttrNumber || a < 0)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column_map names column \"%s\", which table \"%s\" does not have",
									col, RelationGetRelationName(rel))));
				if (a == keyatt)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("column_map must not map an attribute to the key column \"%s\"", col),
							 errhint("The key comes from key_source.")));
			}
		}
	}

	old = MemoryContextSwitchTo(cxt);
	p->cols = palloc0(sizeof(SyncColumn) * Max(td->natts, 1));
	p->ncols = 0;
	init_column(&p->keycol, TupleDescAttr(td, keyatt - 1), NULL, cxt);
	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);
		char	   *src;

		if (att->attisdropped || att->attgenerated || att->attidentity ||
			att->attnum == keyatt)
			continue;
		src = column_source(p->column_map, NameStr(att->attname));
		if (src == NULL)
			continue;
		init_column(&p->cols[p->ncols++], att, src, cxt);
	}
	p->values = palloc0(sizeof(Datum) * (1 + p->ncols));
	p->nulls = palloc(sizeof(char) * (1 + p->ncols));
	p->qrel = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										 RelationGetRelationName(rel));
	MemoryContextSwitchTo(old);
	keytype = p->keycol.typid;

	initStringInfo(&del);
	{
		HeapTuple	optup = SearchSysCache1(OPEROID, ObjectIdGetDatum(eqop));
		Form_pg_operator op;

		if (!HeapTupleIsValid(optup))
			elog(ERROR, "evstore: cache lookup failed for operator %u", eqop);
		op = (Form_pg_operator) GETSTRUCT(optup);
		appendStringInfo(&del, "DELETE FROM %s WHERE %s OPERATOR(%s.%s) $1", p->qrel,
						 quote_identifier(p->key_column),
						 quote_identifier(get_namespace_name(op->oprnamespace)),
						 NameStr(op->oprname));
		ReleaseSysCache(optup);
	}

	/* names are resolved with a fixed, safe search_path */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	if (p->delete_types.n > 0)
	{
		plan = SPI_prepare_cursor(del.data, 1, &keytype, CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "evstore: could not prepare \"%s\": %s", del.data,
				 SPI_result_code_string(SPI_result));
		if (keep)
		{
			SPI_keepplan(plan);
			p->delete_plan = plan;
		}
	}
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);

	/* can upserts skip SPI?  Decided once; a change of the table resets it */
	if (keep)
	{
		const char *why = proj_upsert_unsupported(rel);

		p->fast_stale = false;
		if (why == NULL)
		{
			p->fast = proj_upsert_prepare(rel, keyatt, keyindex, cxt);
			p->fast_atts = MemoryContextAlloc(cxt, sizeof(AttrNumber) * Max(p->ncols, 1));
			p->fast_nulls = MemoryContextAlloc(cxt, sizeof(bool) * Max(p->ncols, 1));
			ereport(DEBUG1,
					(errmsg_internal("projection \"%s\" upserts into \"%s\" directly",
									 p->name, RelationGetRelationName(rel))));
		}
		else
			ereport(DEBUG1,
					(errmsg_internal("projection \"%s\" upserts into \"%s\" through SPI: %s",
									 p->name, RelationGetRelationName(rel), why)));
	}
	table_close(rel, AccessShareLock);

	/* at create time, check that the upsert of every column prepares */
	if (!keep)
	{
		Bitmapset  *all = NULL;

		for (int i = 0; i < p->ncols; i++)
			all = bms_add_member(all, i);
		(void) build_shape_plan(p, all, false);
	}
	else
		p->prepared = true;
}

static void
convert_error_callback(void *arg)
{
	ConvertContext *cc = (ConvertContext *) arg;

	if (cc->attname)
		errcontext("converting data attribute \"%s\" for column \"%s\" of type %s",
				   cc->attname, cc->col->colname,
				   format_type_with_typemod(cc->col->typid, cc->col->typmod));
	else
		errcontext("converting the key for column \"%s\" of type %s",
				   cc->col->colname,
				   format_type_with_typemod(cc->col->typid, cc->col->typmod));
}

/* A JSON value as a datum of the column's type, via its input function. */
static Datum
json_to_datum(JsonbValue *v, SyncColumn *col, const char *attname, bool *isnull)
{
	char	   *str;
	ConvertContext cc;
	ErrorContextCallback errcb;
	Datum		result;

	*isnull = false;
	if (v->type == jbvNull)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (col->typid == JSONBOID)
		return JsonbPGetDatum(JsonbValueToJsonb(v));
	if (v->type == jbvNumeric && col->typid == NUMERICOID && col->typmod < 0)
		return NumericGetDatum(v->val.numeric);

	switch (v->type)
	{
		case jbvString:
			if (col->typid == JSONOID)
				str = JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
			else
				str = pnstrdup(v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			str = DatumGetCString(DirectFunctionCall1(numeric_out,
													  NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			str = v->val.boolean ? "true" : "false";
			break;
		case jbvBinary:
			str = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "evstore: unexpected JSON value type %d", (int) v->type);
			str = NULL;			/* keep the compiler quiet */
	}

	cc.attname = attname;
	cc.col = col;
	errcb.callback = convert_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	result = InputFunctionCall(&col->infunc, str, col->typioparam, col->typmod);
	error_context_stack = errcb.previous;
	return result;
}

static void
apply_sync(Projection *p, TupleTableSlot *slot, const char *type, int typelen)
{
	bool		isnull;
	bool		is_delete;
	Jsonb	   *data;
	Datum		key;
	int			rc;
	int			nv = 1;
	Bitmapset  *mask = NULL;
	SPIPlanPtr	plan;

	if (!p->prepared)
		sync_prepare(p, true, cache.cxt);

	is_delete = strlist_contains(&p->delete_types, type, typelen);
	data = DatumGetJsonbP(slot_getattr(slot, Anum_events_data, &isnull));

	/* the key */
	if (p->key_is_stream)
	{
		Datum		sid = slot_getattr(slot, Anum_events_stream_id, &isnull);

		if (p->keycol.typid == TEXTOID)
			key = sid;
		else
		{
			JsonbValue	v;

			v.type = jbvString;
			v.val.string.val = TextDatumGetCString(sid);
			v.val.string.len = strlen(v.val.string.val);
			key = json_to_datum(&v, &p->keycol, NULL, &isnull);
		}
	}
	else
	{
		JsonbValue *v = NULL;
		JsonbContainer *c = &data->root;
		JsonbValue	buf;

		for (int i = 0; i < p->npath; i++)
		{
			if (c == NULL || !JsonContainerIsObject(c))
			{
				v = NULL;
				break;
			}
			v = getKeyJsonValueFromContainer(c, p->path[i], strlen(p->path[i]), &buf);
			if (v == NULL)
				break;
			c = v->type == jbvBinary ? v->val.binary.data : NULL;
		}
		if ((v == NULL || v->type == jbvNull) && type[0] == '$')
			return;				/* a marker without the key: nothing to do */
		if (v == NULL || v->type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event has no key for projection \"%s\"", p->name),
					 errdetail("Its data has no value at key source \"$.%s\".", p->path[p->npath - 1])));
		key = json_to_datum(v, &p->keycol, NULL, &isnull);
	}
	p->values[0] = key;
	p->nulls[0] = ' ';

	if (!is_delete)
	{
		bool		is_obj = JB_ROOT_IS_OBJECT(data) && !JB_ROOT_IS_SCALAR(data);

		for (int i = 0; i < p->ncols; i++)
		{
			SyncColumn *col = &p->cols[i];
			JsonbValue	buf;
			JsonbValue *v = is_obj ?
				getKeyJsonValueFromContainer(&data->root, col->attname, col->attlen, &buf) : NULL;
			bool		vnull;

			if (v == NULL)
				continue;
			mask = bms_add_member(mask, i);
			p->values[nv] = json_to_datum(v, col, col->attname, &vnull);
			p->nulls[nv] = vnull ? 'n' : ' ';
			if (p->fast)
			{
				p->fast_atts[nv - 1] = col->attnum;
				p->fast_nulls[nv - 1] = vnull;
			}
			nv++;
		}

		/*
		 * The direct upsert, when the owner may INSERT, UPDATE and SELECT
		 * the whole table (checked per event: role memberships change
		 * without invalidating the table).  Otherwise the SPI plan raises
		 * the permission error SQL raises.
		 */
		if (p->fast && p->fast_stale)
			proj_upsert_release(p->fast);
		else if (p->fast &&
				 pg_class_aclmask(p->target, p->owner, ACL_INSERT | ACL_UPDATE | ACL_SELECT,
								  ACLMASK_ALL) == (ACL_INSERT | ACL_UPDATE | ACL_SELECT) &&
				 proj_upsert_exec(p->fast, &p->fast_stale, key, p->fast_atts,
								  p->values + 1, p->fast_nulls, nv - 1))
			return;
		plan = shape_plan(p, mask);
	}
	else
		plan = p->delete_plan;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	rc = SPI_execute_plan(plan, p->values, p->nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "evstore: projection \"%s\" failed: %s", p->name,
			 SPI_result_code_string(rc));
	SPI_finish();
}

/* ---------------------------------------------------------------------
 * Applying one event
 * ---------------------------------------------------------------------
 */
static void
apply_error_callback(void *arg)
{
	ApplyContext *ac = (ApplyContext *) arg;

	errcontext("%s projection \"%s\" on event at position %lld (stream \"%s\", version %lld, type \"%s\")",
			   ac->rebuild ? "replaying" : "applying",
			   ac->p->name, (long long) ac->position, ac->stream_id,
			   (long long) ac->version, ac->event_type);
}

static void
apply_one(Projection *p, TupleTableSlot *slot, const char *type, int typelen,
		  bool rebuild)
{
	Oid			save_userid;
	int			save_sec;
	bool		isnull;
	ApplyContext ac;
	ErrorContextCallback errcb;
	MemoryContext oldcxt;
	int64		position = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));

	ac.p = p;
	ac.position = position;
	ac.stream_id = NULL;
	ac.version = DatumGetInt64(slot_getattr(slot, Anum_events_stream_version, &isnull));
	ac.rebuild = rebuild;

	oldcxt = MemoryContextSwitchTo(event_cxt);
	ac.event_type = pnstrdup(type, typelen);
	ac.stream_id = TextDatumGetCString(slot_getattr(slot, Anum_events_stream_id, &isnull));
	errcb.callback = apply_error_callback;
	errcb.arg = &ac;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	dispatch_depth++;
	PG_TRY();
	{
		if (p->broken)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("projection \"%s\" cannot run: %s", p->name, p->broken),
					 errhint("Drop the projection with evstore.drop_projection() or recreate what it needs.")));
		SetUserIdAndSecContext(p->owner,
							   save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		if (p->is_sync)
			apply_sync(p, slot, type, typelen);
		else
		{
			LOCAL_FCINFO(fcinfo, 1);
			int			nest = NewGUCNestLevel();

			(void) set_config_option("search_path", "pg_catalog, pg_temp",
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
									 true, 0, false);
			InitFunctionCallInfoData(*fcinfo, &p->flinfo, 1, InvalidOid, NULL, NULL);
			fcinfo->args[0].value = ExecFetchSlotHeapTupleDatum(slot);
			fcinfo->args[0].isnull = false;
			(void) FunctionCallInvoke(fcinfo);
			AtEOXact_GUC(true, nest);
		}
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		SetUserIdAndSecContext(save_userid, save_sec);
		dispatch_depth--;
		MemoryContextSwitchTo(TopTransactionContext);
		edata = CopyErrorData();
		record_error(p->name, position, edata->message ? edata->message : "unknown error");
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	dispatch_depth--;
	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(event_cxt);
	pending_add(p, position);
}

/* Does the projection want this event?  No SQL, no allocation. */
static inline bool
proj_matches(const Projection *p, const char *cat, int catlen,
			 const char *type, int typelen)
{
	if (p->categories.n >= 0 && !strlist_contains(&p->categories, cat, catlen))
		return false;
	if (p->is_sync && strlist_contains(&p->delete_types, type, typelen))
		return true;
	/* evstore's own markers ($StreamDeleted...) reach a sync projection only by name */
	if (p->is_sync && typelen > 0 && type[0] == '$' &&
		!(p->event_types.n >= 0 && strlist_contains(&p->event_types, type, typelen)))
		return false;
	if (p->event_types.n >= 0 && !strlist_contains(&p->event_types, type, typelen))
		return false;
	return true;
}

/* evstore_event_hook: run the projections that want the event */
static void
projections_event_hook(Relation events_rel, TupleTableSlot *slot)
{
	ProjCache  *c;
	bool		isnull;
	text	   *cat;
	text	   *type;
	int			catlen,
				typelen;

	if (prev_event_hook)
		prev_event_hook(events_rel, slot);

	if (dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot append events"),
				 errdetail("Projections run inside the append that feeds them.")));

	c = proj_cache();
	if (c->n == 0)
		return;

	cat = (text *) DatumGetPointer(slot_getattr(slot, Anum_events_category, &isnull));
	type = (text *) DatumGetPointer(slot_getattr(slot, Anum_events_event_type, &isnull));
	if (VARATT_IS_EXTENDED(cat) || VARATT_IS_EXTENDED(type))
	{
		cat = pg_detoast_datum_packed(cat);
		type = pg_detoast_datum_packed(type);
	}
	catlen = VARSIZE_ANY_EXHDR(cat);
	typelen = VARSIZE_ANY_EXHDR(type);

	for (int i = 0; i < c->n; i++)
	{
		Projection *p = &c->projs[i];

		if (proj_matches(p, VARDATA_ANY(cat), catlen, VARDATA_ANY(type), typelen))
			apply_one(p, slot, VARDATA_ANY(type), typelen, false);
	}
}

void
evstore_projections_init(void)
{
	static bool done = false;

	if (done)
		return;
	done = true;
	prev_event_hook = evstore_event_hook;
	evstore_event_hook = projections_event_hook;
	prev_batch_end_hook = evstore_batch_end_hook;
	evstore_batch_end_hook = projections_batch_end;
	CacheRegisterRelcacheCallback(proj_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(PROCOID, proj_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(AUTHOID, proj_syscache_callback, (Datum) 0);
	RegisterXactCallback(proj_xact_callback, NULL);
	RegisterSubXactCallback(proj_subxact_callback, NULL);
	event_cxt = AllocSetContextCreate(TopMemoryContext, "evstore projection event",
									  ALLOCSET_DEFAULT_SIZES);
	evstore_projstats_register_hooks_tmp();
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

static char *
name_arg(FunctionCallInfo fcinfo)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("projection name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("projection name must not be empty")));
	if (strlen(name) > PROJ_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("projection name is too long"),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   (int) strlen(name), PROJ_NAME_MAX)));
	return name;
}

/* text[] argument: NULL stays NULL; no NULL or empty elements, not empty */
static Datum
types_arg(FunctionCallInfo fcinfo, int argno, const char *what, bool *isnull)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	*isnull = PG_ARGISNULL(argno);
	if (*isnull)
		return (Datum) 0;
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be an empty array", what),
				 errhint("Pass NULL for no filter.")));
	for (int i = 0; i < n; i++)
		if (enulls[i] || VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i])) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain null or empty elements", what)));
	return PointerGetDatum(arr);
}

/* Lock out appends while the projection set changes, see docs. */
static void
lock_events_for_ddl(void)
{
	LockRelationOid(evstore_catalog()->events_rel, ShareLock);
}

static Oid
catalog_relid(void)
{
	Oid			relid = get_relname_relid("projections_catalog",
										  evstore_catalog()->namespace_oid);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore.projections_catalog does not exist"),
				 errhint("Update the extension: ALTER EXTENSION evstore UPDATE;")));
	return relid;
}

/* Run SQL on the catalog as the catalog's owner (the extension owner). */
static int
catalog_exec(const char *sql, int nargs, Oid *types, Datum *values, char *nulls)
{
	Oid			save_userid;
	int			save_sec;
	Oid			relid = catalog_relid();
	Oid			owner;
	HeapTuple	tup;
	int			rc;
	uint64		processed;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "evstore: cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "evstore: catalog update failed: %s", SPI_result_code_string(rc));
	processed = SPI_processed;
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);
	CacheInvalidateRelcacheByRelid(relid);
	return (int) processed;
}

static void
check_new_name(const char *name)
{
	ProjCache  *c;

	/* look at the latest committed state */
	cache.valid = false;
	c = proj_cache();
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->projs[i].name, name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("projection \"%s\" already exists", name)));
}

static void
check_reads_events(void)
{
	if (pg_class_aclcheck(evstore_catalog()->events_rel, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create a projection"),
				 errdetail("A projection sees every event it matches, so its creator must have SELECT on evstore.events.")));
}

static void
check_function(Oid fn, int nargs, Oid argtype, const char *what)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Form_pg_proc proc;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("%s function %u does not exist", what, fn)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION || proc->proretset ||
		proc->pronargs != nargs || (nargs == 1 && proc->proargtypes.values[0] != argtype) ||
		proc->prorettype == TRIGGEROID || proc->prorettype == EVENT_TRIGGEROID)
	{
		ReleaseSysCache(tup);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("%s function %s has the wrong signature", what, format_procedure(fn)),
				 nargs == 1 ?
				 errdetail("A projection handler is a plain function taking one evstore.events row, e.g. f(e evstore.events) RETURNS void.") :
				 errdetail("A reset function is a plain function without arguments, e.g. f() RETURNS void.")));
	}
	ReleaseSysCache(tup);
	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function %s", format_procedure(fn))));
}

PG_FUNCTION_INFO_V1(evstore_create_projection);

/* evstore.create_projection(name text, handler regprocedure, categories text[], event_types text[], reset_function regprocedure) -> void */
Datum
evstore_create_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	Oid			handler;
	Oid			types[7] = {TEXTOID, TEXTOID, REGROLEOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', 'n', ' ', ' '};
	bool		isnull;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("handler must not be null")));
	if (dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));
	handler = PG_GETARG_OID(1);
	check_reads_events();
	check_function(handler, 1, evstore_catalog()->events_type, "handler");

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum("handler");
	values[2] = ObjectIdGetDatum(GetUserId());
	values[3] = CStringGetTextDatum(format_procedure_qualified(handler));
	if (!PG_ARGISNULL(4))
	{
		check_function(PG_GETARG_OID(4), 0, InvalidOid, "reset");
		values[4] = CStringGetTextDatum(format_procedure_qualified(PG_GETARG_OID(4)));
		nulls[4] = ' ';
	}
	values[5] = types_arg(fcinfo, 2, "categories", &isnull);
	nulls[5] = isnull ? 'n' : ' ';
	values[6] = types_arg(fcinfo, 3, "event_types", &isnull);
	nulls[6] = isnull ? 'n' : ' ';

	lock_events_for_ddl();
	check_new_name(name);
	catalog_exec("INSERT INTO evstore.projections_catalog "
				 "(name, kind, owner, handler, reset_function, categories, event_types) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7)", 7, types, values, nulls);
	reset_slot(name);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(evstore_create_sync_projection);

/* evstore.create_sync_projection(name text, target regclass, key_column name, key_source text, upsert_types text[], delete_types text[], column_map jsonb, categories text[]) -> void */
Datum
evstore_create_sync_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	Projection	p;
	char	   *key_source;
	Oid			types[10] = {TEXTOID, TEXTOID, REGROLEOID, REGCLASSOID, NAMEOID, TEXTOID,
	TEXTARRAYOID, TEXTARRAYOID, JSONBOID, TEXTARRAYOID};
	Datum		values[10];
	char		nulls[10];
	bool		isnull;
	Oid			target;
	AclMode		need = ACL_SELECT | ACL_INSERT | ACL_UPDATE;
	static const struct
	{
		AclMode		mode;
		const char *name;
	}			privs[] = {{ACL_SELECT, "SELECT"}, {ACL_INSERT, "INSERT"},
	{ACL_UPDATE, "UPDATE"}, {ACL_DELETE, "DELETE"}};

	if (dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));
	for (int i = 1; i <= 3; i++)
		if (PG_ARGISNULL(i))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null",
							i == 1 ? "target" : i == 2 ? "key_column" : "key_source")));
	check_reads_events();
	target = PG_GETARG_OID(1);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(target)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", target)));

	memset(&p, 0, sizeof(p));
	p.name = name;
	p.is_sync = true;
	p.owner = GetUserId();
	p.target = target;
	p.key_column = pstrdup(NameStr(*PG_GETARG_NAME(2)));
	key_source = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (!parse_key_source(key_source, &p.key_is_stream, &p.npath, &p.path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid key_source \"%s\"", key_source),
				 errdetail("Use 'stream_id' or a path into the event's data such as '$.order_id' or '$.customer.id'.")));

	values[6] = types_arg(fcinfo, 4, "upsert_types", &isnull);
	nulls[6] = isnull ? 'n' : ' ';
	strlist_from_array(&p.event_types, values[6], isnull);
	values[7] = types_arg(fcinfo, 5, "delete_types", &isnull);
	nulls[7] = isnull ? 'n' : ' ';
	strlist_from_array(&p.delete_types, values[7], isnull);
	if (p.delete_types.n < 0)
		p.delete_types.n = 0;
	else
		need |= ACL_DELETE;
	for (int i = 0; i < p.delete_types.n; i++)
		if (strlist_contains(&p.event_types, p.delete_types.s[i], p.delete_types.len[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" is both an upsert and a delete type",
							p.delete_types.s[i])));
	p.column_map = PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6);
	values[8] = PG_ARGISNULL(6) ? (Datum) 0 : JsonbPGetDatum(p.column_map);
	nulls[8] = PG_ARGISNULL(6) ? 'n' : ' ';
	values[9] = types_arg(fcinfo, 7, "categories", &isnull);
	nulls[9] = isnull ? 'n' : ' ';

	/* the creator must be allowed to do what the projection will do */
	for (int i = 0; i < (int) lengthof(privs); i++)
		if ((need & privs[i].mode) &&
			pg_class_aclcheck(target, GetUserId(), privs[i].mode) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for table %s", get_rel_name(target)),
					 errdetail("The projection would write it with your privileges, and you lack %s on it.",
							   privs[i].name),
					 errhint("An attribute-sync projection needs SELECT, INSERT and UPDATE on its target, and DELETE when it has delete types.")));

	/* validates the target, the key and the column map */
	sync_prepare(&p, false, CurrentMemoryContext);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum("sync");
	values[2] = ObjectIdGetDatum(GetUserId());
	values[3] = ObjectIdGetDatum(target);
	values[4] = PG_GETARG_DATUM(2);
	values[5] = CStringGetTextDatum(key_source);
	nulls[0] = nulls[1] = nulls[2] = nulls[3] = nulls[4] = nulls[5] = ' ';

	lock_events_for_ddl();
	check_new_name(name);
	catalog_exec("INSERT INTO evstore.projections_catalog "
				 "(name, kind, owner, target, key_column, key_source, upsert_types, "
				 "delete_types, column_map, categories) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, types, values, nulls);
	reset_slot(name);
	PG_RETURN_VOID();
}

/* The projection, locked against concurrent drop/rebuild; checks ownership. */
static Projection *
lock_projection(const char *name, bool missing_ok)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	Projection *p;

	values[0] = CStringGetTextDatum(name);
	if (catalog_exec("SELECT 1 FROM evstore.projections_catalog WHERE name = $1 FOR UPDATE",
					 1, types, values, NULL) == 0)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("projection \"%s\" does not exist", name)));
	}
	cache.valid = false;
	p = find_projection(name);
	if (p == NULL)
		elog(ERROR, "evstore: projection \"%s\" vanished", name);
	if (!has_privs_of_role(GetUserId(), p->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be the owner of projection \"%s\"", name),
				 errdetail("Only its owner (a member of role \"%s\") may drop or rebuild it.",
						   GetUserNameFromId(p->owner, true) ? GetUserNameFromId(p->owner, true) : "?")));
	return p;
}

PG_FUNCTION_INFO_V1(evstore_drop_projection);

/* evstore.drop_projection(name text, if_exists boolean) -> boolean */
Datum
evstore_drop_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("projections cannot be changed from inside a projection")));
	lock_events_for_ddl();
	if (lock_projection(name, if_exists) == NULL)
	{
		ereport(NOTICE,
				(errmsg("projection \"%s\" does not exist, skipping", name)));
		PG_RETURN_BOOL(false);
	}
	values[0] = CStringGetTextDatum(name);
	catalog_exec("DELETE FROM evstore.projections_catalog WHERE name = $1",
				 1, types, values, NULL);
	reset_slot(name);
	PG_RETURN_BOOL(true);
}

/* Run SQL (or a function) as the projection's owner. */
static void
reset_target(Projection *p)
{
	Oid			save_userid;
	int			save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(p->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (p->is_sync)
	{
		char	   *qrel;
		bool		can_truncate = pg_class_aclcheck(p->target, p->owner, ACL_TRUNCATE) == ACLCHECK_OK;

		if (!can_truncate &&
			pg_class_aclcheck(p->target, p->owner, ACL_DELETE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to rebuild projection \"%s\"", p->name),
					 errdetail("Rebuilding empties table \"%s\" first, so the projection's owner needs TRUNCATE or DELETE on it.",
							   get_rel_name(p->target))));

		qrel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(p->target)),
										  get_rel_name(p->target));
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "evstore: SPI_connect failed");
		SPI_execute(psprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", qrel), false, 0);
		SPI_execute(psprintf(can_truncate ? "TRUNCATE %s" : "DELETE FROM %s", qrel), false, 0);
		SPI_finish();
	}
	else if (OidIsValid(p->reset_fn))
	{
		if (pg_proc_aclcheck(p->reset_fn, p->owner, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s", format_procedure(p->reset_fn))));
		{
			FmgrInfo	fl;
			LOCAL_FCINFO(fc, 0);

			fmgr_info(p->reset_fn, &fl);
			InitFunctionCallInfoData(*fc, &fl, 0, InvalidOid, NULL, NULL);
			(void) FunctionCallInvoke(fc);	/* the result, NULL or not, is ignored */
		}
	}
	SetUserIdAndSecContext(save_userid, save_sec);
}

PG_FUNCTION_INFO_V1(evstore_rebuild_projection);

/* evstore.rebuild_projection(name text, notice_every integer) -> bigint */
Datum
evstore_rebuild_projection(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo);
	int			notice_every = PG_ARGISNULL(1) ? 10000 : PG_GETARG_INT32(1);
	const EvstoreCatalog *cat;
	Projection *p;
	Relation	events;
	Relation	idx;
	Snapshot	snap;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int64		replayed = 0;
	int64		target_pos;
	ProjStatSlot *ps = NULL;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	PendingStat *pe;

	if (notice_every < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("notice_every must not be negative"),
				 errhint("Use 0 for no progress notices.")));
	if (dispatch_depth > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a projection cannot be rebuilt from inside a projection")));
	PreventCommandIfReadOnly("evstore.rebuild_projection()");

	cat = evstore_catalog();
	p = lock_projection(name, false);

	/* reset first: the locks it takes make the snapshot below complete */
	reset_target(p);
	values[0] = CStringGetTextDatum(name);
	catalog_exec("UPDATE evstore.projections_catalog SET rebuilt_at = pg_catalog.now() WHERE name = $1",
				 1, types, values, NULL);
	cache.valid = false;
	p = find_projection(name);
	if (p == NULL)
		elog(ERROR, "evstore: projection \"%s\" vanished", name);

	pe = pending_entry(p);
	pe->reset = true;
	pe->count = 0;
	pe->maxpos = 0;

	target_pos = evstore_sequence_last_value(cat->position_seq);
	ps = proj_rebuild_progress_start(name, target_pos);

	events = table_open(cat->events_rel, AccessShareLock);
	idx = index_open(cat->events_pkey, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = index_beginscan(events, idx, snap, 0, 0);
	index_rescan(scan, NULL, 0, NULL, 0);
	slot = table_slot_create(events, NULL);

	/* keep the cache (and p) in place while replaying */
	dispatch_depth++;
	PG_TRY();
	{
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			bool		isnull;
			text	   *ecat;
			text	   *etype;
			int64		pos;

			CHECK_FOR_INTERRUPTS();
			ecat = DatumGetTextPP(slot_getattr(slot, Anum_events_category, &isnull));
			etype = DatumGetTextPP(slot_getattr(slot, Anum_events_event_type, &isnull));
			pos = DatumGetInt64(slot_getattr(slot, Anum_events_global_position, &isnull));
			if (proj_matches(p, VARDATA_ANY(ecat), VARSIZE_ANY_EXHDR(ecat),
							 VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype)))
			{
				apply_one(p, slot, VARDATA_ANY(etype), VARSIZE_ANY_EXHDR(etype), true);
				replayed++;
				if (notice_every > 0 && replayed % notice_every == 0)
					ereport(NOTICE,
							(errmsg("projection \"%s\": replayed %lld events",
									name, (long long) replayed),
							 errdetail("At global position %lld of %lld.",
									   (long long) pos, (long long) target_pos)));
			}
			if (ps)
			{
				ps->rebuild_replayed = replayed;
				ps->rebuild_position = pos;
			}
		}
		if (p->fast)
			proj_upsert_release(p->fast);
	}
	PG_FINALLY();
	{
		dispatch_depth = Max(dispatch_depth - 1, 0);
	}
	PG_END_TRY();

	ExecDropSingleTupleTableSlot(slot);
	index_endscan(scan);
	UnregisterSnapshot(snap);
	index_close(idx, AccessShareLock);
	table_close(events, AccessShareLock);
	if (notice_every > 0)
		ereport(NOTICE,
				(errmsg("projection \"%s\" rebuilt: replayed %lld events", name,
						(long long) replayed)));
	PG_RETURN_INT64(replayed);
}

PG_FUNCTION_INFO_V1(evstore_projection_stats);

/* evstore.projection_stats() -> SETOF (name text, events_processed bigint, last_position bigint, last_error text, last_error_position bigint, last_error_at timestamptz) */
Datum
evstore_projection_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (proj_shared == NULL)
		return (Datum) 0;
	LWLockAcquire(proj_shared->lock, LW_SHARED);
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
	{
		ProjStatSlot *s = &proj_shared->slots[i];
		Datum		v[6];
		bool		n[6] = {false, false, false, false, false, false};
		uint64		lp;

		if (s->dbid != MyDatabaseId)
			continue;
		lp = pg_atomic_read_u64(&s->last_pos);
		v[0] = CStringGetTextDatum(s->name);
		v[1] = Int64GetDatum((int64) pg_atomic_read_u64(&s->processed));
		v[2] = Int64GetDatum((int64) lp);
		n[2] = lp == 0;
		v[3] = CStringGetTextDatum(s->last_error);
		n[3] = s->last_error[0] == '\0';
		v[4] = Int64GetDatum(s->last_error_pos);
		n[4] = n[3];
		v[5] = TimestampTzGetDatum(s->last_error_at);
		n[5] = n[3];
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	LWLockRelease(proj_shared->lock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(evstore_projection_rebuild_progress);

/* evstore.projection_rebuild_progress() -> SETOF (name text, pid integer, started_at timestamptz, events_replayed bigint, at_position bigint, target_position bigint) */
Datum
evstore_projection_rebuild_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	if (proj_shared == NULL)
		return (Datum) 0;
	LWLockAcquire(proj_shared->lock, LW_SHARED);
	for (int i = 0; i < PROJ_MAX_SLOTS; i++)
	{
		ProjStatSlot *s = &proj_shared->slots[i];
		Datum		v[6];
		bool		n[6] = {false, false, false, false, false, false};

		if (s->dbid != MyDatabaseId || s->rebuild_pid == 0)
			continue;
		v[0] = CStringGetTextDatum(s->name);
		v[1] = Int32GetDatum(s->rebuild_pid);
		v[2] = TimestampTzGetDatum(s->rebuild_started);
		v[3] = Int64GetDatum(s->rebuild_replayed);
		v[4] = Int64GetDatum(s->rebuild_position);
		v[5] = Int64GetDatum(s->rebuild_target);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
	}
	LWLockRelease(proj_shared->lock);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(evstore_projections_catalog_changed);

/* evstore.projections_catalog_changed() -> trigger */
Datum
evstore_projections_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evstore.projections_catalog_changed() must be called as a trigger")));

	/* every backend reloads its projection cache when this commits */
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);	/* AFTER STATEMENT: result ignored */
}
