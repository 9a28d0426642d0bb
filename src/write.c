/*-------------------------------------------------------------------------
 *
 * write.c
 *	  A minimal executor harness to insert and update rows of evstore's
 *	  tables from C: heap insert/update, index maintenance, constraint
 *	  checks and AFTER ROW triggers, without SPI or planning.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "compat.h"

#include "access/tableam.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "parser/parsetree.h"
#include "utils/rel.h"

void
evstore_writer_open(EvstoreWriter *w, Relation rel)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);

	(void) evstore_init_range_table(estate, rel, RowExclusiveLock);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(rri, false);

	w->estate = estate;
	w->rri = rri;
	w->rel = rel;
	w->slot = table_slot_create(rel, &estate->es_tupleTable);
	w->insert_options = 0;

	if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_after_row)
		AfterTriggerBeginQuery();
}

/*
 * Put a row into the writer's slot.  Everything the previous row left in
 * the per-tuple memory (constraint checks, index expressions and
 * predicates, index tuples) is freed first, so a writer that inserts or
 * updates any number of rows uses bounded memory, as the executor does by
 * resetting its per-tuple context for every row.
 */
static void
fill_slot(EvstoreWriter *w, Datum *values, bool *nulls)
{
	TupleTableSlot *slot = w->slot;
	int			natts = slot->tts_tupleDescriptor->natts;

	ResetPerTupleExprContext(w->estate);
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, nulls, natts * sizeof(bool));
	ExecStoreVirtualTuple(slot);
	if (w->rel->rd_att->constr)
		ExecConstraints(w->rri, slot, w->estate);
}

/*
 * Insert one row.  When arbiter_index is valid, a uniqueness conflict on
 * that index does not raise an error: the index OID is returned in the
 * list instead, and the caller decides (the row stays inserted, so the
 * caller must raise an error to roll it back).
 */
List *
evstore_writer_insert(EvstoreWriter *w, Datum *values, bool *nulls,
					  Oid arbiter_index)
{
	List	   *conflicts = NIL;
	bool		spec_conflict = false;

	fill_slot(w, values, nulls);
	table_tuple_insert(w->rel, w->slot, w->estate->es_output_cid,
					   w->insert_options, NULL);
	if (w->rri->ri_NumIndices > 0)
	{
		List	   *arbiters = OidIsValid(arbiter_index) ? list_make1_oid(arbiter_index) : NIL;

		conflicts = evstore_insert_index_tuples(w->rri, w->slot, w->estate, false,
												arbiters != NIL, &spec_conflict,
												arbiters, false);
	}
	if (w->rri->ri_TrigDesc && w->rri->ri_TrigDesc->trig_insert_after_row)
		ExecARInsertTriggers(w->estate, w->rri, w->slot, NIL, NULL);
	return conflicts;
}

/*
 * Update the row at otid.  Callers hold the stream's lock, so nobody else
 * can be updating the same row.
 */
void
evstore_writer_update(EvstoreWriter *w, ItemPointer otid, Datum *values, bool *nulls)
{
	TM_Result	res;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	EvstoreUpdateIndexes update_indexes;

	fill_slot(w, values, nulls);
	res = table_tuple_update(w->rel, otid, w->slot, w->estate->es_output_cid,
							 InvalidSnapshot, InvalidSnapshot, true,
							 &tmfd, &lockmode, &update_indexes);
	if (res != TM_Ok)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not update row of \"%s\": concurrent change",
						RelationGetRelationName(w->rel))));
	if (EVSTORE_UPDATE_NEEDS_INDEXES(update_indexes) && w->rri->ri_NumIndices > 0)
		evstore_insert_index_tuples(w->rri, w->slot, w->estate, true, false, NULL, NIL,
									EVSTORE_UPDATE_ONLY_SUMMARIZING(update_indexes));
}

void
evstore_writer_close(EvstoreWriter *w)
{
	if (w->rri->ri_TrigDesc && w->rri->ri_TrigDesc->trig_insert_after_row)
		AfterTriggerEndQuery(w->estate);
	ExecCloseIndices(w->rri);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
}
