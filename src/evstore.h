/*-------------------------------------------------------------------------
 *
 * evstore.h
 *	  Shared declarations for the evstore extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_H
#define EVSTORE_H

#include "postgres.h"

#include "access/htup.h"
#include "fmgr.h"
#include "access/skey.h"
#include "nodes/execnodes.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"
#include "utils/relcache.h"
#include "utils/snapshot.h"
#include "utils/inval.h"

/* SQLSTATEs of our own (class ES) */
#define ERRCODE_EVSTORE_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','S','0','0','1')
#define ERRCODE_EVSTORE_STREAM_DELETED			MAKE_SQLSTATE('E','S','0','0','2')
#define ERRCODE_EVSTORE_DUPLICATE_EVENT_ID		MAKE_SQLSTATE('E','S','0','0','3')
/* the position sequence moved backwards or was altered: append refused */
#define ERRCODE_EVSTORE_POSITION_SEQUENCE		MAKE_SQLSTATE('E','S','0','1','0')
/* distributed mode: the stream's shard is not on this node (not delegated) */
#define ERRCODE_EVSTORE_NOT_STREAM_NODE			MAKE_SQLSTATE('E','S','0','2','0')

/* expected_version special values (EventStoreDB numbering) */
#define EVSTORE_EXPECT_ANY			(-2)
#define EVSTORE_EXPECT_NO_STREAM	(-1)
#define EVSTORE_EXPECT_EXISTS		(-4)

/* Number of consumer-group buckets a stream id hashes into. */
#define EVSTORE_BUCKETS				256

/* Size limits for identifiers, in bytes. */
#define EVSTORE_MAX_ID_BYTES		1024

/* Attribute numbers of evstore.events (1-based, as in the catalog). */
enum
{
	Anum_events_global_position = 1,
	Anum_events_stream_id,
	Anum_events_stream_version,
	Anum_events_event_id,
	Anum_events_event_type,
	Anum_events_data,
	Anum_events_metadata,
	Anum_events_recorded_at,
	Anum_events_category,
	Anum_events_stream_bucket,
	Natts_events = Anum_events_stream_bucket
};

/* Attribute numbers of evstore.streams. */
enum
{
	Anum_streams_stream_id = 1,
	Anum_streams_category,
	Anum_streams_version,
	Anum_streams_first_version,
	Anum_streams_created_at,
	Anum_streams_updated_at,
	Anum_streams_deleted_at,
	Anum_streams_tombstoned,
	Natts_streams = Anum_streams_tombstoned
};

/* OIDs of the extension's objects, cached per backend (catalog.c). */
typedef struct EvstoreCatalog
{
	bool		valid;
	Oid			namespace_oid;
	Oid			events_rel;
	Oid			events_pkey;		/* (global_position) */
	Oid			events_stream_idx;	/* (stream_id, stream_version) */
	Oid			events_id_idx;		/* (event_id) */
	Oid			events_category_idx;	/* (category, global_position) */
	Oid			events_bucket_idx;	/* (stream_bucket, global_position) */
	Oid			streams_rel;
	Oid			streams_pkey;		/* (stream_id) */
	Oid			position_seq;
	Oid			events_type;		/* composite type of evstore.events */
	bool		distributed;	/* the relations are Citus shards (distributed.c) */
	int64		shardid;		/* of the events shard; 0 when not distributed */
} EvstoreCatalog;

/* catalog.c */
extern const EvstoreCatalog *evstore_catalog(void);
extern void evstore_catalog_init(void);
/* evstore's one relcache callback calls func too (see catalog.c) */
extern void evstore_register_relcache_callback(RelcacheCallbackFunction func);

/* distributed.c: Citus shards of the per-stream tables */
extern void evstore_distributed_init(void);
extern bool evstore_distributing(void);
extern bool evstore_is_distributed(void);
extern bool evstore_relation_is_distributed(Oid relid);
extern const EvstoreCatalog *evstore_catalog_for_stream(const char *stream_id, int len);
extern const EvstoreCatalog *evstore_catalog_for_append(const char *stream_id, int len);
extern const EvstoreCatalog *evstore_catalog_for_rel(Oid relid);
extern List *evstore_local_shards(void);

/*
 * The relations read_all scans: evstore.events and its indexes, or one of
 * its Citus shards and the shard's indexes (shard_feed.c).
 */
typedef struct EvstoreEventsRelations
{
	Oid			heap;
	Oid			position_idx;	/* (global_position ...) */
	Oid			category_idx;	/* (category, global_position) */
	Oid			bucket_idx;		/* (stream_bucket, global_position) */
} EvstoreEventsRelations;

/* shard_feed.c */
extern void evstore_shard_relations(int64 shardid, EvstoreEventsRelations *out);
extern int64 evstore_shard_position_floor(Relation shard);
extern bool evstore_is_distributed_coordinator(void);

/* ddl_guard.c */
extern void evstore_ddl_guard_init(void);
extern void evstore_ddl_guard_check(Node *parsetree);
extern bool evstore_own_script_running(void);
extern bool evstore_relation_is_guarded(Oid relid);

/* guard.c */
extern void evstore_guard_init(void);
extern void evstore_guard_copy_from(CopyStmt *stmt);

/* append.c */
typedef struct EvstoreNewEvent
{
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;		/* NULL when absent */
	pg_uuid_t	id;
	bool		has_id;
} EvstoreNewEvent;

typedef struct EvstoreAppendResult
{
	int64		stream_version;
	int64		global_position;
} EvstoreAppendResult;

/*
 * Hook run for each event right after it is inserted, inside the appending
 * transaction, in append order (projections use it).  The slot holds the
 * stored row of evstore.events.  Not run for rows restored by COPY.
 */
typedef void (*evstore_event_hook_type) (Relation events_rel, TupleTableSlot *slot);
extern PGDLLIMPORT evstore_event_hook_type evstore_event_hook;

/*
 * Hook run once at the end of an append, after evstore_event_hook ran for
 * each of its events (not when the append fails): projections release
 * per-append state there.
 */
typedef void (*evstore_batch_end_hook_type) (void);
extern PGDLLIMPORT evstore_batch_end_hook_type evstore_batch_end_hook;

/*
 * Hook run once at the end of every append that wrote events, after its
 * rows are written and visible to the rest of the transaction: the wake-up
 * of consumers (wakeup.c) uses it.
 */
typedef void (*evstore_append_done_hook_type) (const char *stream_id, int sidlen);
extern PGDLLIMPORT evstore_append_done_hook_type evstore_append_done_hook;

extern void evstore_append_init(void);
extern void evstore_check_expected_version(bool has_expected, int64 expected);
extern Datum evstore_append_result_datum(FunctionCallInfo fcinfo,
										 const EvstoreAppendResult *r);
extern void evstore_append_batch(const char *stream_id, int sidlen,
								 EvstoreNewEvent *evs, int n,
								 bool has_expected, int64 expected,
								 EvstoreAppendResult *result);
extern void evstore_parse_event_object(JsonbValue *elem, EvstoreNewEvent *ev);
extern int	evstore_max_batch_events(void);

/* shmem.c */
extern void evstore_shmem_init(void);

/* fence.c */
extern bool evstore_shmem_ready(void);
extern void evstore_require_preload(void);
extern void evstore_fence_init(void);
extern Size evstore_fence_shmem_size(void);
extern void evstore_fence_shmem_startup(void);
extern void evstore_fence_publish(void);
extern int64 evstore_fence_next_position(void);
extern int64 evstore_fence_next_position_after(int64 floor);
extern int64 evstore_fence_horizon(void);
extern int64 evstore_highest_position(Relation heap, Oid position_idx);
extern void evstore_fence_refuse_on_standby(const char *funcname);
extern void evstore_fence_wait_begin(void);
extern void evstore_fence_wait_end(void);
extern uint64 evstore_fence_wait_counter(void);
extern bool evstore_fence_wait_for_change(uint64 seen, TimestampTz not_before,
										  TimestampTz deadline);
extern bool evstore_fence_holds_back(void);
extern int64 evstore_sequence_last_value(Oid seqoid);

/* Databases whose positions the fence can track at once (shared memory). */
#define EVSTORE_FENCE_DATABASES		128

/* streams.c */
typedef struct EvstoreStreamState
{
	bool		exists;			/* a row is in evstore.streams */
	int64		version;		/* last version, -1 when no events */
	int64		first_version;	/* first readable version */
	bool		deleted;		/* soft-deleted (no readable events) */
	bool		tombstoned;
	TimestampTz created_at;
	ItemPointerData tid;		/* of the streams row when exists */
} EvstoreStreamState;

extern void evstore_lock_stream(const char *stream_id, int len);
extern void evstore_stream_state(Relation streams, const char *stream_id,
								 EvstoreStreamState *state);
extern void evstore_stream_state_snapshot(Relation streams, const char *stream_id,
										  Snapshot snapshot, EvstoreStreamState *st);
extern int64 evstore_stream_current_version(const EvstoreStreamState *st);

/* stats.c: counters per database, shown by evstore.stats */
typedef enum EvstoreStat
{
	EVSTORE_STAT_APPENDS,		/* appends that wrote events */
	EVSTORE_STAT_EVENTS,		/* events they wrote */
	EVSTORE_STAT_CONFLICTS,		/* ES001 raised */
	EVSTORE_STAT_RETRIES,		/* appends recognised as idempotent retries */
	EVSTORE_STAT_READ_ALL_CALLS,
	EVSTORE_STAT_READ_ALL_EVENTS,
	EVSTORE_STAT_COUNT
} EvstoreStat;

extern PGDLLIMPORT bool evstore_track_stats;
extern void evstore_stats_init(void);
extern Size evstore_stats_shmem_size(void);
extern void evstore_stats_shmem_startup(void);
extern void evstore_stats_add(EvstoreStat which, uint64 n);

/* count n for a statistic, unless evstore.track_stats is off */
#define evstore_stats_count(which, n) \
	do { \
		if (evstore_track_stats) \
			evstore_stats_add((which), (n)); \
	} while (0)

/* util.c */
extern uint32 evstore_stream_hash(const char *str, int len);
extern int	evstore_category_len(const char *stream_id, int len);
extern void evstore_uuid_v7(unsigned char *out);
extern char *evstore_text_arg(FunctionCallInfo fcinfo, int argno,
							  const char *what, int *len);
extern bool evstore_relation_has_rows(Relation rel);
extern const char *evstore_jsonb_type_name(JsonbValue *v);
extern JsonbValue *evstore_jsonb_key(JsonbContainer *obj, const char *key);
extern void evstore_jsonb_reject_unknown_keys(JsonbContainer *obj,
											  const char *const *keys,
											  const char *what, const char *hint);

/*
 * sandbox.c: running another role's code (a projection's handler, an
 * upcaster's function) in the caller's session, leaving nothing behind
 */
#define EVSTORE_SANDBOX_MAX_LOCKS	64

typedef struct EvstoreLockSet
{
	int			held;			/* lock modes held */
	int			n;
	LOCKTAG		tags[EVSTORE_SANDBOX_MAX_LOCKS];
	LOCKMASK	masks[EVSTORE_SANDBOX_MAX_LOCKS];
} EvstoreLockSet;

typedef struct EvstoreSandbox
{
	/* for the errors; set by the caller */
	const char *kind;			/* "projection": "<kind> \"<name>\" took ..." */
	const char *name;
	const char *inside;			/* "a projection": "cannot run PREPARE inside ..." */
	const char *what;			/* "A projection" runs inside the ... */
	const char *whose;			/* ... "appender's" session */
	/* evstore_sandbox_enter() */
	Oid			save_userid;
	int			save_sec;
	int			nest;
	EvstoreLockSet *prior;
	EvstoreLockSet own;			/* nested: the locks held on entry */
	struct EvstoreSandbox *prev;
} EvstoreSandbox;

extern void evstore_sandbox_init(void);
extern void evstore_sandbox_prepare(EvstoreSandbox *sb, const char *kind, const char *name,
									const char *inside, const char *what, const char *whose);
extern void evstore_sandbox_enter(EvstoreSandbox *sb, Oid role, const char *search_path);
extern void evstore_sandbox_leave(EvstoreSandbox *sb);
extern void evstore_sandbox_abort(EvstoreSandbox *sb);
extern bool evstore_sandbox_active(void);
extern void evstore_sandbox_forget_locks(void);

/* write.c: a tiny executor harness for inserting and updating rows */
typedef struct EvstoreWriter
{
	EState	   *estate;
	ResultRelInfo *rri;
	Relation	rel;
	TupleTableSlot *slot;
	int			insert_options; /* table_tuple_insert options, 0 by default */
} EvstoreWriter;

extern void evstore_writer_open(EvstoreWriter *w, Relation rel);
extern List *evstore_writer_insert(EvstoreWriter *w, Datum *values,
								   bool *nulls, Oid arbiter_index);
extern void evstore_writer_update(EvstoreWriter *w, ItemPointer otid,
								  Datum *values, bool *nulls);
extern void evstore_writer_close(EvstoreWriter *w);

/* streams.c: index lookups */
extern bool evstore_index_lookup(Relation heap, Oid indexoid,
								 ScanKey keys, int nkeys,
								 Snapshot snapshot, TupleTableSlot *slot);

#endif							/* EVSTORE_H */
