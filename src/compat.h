/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL majors evstore builds against.
 *
 * The rest of evstore calls the evstore_* wrappers and names below and
 * never tests PG_VERSION_NUM itself, so porting to a new major means
 * changing this header only.  Each wrapper takes the newest argument list
 * and drops what an older major has no use for.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_COMPAT_H
#define EVSTORE_COMPAT_H

#include "postgres.h"

#include "access/genam.h"
#include "access/tableam.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/reorderbuffer.h"
#include "port/pg_bitutils.h"
#include "storage/lock.h"
#include "storage/lockdefs.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/rel.h"

#if PG_VERSION_NUM >= 160000
#include "catalog/pg_proc.h"
#endif

/*
 * Where the executor looks for the columns an INSERT or UPDATE sets
 * (insertedCols, updatedCols; AFTER UPDATE OF triggers read them): the range
 * table entry up to 15, its RTEPermissionInfo from 16 on.
 */
#if PG_VERSION_NUM >= 160000
typedef RTEPermissionInfo EvstoreColumnSets;
#else
typedef RangeTblEntry EvstoreColumnSets;
#endif

/*
 * A range table of one relation for an executor state of evstore's own
 * (write.c, projections_upsert.c); returns where its column sets live.
 * evstore checks privileges itself, so requiredPerms stays empty.
 */
static inline EvstoreColumnSets *
evstore_init_range_table(EState *estate, Relation rel, LOCKMODE lockmode)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = lockmode;
#if PG_VERSION_NUM >= 160000
	{
		RTEPermissionInfo *perm = makeNode(RTEPermissionInfo);

		perm->relid = rte->relid;
		perm->inh = false;
		perm->requiredPerms = 0;
		perm->checkAsUser = InvalidOid;
		rte->perminfoindex = 1;
#if PG_VERSION_NUM >= 180000
		ExecInitRangeTable(estate, list_make1(rte), list_make1(perm),
						   bms_make_singleton(1));
#else
		ExecInitRangeTable(estate, list_make1(rte), list_make1(perm));
#endif
		return perm;
	}
#else
	ExecInitRangeTable(estate, list_make1(rte));
	return rte;
#endif
}

/* ExecInsertIndexTuples: "onlySummarizing" exists from 16 on */
static inline List *
evstore_insert_index_tuples(ResultRelInfo *rri, TupleTableSlot *slot,
							EState *estate, bool update, bool noDupErr,
							bool *specConflict, List *arbiterIndexes,
							bool onlySummarizing)
{
#if PG_VERSION_NUM >= 160000
	return ExecInsertIndexTuples(rri, slot, estate, update, noDupErr,
								 specConflict, arbiterIndexes, onlySummarizing);
#else
	return ExecInsertIndexTuples(rri, slot, estate, update, noDupErr,
								 specConflict, arbiterIndexes);
#endif
}

/* ExecCheckIndexConstraints: the updated tuple's id exists from 18 on */
static inline bool
evstore_check_index_constraints(ResultRelInfo *rri, TupleTableSlot *slot,
								EState *estate, ItemPointer conflictTid,
								ItemPointer tupleid, List *arbiterIndexes)
{
#if PG_VERSION_NUM >= 180000
	return ExecCheckIndexConstraints(rri, slot, estate, conflictTid, tupleid,
									 arbiterIndexes);
#else
	return ExecCheckIndexConstraints(rri, slot, estate, conflictTid,
									 arbiterIndexes);
#endif
}

/*
 * What table_tuple_update says about the indexes: a bool up to 15, a
 * three-way TU_UpdateIndexes from 16 on (summarizing indexes only).
 */
#if PG_VERSION_NUM >= 160000
typedef TU_UpdateIndexes EvstoreUpdateIndexes;
#define EVSTORE_UPDATE_NEEDS_INDEXES(u)		((u) != TU_None)
#define EVSTORE_UPDATE_ONLY_SUMMARIZING(u)	((u) == TU_Summarizing)
#else
typedef bool EvstoreUpdateIndexes;
#define EVSTORE_UPDATE_NEEDS_INDEXES(u)		(u)
#define EVSTORE_UPDATE_ONLY_SUMMARIZING(u)	false
#endif

/* index_beginscan: an instrumentation argument exists from 18 on */
static inline IndexScanDesc
evstore_index_beginscan(Relation heap, Relation index, Snapshot snapshot,
						int nkeys, int norderbys)
{
#if PG_VERSION_NUM >= 180000
	return index_beginscan(heap, index, snapshot, NULL, nkeys, norderbys);
#else
	return index_beginscan(heap, index, snapshot, nkeys, norderbys);
#endif
}

/* pg_proc_aclcheck gave way to object_aclcheck in 16 */
static inline AclResult
evstore_proc_aclcheck(Oid proc, Oid roleid, AclMode mode)
{
#if PG_VERSION_NUM >= 160000
	return object_aclcheck(ProcedureRelationId, proc, roleid, mode);
#else
	return pg_proc_aclcheck(proc, roleid, mode);
#endif
}

/*
 * This backend's 0-based slot among MaxBackends, or -1 when it has none:
 * MyBackendId (1-based) up to 16, MyProcNumber (0-based) from 17 on.
 */
static inline int
evstore_my_backend_slot(void)
{
#if PG_VERSION_NUM >= 170000
	return MyProcNumber == INVALID_PROC_NUMBER ? -1 : (int) MyProcNumber;
#else
	return MyBackendId == InvalidBackendId ? -1 : (int) MyBackendId - 1;
#endif
}

/* The new tuple of a decoded change: a HeapTuple from 17 on */
#if PG_VERSION_NUM >= 170000
#define EVSTORE_CHANGE_NEWTUPLE(change)		((change)->data.tp.newtuple)
#else
#define EVSTORE_CHANGE_NEWTUPLE(change)		(&(change)->data.tp.newtuple->tuple)
#endif

/* base64 of common/base64.h: uint8 buffers from 18 on */
#if PG_VERSION_NUM >= 180000
typedef uint8 evstore_b64_byte;
#else
typedef char evstore_b64_byte;
#endif

/*
 * The advisory locks this backend holds (session or transaction level), read
 * from its own PROCLOCK lists under their partition locks (other backends
 * may add to them when they transfer fast-path locks): the number of lock
 * modes held, and up to max of the locks with their modes in tags/masks.
 * The lists are SHM_QUEUEs up to 15, dlists from 16 on.
 */
static inline int
evstore_advisory_holds(LOCKTAG *tags, LOCKMASK *masks, int max, int *nfilled)
{
	int			held = 0;
	int			n = 0;

	for (int i = 0; i < NUM_LOCK_PARTITIONS; i++)
	{
		LWLock	   *plock = LockHashPartitionLockByIndex(i);

		LWLockAcquire(plock, LW_SHARED);
#if PG_VERSION_NUM >= 160000
		{
			dlist_iter	iter;

			dlist_foreach(iter, &MyProc->myProcLocks[i])
			{
				PROCLOCK   *pl = dlist_container(PROCLOCK, procLink, iter.cur);
#else
		{
			SHM_QUEUE  *head = &MyProc->myProcLocks[i];
			PROCLOCK   *pl;

			for (pl = (PROCLOCK *) SHMQueueNext(head, head, offsetof(PROCLOCK, procLink));
				 pl != NULL;
				 pl = (PROCLOCK *) SHMQueueNext(head, &pl->procLink, offsetof(PROCLOCK, procLink)))
			{
#endif
				if (pl->tag.myLock->tag.locktag_type != LOCKTAG_ADVISORY ||
					pl->holdMask == 0)
					continue;
				held += pg_popcount32((uint32) pl->holdMask);
				if (tags != NULL && n < max)
				{
					tags[n] = pl->tag.myLock->tag;
					masks[n] = pl->holdMask;
					n++;
				}
			}
		}
		LWLockRelease(plock);
	}
	if (nfilled)
		*nfilled = n;
	return held;
}

/* whether a collation sorts by bytes (C, POSIX): lc_collate_is_c went in 18 */
#include "utils/pg_locale.h"

static inline bool
evstore_collation_is_c(Oid collid)
{
#if PG_VERSION_NUM >= 180000
	return pg_newlocale_from_collation(collid)->collate_is_c;
#else
	return lc_collate_is_c(collid);
#endif
}

/*
 * The wait event a sleep of evstore reports in pg_stat_activity: its own
 * name from 17 on (wait_event_type "Extension" everywhere), plain
 * "Extension" before.  Call it in a backend, not in the postmaster.
 */
#include "utils/wait_event.h"

static inline uint32
evstore_wait_event(const char *name)
{
#if PG_VERSION_NUM >= 170000
	return WaitEventExtensionNew(name);
#else
	return PG_WAIT_EXTENSION;
#endif
}

#endif							/* EVSTORE_COMPAT_H */
