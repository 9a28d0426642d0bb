/*-------------------------------------------------------------------------
 *
 * projections.h
 *	  Projection triggers: read models maintained inside the appending
 *	  transaction (SPEC section 6, docs/projections.md).  This header is
 *	  internal to the files of the module; the rest of evstore calls only
 *	  evstore_projections_init() and the evstore_projstats_shmem_*()
 *	  functions.
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
 * The files:
 *	 projections_cache.c	 the backend-local cache of the catalog, its
 *							 invalidation
 *	 projections_dispatch.c	 the event hook: matching, applying one event as
 *							 the owner, end of append and of (sub)transaction
 *	 projections_sync.c		 attribute sync: target description, SPI plans,
 *							 JSON values as column values
 *	 projections_upsert.c	 attribute sync's upsert without SPI
 *	 projections_ddl.c		 create, drop and rebuild (SQL-callable)
 *	 projections_stats.c	 shared-memory statistics and rebuild progress
 *	 projections_async.c	 async projections: launcher, database workers,
 *							 pause/resume, their state
 *	 projections_rebuild.c	 blue/green rebuilds in a background worker
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_PROJECTIONS_H
#define EVSTORE_PROJECTIONS_H

#include "access/xact.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "nodes/bitmapset.h"
#include "port/atomics.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#define PROJ_ERRLEN			256
#define PROJ_MAX_SHAPES		16	/* upsert plans kept per sync projection */

/* projections_upsert.c: the upsert of attribute sync without SPI */
typedef struct ProjUpsert ProjUpsert;

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
	int			broken_code;	/* its SQLSTATE */
	char	   *search_path;	/* the creator's, captured at creation */
	char	   *run_path;		/* search_path while it runs: ..., pg_temp */
	bool		is_async;		/* run by a background worker, not inline */
	bool		paused;			/* async: the worker leaves it alone */

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
	bool		has_triggers;	/* the target has triggers (owner's code) */
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
	Oid			events_rel;		/* its privileges are checked at load */
	AttrNumber	async_att;		/* catalog columns async and paused (0.3.0) */
	AttrNumber	paused_att;
	int			n;
	int			nasync;			/* of which async (not run by appends) */
	Projection *projs;
} ProjCache;

/* ---------------------------------------------------------------------
 * Shared memory: statistics and rebuild progress (projections_stats.c)
 * ---------------------------------------------------------------------
 */
/* an async projection's state as its worker sees it (projections_async.c) */
typedef struct ProjAsyncState
{
	int			state;			/* 0: starting (see projections_async.c) */
	int			attempts;		/* at the failing event */
	int64		failing_pos;
	TimestampTz retry_at;
	TimestampTz last_batch_at;
} ProjAsyncState;

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
	ProjAsyncState async;
} ProjStatSlot;

/* pending statistics of the current transaction */
typedef struct PendingStat
{
	char		name[NAMEDATALEN];
	int			level;			/* 0: dead */
	bool		reset;
	int64		count;
	int64		maxpos;
} PendingStat;

/* projections_cache.c */
extern ProjCache proj_catalog_cache;	/* this backend's; see proj_cache() */

extern ProjCache *proj_cache(void);
extern Projection *proj_find_projection(const char *name);
extern void proj_strlist_from_array(StrList *l, Datum d, bool isnull);
extern bool proj_parse_key_source(const char *src, bool *is_stream,
								  int *npath, char ***path);
extern void proj_relcache_callback(Datum arg, Oid relid);
extern void proj_syscache_callback(Datum arg, int cacheid, uint32 hashvalue);
extern char *proj_clean_search_path(const char *path);
extern char *proj_run_search_path(const char *stored);

/* projections_sync.c */
extern void proj_sync_prepare(Projection *p, bool keep, MemoryContext cxt);
extern void proj_apply_sync(Projection *p, TupleTableSlot *slot,
							const char *type, int typelen);

/* projections_dispatch.c */
extern int	proj_dispatch_depth;	/* > 0 while projections run: the cache
									 * stays in place */

extern bool proj_batch_pinned;	/* the cache is pinned for one append */

extern void evstore_projections_init(void);
extern void proj_apply_one(Projection *p, TupleTableSlot *slot,
						   const char *type, int typelen, bool rebuild);

/* projections_stats.c; shmem.c requests and attaches its shared memory */
extern Size evstore_projstats_shmem_size(void);
extern void evstore_projstats_shmem_request(void);
extern void evstore_projstats_shmem_startup(void);
extern void proj_reset_slot(const char *name);
extern void proj_record_error(const char *name, int64 position,
							  const char *message);
extern PendingStat *proj_pending_entry(Projection *p);
extern void proj_pending_publish(void);
extern void proj_pending_discard(void);
extern void proj_pending_subxact_end(SubXactEvent event);
extern ProjStatSlot *proj_rebuild_progress_start(const char *name,
												 int64 target_pos);
extern void proj_rebuild_progress_clear(void);
extern void proj_async_state_get(const char *name, ProjAsyncState *st);
extern void proj_async_state_set(const char *name, const ProjAsyncState *st);

/* projections_ddl.c: for projections_async.c */
extern int	proj_catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
							  char *nulls);

/* projections_async.c; shmem.c requests and attaches its shared memory */
extern void evstore_projections_async_init(void);
extern Size evstore_projasync_shmem_size(void);
extern void evstore_projasync_shmem_startup(void);
extern void proj_async_attach(const char *name);
extern void proj_async_detach(const char *name);
extern void proj_async_lock_checkpoint(const char *name);
extern void proj_async_set_checkpoint(const char *name, int64 position);

/* projections_ddl.c, for projections_rebuild.c */
extern char *proj_name_arg(FunctionCallInfo fcinfo);
extern Projection *proj_lock_projection(const char *name, bool missing_ok);

/* projections_rebuild.c: the background worker's entry point */
extern PGDLLEXPORT void evstore_rebuild_worker_main(Datum main_arg);

/* projections_upsert.c */
extern const char *proj_upsert_unsupported(Relation rel);
extern ProjUpsert *proj_upsert_prepare(Relation rel, AttrNumber keyatt,
									   Oid keyindex, MemoryContext cxt);
extern bool proj_upsert_exec(ProjUpsert *u, const bool *stale, Datum key,
							 const AttrNumber *atts, const Datum *values,
							 const bool *nulls, int n);
extern void proj_upsert_release(ProjUpsert *u);
extern void proj_upsert_forget(ProjUpsert *u, SubTransactionId subid);

/* projections_fanout.c */
extern void proj_fanout(FunctionCallInfo fcinfo, const char *funcname);

/* ---------------------------------------------------------------------
 * Inline helpers of the hot path (matching, counting)
 * ---------------------------------------------------------------------
 */
static inline bool
strlist_contains(const StrList *l, const char *s, int len)
{
	for (int i = 0; i < l->n; i++)
		if (l->len[i] == len && memcmp(l->s[i], s, len) == 0)
			return true;
	return false;
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

static inline void
pending_add(Projection *p, int64 position)
{
	PendingStat *e = proj_pending_entry(p);

	e->count++;
	if (position > e->maxpos)
		e->maxpos = position;
}

#endif							/* EVSTORE_PROJECTIONS_H */
