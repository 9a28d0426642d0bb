/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Append-only enforcement.
 *
 * Statement-level BEFORE triggers on evstore.events and evstore.streams
 * refuse UPDATE, DELETE and TRUNCATE for every role.  They are enabled
 * ALWAYS, so session_replication_role cannot switch them off, and DDL that
 * would disable or drop them is refused (ddl_guard.c, and the
 * evstore_guard_ddl event trigger here).
 *
 * Direct INSERT (or MERGE) into either table is refused by an ExecutorStart
 * hook, for every role: it would bypass versions, the streams row, category
 * and bucket, and the fence.  evstore's own C code writes through the table
 * AM and runs no plan.  COPY FROM, which runs no plan either, is how
 * pg_restore fills the tables: it is allowed only into an empty table.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "parser/parsetree.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

static ExecutorStart_hook_type prev_executor_start = NULL;

/* The refusal of a direct write, from the triggers and the executor hook. */
static void
refuse_write(const char *op, const char *relname)
{
	bool		is_events = strcmp(relname, "events") == 0;

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on evstore.%s is not allowed", op, relname),
			 is_events ?
			 errdetail("The event store is append-only for every role, the owner included.") :
			 errdetail("evstore.%s is maintained by evstore's own functions.", relname),
			 is_events ?
			 errhint("Append a compensating event, or retire the stream with evstore.delete_stream().") :
			 errhint("Use evstore.append_event(), evstore.delete_stream() or evstore.tombstone_stream().")));
}

/* name is "events" or "streams", or a Citus shard of one (events_102008) */
static bool
written_name(const char *name)
{
	size_t		len;

	if (strcmp(name, "events") == 0 || strcmp(name, "streams") == 0)
		return true;
	if (strncmp(name, "events_", 7) == 0)
		len = 7;
	else if (strncmp(name, "streams_", 8) == 0)
		len = 8;
	else
		return false;
	if (name[len] == '\0')
		return false;
	return strspn(name + len, "0123456789") == strlen(name + len);
}

/*
 * "events" or "streams" (or the name of a shard of one, in distributed
 * mode) when relid is one of them, else NULL
 */
static const char *
written_table(Oid relid, Oid nsp)
{
	char	   *name;

	if (!OidIsValid(relid) || get_rel_namespace(relid) != nsp)
		return NULL;
	name = get_rel_name(relid);
	if (name && written_name(name) && get_rel_relkind(relid) == RELKIND_RELATION)
		return name;
	return NULL;
}

/*
 * ExecutorStart hook: a plan that writes into evstore.events or
 * evstore.streams (INSERT, MERGE, UPDATE, DELETE, also inside WITH) is
 * refused, after the executor checked the permissions.
 */
static void
guard_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *ps = queryDesc->plannedstmt;

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	/*
	 * A Citus plan for a distributed table (one custom scan, no result
	 * relations) writes its target through Citus, into the shards: the
	 * target is the relation the plan locks for writing.
	 */
	if (ps->resultRelations == NIL && ps->commandType != CMD_SELECT &&
		ps->commandType != CMD_UTILITY && !(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		Oid			nsp = get_namespace_oid("evstore", true);
		ListCell   *lc;

		foreach(lc, ps->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
			const char *name;

			if (!OidIsValid(nsp) || rte->rtekind != RTE_RELATION ||
				rte->rellockmode < RowExclusiveLock)
				continue;
			name = written_table(rte->relid, nsp);
			if (name != NULL)
				refuse_write(ps->commandType == CMD_UPDATE ? "UPDATE" :
							 ps->commandType == CMD_DELETE ? "DELETE" :
							 ps->commandType == CMD_MERGE ? "MERGE" : "INSERT", name);
		}
	}

	if (ps->resultRelations != NIL && !(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		Oid			nsp = get_namespace_oid("evstore", true);
		ListCell   *lc;

		if (!OidIsValid(nsp))
			return;
		foreach(lc, ps->resultRelations)
		{
			RangeTblEntry *rte = rt_fetch(lfirst_int(lc), ps->rtable);
			const char *name = written_table(rte->relid, nsp);
			const char *op;

			if (name == NULL)
				continue;
			if (ps->hasModifyingCTE)
				op = "a data-modifying WITH";
			else if (ps->commandType == CMD_UPDATE)
				op = "UPDATE";
			else if (ps->commandType == CMD_DELETE)
				op = "DELETE";
			else if (ps->commandType == CMD_MERGE)
				op = "MERGE";
			else
				op = "INSERT";
			refuse_write(op, name);
		}
	}
}

/*
 * COPY FROM into evstore.events or evstore.streams (from the ProcessUtility
 * hook, ddl_guard.c): a restore fills an empty table, so the table must be
 * empty.  An exclusive lock (appends wait) makes the check hold until the
 * transaction ends.
 */
void
evstore_guard_copy_from(CopyStmt *stmt)
{
	Oid			nsp;
	Oid			relid;
	const char *name;
	Relation	rel;
	bool		has_rows;

	if (!stmt->is_from || stmt->relation == NULL)
		return;
	nsp = get_namespace_oid("evstore", true);
	if (!OidIsValid(nsp))
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	name = written_table(relid, nsp);
	if (name == NULL)
		return;
	/* without the right to insert, COPY itself reports it: take no lock */
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		return;

	/*
	 * Distributed mode: Citus would route the rows of a COPY into the shell
	 * to the shards, past versions and the fence; only a shard itself may
	 * be filled (Citus's shard moves and splits copy into an empty one).
	 */
	if ((strcmp(name, "events") == 0 || strcmp(name, "streams") == 0) &&
		evstore_relation_is_distributed(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("COPY into evstore.%s is not allowed in distributed mode", name),
				 errdetail("evstore.%s is distributed by Citus; its rows live in the shards on the workers.", name),
				 errhint("Restore a distributed store from backups of every node (see docs/distributed.md); append with evstore.append_event().")));

	LockRelationOid(relid, ExclusiveLock);
	rel = table_open(relid, NoLock);
	has_rows = evstore_relation_has_rows(rel);
	table_close(rel, NoLock);

	if (has_rows)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("COPY into evstore.%s is allowed only while it is empty", name),
				 errdetail("COPY restores a dump into a fresh store; into a store that holds rows it would bypass versions, positions and the fence."),
				 errhint("Restore into a new database (pg_restore creates the extension), and append new events with evstore.append_event().")));
}

/* Called from _PG_init. */
void
evstore_guard_init(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = guard_executor_start;
}

PG_FUNCTION_INFO_V1(evstore_guard_append_only);

/* evstore.guard_append_only() -> trigger */
Datum
evstore_guard_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evstore.guard_append_only() must be called as a trigger")));

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		op = "UPDATE";
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		op = "DELETE";
	else if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		op = "TRUNCATE";
	else
		op = "INSERT";

	/* evstore.distribute() empties the shell after Citus copied its rows */
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) && evstore_distributing())
		return PointerGetDatum(NULL);
	refuse_write(op, RelationGetRelationName(trigdata->tg_relation));
	PG_RETURN_NULL();
}

static void
check_guard_trigger(Oid relid, const char *tgname)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TriggerDesc *td = rel->trigdesc;
	bool		ok = false;

	if (td)
	{
		for (int i = 0; i < td->numtriggers; i++)
		{
			if (strcmp(td->triggers[i].tgname, tgname) == 0 &&
				td->triggers[i].tgenabled == TRIGGER_FIRES_ALWAYS)
				ok = true;
		}
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("trigger \"%s\" on evstore.%s must stay enabled ALWAYS",
						tgname, RelationGetRelationName(rel)),
				 errdetail("It keeps the event store append-only.")));
	if (rel->rd_rel->relhasrules)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rules on evstore.%s are not allowed", RelationGetRelationName(rel)),
				 errdetail("A rule could rewrite appends or hide changes to the event store.")));
	table_close(rel, AccessShareLock);
}

PG_FUNCTION_INFO_V1(evstore_guard_ddl);

/* evstore.guard_ddl() -> event_trigger */
Datum
evstore_guard_ddl(PG_FUNCTION_ARGS)
{
	const EvstoreCatalog *cat;
	HeapTuple	tup;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("evstore.guard_ddl() must be called as an event trigger")));

	/* evstore's own scripts (install, upgrade) manage its objects */
	if (evstore_own_script_running())
		PG_RETURN_NULL();

	/*
	 * The statement's own check, for a backend that loaded evstore only now
	 * (without shared_preload_libraries the ProcessUtility hook was not in
	 * place when the statement started): the transaction is rolled back.
	 */
	evstore_ddl_guard_check(((EventTriggerData *) fcinfo->context)->parsetree);

	cat = evstore_catalog();
	check_guard_trigger(cat->events_rel, "events_append_only");
	check_guard_trigger(cat->streams_rel, "streams_append_only");

	/* read_all's fence needs the sequence to hand out values one by one */
	tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(cat->position_seq));
	if (HeapTupleIsValid(tup))
	{
		Form_pg_sequence seq = (Form_pg_sequence) GETSTRUCT(tup);
		bool		bad = seq->seqcache != 1 || seq->seqcycle;

		ReleaseSysCache(tup);
		if (bad)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("evstore.global_position_seq must have CACHE 1 and NO CYCLE"),
					 errdetail("Subscriptions rely on positions being handed out in order.")));
	}
	PG_RETURN_NULL();
}
