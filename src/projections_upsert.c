/*-------------------------------------------------------------------------
 *
 * projections_upsert.c
 *	  The fast path of attribute-sync projections: the upsert of one read
 *	  model row done directly through the table AM, with the semantics of
 *	  INSERT ... ON CONFLICT (key) DO UPDATE SET <carried columns>, but
 *	  without SPI, plan revalidation or executor start-up per event.
 *
 * What it does, in the order the executor does it for ON CONFLICT:
 *	 1. build the proposed row: the key, the columns the event carries, the
 *		defaults of all other columns (evaluated per row, so now() and
 *		nextval() work), and check NOT NULL and CHECK constraints on it;
 *	 2. pre-check the key's unique index with a dirty snapshot, waiting for
 *		in-progress inserters (ExecCheckIndexConstraints);
 *	 3. a conflicting row: lock it (waiting); if it was concurrently updated
 *		or deleted, start again at 2 (READ COMMITTED) or raise 40001
 *		(REPEATABLE READ and SERIALIZABLE, also when the locked row is not
 *		visible to the transaction snapshot); then update it, keeping the
 *		columns the event does not carry;
 *	 4. no conflicting row: insert speculatively, insert the index entries
 *		with the key index as arbiter, and start again at 2 when another
 *		session inserted the same key meanwhile;
 *	 5. queue AFTER ROW triggers (foreign keys included) and fire them at
 *		the end of the upsert, as the end of an SQL statement would.
 *
 * The executor state (table and indexes opened, slots, compiled defaults)
 * is kept for the events of one append and released at its end, so a batch
 * pays for it once.  It also remembers where the rows this append wrote
 * are: a later event of the same append with the same key (every event of
 * a batch, when the key is the stream id) updates that row version
 * directly, without the index look-up and the row lock, once it has
 * checked that the version is still the row's latest (nothing else in the
 * transaction updated or deleted it meanwhile).  No other transaction can
 * have changed it: it is ours and uncommitted.
 *
 * Only targets where this equals the SQL statement take this path
 * (proj_upsert_unsupported); projections.c runs everything else through
 * its SPI plans.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"
#include "compat.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/*
 * A row version written by the current append: its key (unpacked, in the
 * state's memory) and where it is.
 */
#define UPSERT_OWN_ROWS 32

typedef struct OwnRow
{
	bool		used;
	uint32		hash;
	Size		klen;
	char	   *kbytes;			/* the key's bytes (a varlena's data) */
	ItemPointerData tid;
} OwnRow;

/*
 * The executor state of the upserts into one target.  It is built at the
 * first upsert of an append and kept for the following events of the same
 * append (so a batch of events pays for it once), then released at the end
 * of the batch (proj_upsert_release).  An error in between leaves it to the
 * (sub)transaction abort: proj_upsert_forget drops it without touching what
 * the abort cleans up itself.
 */
typedef struct UpsertState
{
	EState	   *estate;
	ResultRelInfo *rri;
	EvstoreColumnSets *cols;	/* where insertedCols/updatedCols live */
	Relation	rel;			/* opened by us, RowExclusiveLock */
	TupleTableSlot *proposed;	/* the row to insert */
	TupleTableSlot *existing;	/* the conflicting row, locked */
	TupleTableSlot *updated;	/* the new version of the existing row */
	ExprState **defaults;		/* per column, initialized on first use */
	bool		triggers;		/* AFTER ROW triggers to fire */
	bool		busy;			/* inside an upsert */
	OwnRow		own[UPSERT_OWN_ROWS];	/* rows this append wrote */
	int			own_next;		/* the entry to replace next */
	ResourceOwner owner;		/* that holds our references */
	SubTransactionId subid;		/* where it was built */
} UpsertState;

struct ProjUpsert
{
	Oid			relid;
	Oid			keyindex;		/* unique index on the key column alone */
	AttrNumber	keyatt;
	int16		keylen;			/* the key column's typlen and typbyval */
	bool		keybyval;
	int			natts;
	Expr	  **defaults;		/* per column: planned default, NULL: null */
	UpsertState *st;			/* while an append runs */
};

/*
 * Why the fast path cannot stand in for INSERT ... ON CONFLICT on this
 * table, or NULL when it can.  Every property checked here changes only
 * with a relcache invalidation of the table.
 */
const char *
proj_upsert_unsupported(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;
	TupleDesc	tupdesc = RelationGetDescr(rel);

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		return "it is not a plain table";
	if (evstore_relation_is_distributed(RelationGetRelid(rel)))
		return "it is a Citus table (SQL lets Citus route the row to its shard)";
	if (rel->rd_rel->relrowsecurity)
		return "it has row-level security enabled";
	if (rel->rd_rules != NULL)
		return "it has rules";
	if (tupdesc->constr && tupdesc->constr->has_generated_stored)
		return "it has stored generated columns";
	if (td)
	{
		if (td->trig_insert_before_row || td->trig_update_before_row)
			return "it has BEFORE ROW triggers";
		if (td->trig_insert_instead_row || td->trig_update_instead_row)
			return "it has INSTEAD OF triggers";
		if (td->trig_insert_before_statement || td->trig_insert_after_statement ||
			td->trig_update_before_statement || td->trig_update_after_statement)
			return "it has statement-level triggers";
		if (td->trig_insert_new_table || td->trig_update_old_table ||
			td->trig_update_new_table)
			return "it has triggers with transition tables";
	}
	return NULL;
}

/*
 * Describe the target for the fast path: the planned default expression
 * of every column (as the rewriter and planner would put them into an
 * INSERT that leaves the column out).  Allocated in cxt.
 */
ProjUpsert *
proj_upsert_prepare(Relation rel, AttrNumber keyatt, Oid keyindex, MemoryContext cxt)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	ProjUpsert *u;
	MemoryContext old;

	old = MemoryContextSwitchTo(cxt);
	u = palloc0(sizeof(ProjUpsert));
	u->relid = RelationGetRelid(rel);
	u->keyindex = keyindex;
	u->keyatt = keyatt;
	u->keylen = TupleDescAttr(tupdesc, keyatt - 1)->attlen;
	u->keybyval = TupleDescAttr(tupdesc, keyatt - 1)->attbyval;
	u->natts = tupdesc->natts;
	u->defaults = palloc0(sizeof(Expr *) * Max(tupdesc->natts, 1));
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		Node	   *expr;

		if (att->attisdropped)
			continue;
		expr = build_column_default(rel, i + 1);
		if (expr == NULL)
		{
			/* a null, which a domain's constraints must accept */
			expr = (Node *) makeConst(att->atttypid, -1, att->attcollation,
									  att->attlen, (Datum) 0, true, att->attbyval);
			expr = coerce_to_domain(expr, InvalidOid, -1, att->atttypid,
									COERCION_IMPLICIT, COERCE_IMPLICIT_CAST, -1, false);
		}
		expr = (Node *) expression_planner((Expr *) expr);
		if (IsA(expr, Const) && ((Const *) expr)->constisnull)
			continue;
		u->defaults[i] = (Expr *) expr;
	}
	MemoryContextSwitchTo(old);
	return u;
}

static UpsertState *
upsert_open(ProjUpsert *u)
{
	UpsertState *us;
	EState	   *estate;
	EvstoreColumnSets *cols;
	ResultRelInfo *rri;
	Relation	rel;
	MemoryContext old;

	rel = table_open(u->relid, RowExclusiveLock);

	/* until the end of the append, but an abort frees it */
	old = MemoryContextSwitchTo(TopTransactionContext);
	estate = CreateExecutorState();
	MemoryContextSwitchTo(estate->es_query_cxt);
	us = palloc0(sizeof(UpsertState));
	rri = makeNode(ResultRelInfo);
	cols = evstore_init_range_table(estate, rel, RowExclusiveLock);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	/* as ExecInitResultRelation: closed by ExecCloseResultRelations */
	estate->es_opened_result_relations = lappend(estate->es_opened_result_relations, rri);
	ExecOpenIndices(rri, true);

	us->estate = estate;
	us->rri = rri;
	us->cols = cols;
	us->rel = rel;
	us->proposed = table_slot_create(rel, &estate->es_tupleTable);
	us->existing = table_slot_create(rel, &estate->es_tupleTable);
	us->updated = table_slot_create(rel, &estate->es_tupleTable);
	us->defaults = palloc0(sizeof(ExprState *) * Max(u->natts, 1));
	us->triggers = rri->ri_TrigDesc &&
		(rri->ri_TrigDesc->trig_insert_after_row || rri->ri_TrigDesc->trig_update_after_row);
	us->owner = CurrentResourceOwner;
	us->subid = GetCurrentSubTransactionId();
	MemoryContextSwitchTo(old);
	u->st = us;
	return us;
}

/*
 * Release the executor state at the end of an append (or a rebuild): close
 * the indexes and the table (the lock stays until the transaction ends).
 */
void
proj_upsert_release(ProjUpsert *u)
{
	UpsertState *us = u->st;
	ResourceOwner save;

	if (us == NULL)
		return;
	u->st = NULL;
	if (us->busy)
		return;					/* cannot happen: an error aborts first */
	save = CurrentResourceOwner;
	CurrentResourceOwner = us->owner;
	ExecCloseResultRelations(us->estate);
	ExecResetTupleTable(us->estate->es_tupleTable, false);
	table_close(us->rel, NoLock);
	CurrentResourceOwner = save;
	FreeExecutorState(us->estate);
}

/*
 * The (sub)transaction that built the state aborts (subid: the aborting
 * subtransaction, InvalidSubTransactionId: the whole transaction): its
 * resource owner releases the references and buffer pins, its memory goes
 * with the transaction.  Only forget it.
 */
void
proj_upsert_forget(ProjUpsert *u, SubTransactionId subid)
{
	if (u->st != NULL && (subid == InvalidSubTransactionId || u->st->subid == subid))
		u->st = NULL;
}

/* Did this transaction write the row version in the slot? */
static bool
written_by_us(TupleTableSlot *slot)
{
	bool		isnull;

	return TransactionIdIsCurrentTransactionId(
		DatumGetTransactionId(slot_getsysattr(slot, MinTransactionIdAttributeNumber, &isnull)));
}

/*
 * Under REPEATABLE READ and SERIALIZABLE, a conflicting row that the
 * transaction snapshot cannot see was committed after the snapshot was
 * taken: updating it (or skipping the insert because of it) would act on a
 * row the transaction does not know.  As ON CONFLICT, raise 40001, except
 * for rows this transaction wrote itself.
 */
static void
check_visible(UpsertState *us, TupleTableSlot *slot)
{
	if (!IsolationUsesXactSnapshot())
		return;
	if (table_tuple_satisfies_snapshot(us->rel, slot, us->estate->es_snapshot))
		return;
	if (!written_by_us(slot))
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
}

static void apply_update(UpsertState *us, ItemPointer tid, const AttrNumber *atts,
						 const Datum *values, const bool *nulls, int n,
						 ItemPointer newtid);

/*
 * Lock the conflicting row at tid and update it with the carried columns
 * (its new place goes to newtid).  Returns false when the row changed
 * under us: the caller starts over.
 */
static bool
update_existing(UpsertState *us, ItemPointer tid, const AttrNumber *atts,
				const Datum *values, const bool *nulls, int n, ItemPointer newtid)
{
	EState	   *estate = us->estate;
	TupleTableSlot *existing = us->existing;
	TM_FailureData tmfd;
	TM_Result	res;
	LockTupleMode lockmode = ExecUpdateLockMode(estate, us->rri);

	res = table_tuple_lock(us->rel, tid, estate->es_snapshot, existing,
						   estate->es_output_cid, lockmode, LockWaitBlock, 0, &tmfd);
	switch (res)
	{
		case TM_Ok:
			break;
		case TM_Updated:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update")));
			ExecClearTuple(existing);
			return false;
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent delete")));
			ExecClearTuple(existing);
			return false;
		case TM_Invisible:
		case TM_SelfModified:
			/* each upsert runs in a command of its own: cannot happen */
			elog(ERROR, "evstore: conflicting row of \"%s\" was modified by this command",
				 RelationGetRelationName(us->rel));
			break;
		default:
			elog(ERROR, "evstore: unexpected table_tuple_lock result %d", (int) res);
	}
	apply_update(us, tid, atts, values, nulls, n, newtid);
	return true;
}

/*
 * Update the row version at tid, which is in us->existing and locked by
 * this transaction, with the carried columns.  Its new place goes to newtid.
 */
static void
apply_update(UpsertState *us, ItemPointer tid, const AttrNumber *atts,
			 const Datum *values, const bool *nulls, int n, ItemPointer newtid)
{
	EState	   *estate = us->estate;
	TupleTableSlot *existing = us->existing;
	TupleTableSlot *upd = us->updated;
	TM_FailureData tmfd;
	TM_Result	res;
	LockTupleMode lockmode;
	int			natts = RelationGetDescr(us->rel)->natts;
	List	   *recheck = NIL;
	EvstoreUpdateIndexes update_indexes;

	check_visible(us, existing);

	/* the new version: the existing row with the carried columns replaced */
	slot_getallattrs(existing);
	ExecClearTuple(upd);
	memcpy(upd->tts_values, existing->tts_values, natts * sizeof(Datum));
	memcpy(upd->tts_isnull, existing->tts_isnull, natts * sizeof(bool));
	for (int i = 0; i < n; i++)
	{
		upd->tts_values[atts[i] - 1] = values[i];
		upd->tts_isnull[atts[i] - 1] = nulls[i];
	}
	ExecStoreVirtualTuple(upd);
	if (us->rel->rd_att->constr)
		ExecConstraints(us->rri, upd, estate);

	res = table_tuple_update(us->rel, tid, upd, estate->es_output_cid,
							 estate->es_snapshot, InvalidSnapshot, true,
							 &tmfd, &lockmode, &update_indexes);
	if (res != TM_Ok)
		elog(ERROR, "evstore: could not update the locked row of \"%s\": result %d",
			 RelationGetRelationName(us->rel), (int) res);
	ItemPointerCopy(&upd->tts_tid, newtid);
	if (EVSTORE_UPDATE_NEEDS_INDEXES(update_indexes) && us->rri->ri_NumIndices > 0)
		recheck = evstore_insert_index_tuples(us->rri, upd, estate, true, false, NULL, NIL,
											  EVSTORE_UPDATE_ONLY_SUMMARIZING(update_indexes));
	if (us->rri->ri_TrigDesc && us->rri->ri_TrigDesc->trig_update_after_row)
		ExecARUpdateTriggers(estate, us->rri, NULL, NULL, tid, NULL, upd, recheck,
							 NULL, false);
	list_free(recheck);
	ExecClearTuple(existing);
}

/* Under REPEATABLE READ, DO NOTHING checks the conflicting row too. */
static void
check_tid_visible(UpsertState *us, ItemPointer tid)
{
	if (!IsolationUsesXactSnapshot())
		return;
	if (!table_tuple_fetch_row_version(us->rel, tid, SnapshotAny, us->existing))
		elog(ERROR, "evstore: failed to fetch the conflicting row of \"%s\"",
			 RelationGetRelationName(us->rel));
	check_visible(us, us->existing);
	ExecClearTuple(us->existing);
}

/* The bytes that identify a key: a by-value datum, or the data of a
 * by-reference one (a varlena without its header, however it is stored). */
static const char *
key_bytes(const ProjUpsert *u, Datum *key, Size *len)
{
	if (u->keybyval)
	{
		*len = sizeof(Datum);
		return (const char *) key;
	}
	if (u->keylen == -1)
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(*key);

		*len = VARSIZE_ANY_EXHDR(v);
		return VARDATA_ANY(v);
	}
	if (u->keylen == -2)
	{
		*len = strlen(DatumGetCString(*key));
		return DatumGetCString(*key);
	}
	*len = u->keylen;
	return DatumGetPointer(*key);
}

static OwnRow *
own_find(UpsertState *us, const char *kb, Size klen, uint32 hash)
{
	for (int i = 0; i < UPSERT_OWN_ROWS; i++)
	{
		OwnRow	   *r = &us->own[i];

		if (r->used && r->hash == hash && r->klen == klen &&
			memcmp(r->kbytes, kb, klen) == 0)
			return r;
	}
	return NULL;
}

/* This append wrote the row for the key at tid. */
static void
own_remember(UpsertState *us, OwnRow *r, const char *kb, Size klen, uint32 hash,
			 ItemPointer tid)
{
	if (r == NULL)
	{
		r = &us->own[us->own_next];
		us->own_next = (us->own_next + 1) % UPSERT_OWN_ROWS;
		if (r->used)
			pfree(r->kbytes);
		r->kbytes = MemoryContextAlloc(us->estate->es_query_cxt, Max(klen, 1));
		memcpy(r->kbytes, kb, klen);
		r->klen = klen;
		r->hash = hash;
		r->used = true;
	}
	ItemPointerCopy(tid, &r->tid);
}

/*
 * Is the row version this append wrote at r->tid still the row's latest
 * (not updated or deleted since, by a handler, a trigger or another
 * projection of this transaction)?  Then it is in us->existing, and no
 * other transaction can touch it until this one ends.
 */
static bool
own_is_current(UpsertState *us, OwnRow *r)
{
	if (!table_tuple_fetch_row_version(us->rel, &r->tid, SnapshotSelf, us->existing))
		return false;
	if (!written_by_us(us->existing))
	{
		ExecClearTuple(us->existing);
		return false;
	}
	return true;
}

/*
 * INSERT INTO rel (key, atts...) VALUES (key, values...)
 *	 ON CONFLICT (key) DO UPDATE SET atts = EXCLUDED.atts
 * (DO NOTHING when n is 0).  The caller has checked the privileges and
 * proj_upsert_unsupported().  Returns false, doing nothing, when *stale
 * is set once the table is open and locked (an invalidation of the table
 * was processed): the caller then takes the SPI way.
 */
bool
proj_upsert_exec(ProjUpsert *u, const bool *stale, Datum key,
				 const AttrNumber *atts, const Datum *values, const bool *nulls, int n)
{
	UpsertState *us = u->st;
	EState	   *estate;
	ExprContext *econtext;
	TupleTableSlot *slot;
	Relation	rel;
	int			natts = u->natts;
	List	   *arbiters;
	bool		pushed = false;
	MemoryContext old;
	const char *kb;
	Size		klen;
	uint32		khash;
	OwnRow	   *own;
	ItemPointerData newtid;

	if (us == NULL)
		us = upsert_open(u);
	/* locking the table may have processed an invalidation of it */
	if (*stale || RelationGetDescr(us->rel)->natts != u->natts)
	{
		proj_upsert_release(u);
		return false;
	}
	rel = us->rel;
	estate = us->estate;
	us->busy = true;

	/* each upsert is a command of its own, as it was through SPI */
	CommandCounterIncrement();
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed = true;
	}
	/* the snapshot INSERT would use for its visibility checks */
	estate->es_snapshot = IsolationUsesXactSnapshot() ? GetTransactionSnapshot() :
		GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);
	ResetPerTupleExprContext(estate);
	econtext = GetPerTupleExprContext(estate);

	old = MemoryContextSwitchTo(estate->es_query_cxt);
	arbiters = list_make1_oid(u->keyindex);
	bms_free(us->cols->insertedCols);
	bms_free(us->cols->updatedCols);
	us->cols->insertedCols = bms_make_singleton(u->keyatt - FirstLowInvalidHeapAttributeNumber);
	us->cols->updatedCols = NULL;
	for (int i = 0; i < n; i++)
	{
		us->cols->insertedCols = bms_add_member(us->cols->insertedCols,
											   atts[i] - FirstLowInvalidHeapAttributeNumber);
		us->cols->updatedCols = bms_add_member(us->cols->updatedCols,
											  atts[i] - FirstLowInvalidHeapAttributeNumber);
	}

	/* the proposed row: key, carried columns, defaults */
	slot = us->proposed;
	ExecClearTuple(slot);
	for (int i = 0; i < natts; i++)
	{
		slot->tts_values[i] = (Datum) 0;
		slot->tts_isnull[i] = true;
	}
	slot->tts_values[u->keyatt - 1] = key;
	slot->tts_isnull[u->keyatt - 1] = false;
	for (int i = 0; i < n; i++)
	{
		slot->tts_values[atts[i] - 1] = values[i];
		slot->tts_isnull[atts[i] - 1] = nulls[i];
	}
	for (int i = 0; i < natts; i++)
	{
		bool		carried = (i + 1 == u->keyatt);

		for (int k = 0; k < n && !carried; k++)
			carried = (atts[k] == i + 1);
		if (carried || u->defaults[i] == NULL)
			continue;
		if (us->defaults[i] == NULL)
			us->defaults[i] = ExecInitExpr(u->defaults[i], NULL);
		slot->tts_values[i] = ExecEvalExprSwitchContext(us->defaults[i], econtext,
														&slot->tts_isnull[i]);
	}
	ExecStoreVirtualTuple(slot);
	MemoryContextSwitchTo(old);

	if (us->triggers)
		AfterTriggerBeginQuery();
	if (rel->rd_att->constr)
		ExecConstraints(us->rri, slot, estate);

	/* a row this append wrote already? */
	kb = key_bytes(u, &key, &klen);
	khash = hash_bytes((const unsigned char *) kb, (int) klen);
	own = own_find(us, kb, klen, khash);
	if (own != NULL && !own_is_current(us, own))
	{
		pfree(own->kbytes);
		own->used = false;
		own = NULL;
	}

	if (own != NULL && n == 0)
		;						/* DO NOTHING: it is there */
	else if (own != NULL)
	{
		apply_update(us, &own->tid, atts, values, nulls, n, &newtid);
		own_remember(us, own, kb, klen, khash, &newtid);
	}
	else
	{
		/* the ON CONFLICT way: look the key up, update or insert */
		for (;;)
		{
			ItemPointerData conflict;
			uint32		token;
			bool		spec_conflict = false;
			List	   *recheck;

			CHECK_FOR_INTERRUPTS();
			if (!evstore_check_index_constraints(us->rri, slot, estate, &conflict, NULL, arbiters))
			{
				if (n == 0)
				{
					check_tid_visible(us, &conflict);
					break;
				}
				if (update_existing(us, &conflict, atts, values, nulls, n, &newtid))
				{
					own_remember(us, NULL, kb, klen, khash, &newtid);
					break;
				}
				continue;
			}

			/* no row with the key yet: insert, unless someone beats us to it */
			token = SpeculativeInsertionLockAcquire(GetCurrentTransactionId());
			table_tuple_insert_speculative(rel, slot, estate->es_output_cid, 0, NULL, token);
			recheck = evstore_insert_index_tuples(us->rri, slot, estate, false, true,
												  &spec_conflict, arbiters, false);
			table_tuple_complete_speculative(rel, slot, token, !spec_conflict);
			SpeculativeInsertionLockRelease(GetCurrentTransactionId());
			if (spec_conflict)
			{
				list_free(recheck);
				continue;
			}
			if (us->rri->ri_TrigDesc && us->rri->ri_TrigDesc->trig_insert_after_row)
				ExecARInsertTriggers(estate, us->rri, slot, recheck, NULL);
			list_free(recheck);
			own_remember(us, NULL, kb, klen, khash, &slot->tts_tid);
			break;
		}
	}

	/* fires the queued AFTER ROW triggers, foreign key checks among them */
	if (us->triggers)
		AfterTriggerEndQuery(estate);
	ExecClearTuple(us->proposed);
	ExecClearTuple(us->existing);
	ExecClearTuple(us->updated);
	list_free(arbiters);
	us->busy = false;
	if (pushed)
		PopActiveSnapshot();
	CommandCounterIncrement();
	return true;
}
