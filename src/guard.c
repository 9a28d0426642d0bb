/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Append-only enforcement.
 *
 * Statement-level BEFORE triggers on evstore.events and evstore.streams
 * refuse UPDATE, DELETE and TRUNCATE for every role.  They are enabled
 * ALWAYS, so session_replication_role cannot switch them off, and an event
 * trigger refuses DDL that would disable or drop them or add rules.
 * evstore's own C code writes through the table AM and never fires them.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/table.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_trigger.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(evstore_guard_append_only);

/* evstore.guard_append_only() -> trigger */
Datum
evstore_guard_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *op;
	const char *relname;
	bool		is_events;

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

	relname = RelationGetRelationName(trigdata->tg_relation);
	is_events = strcmp(relname, "events") == 0;

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on evstore.%s is not allowed", op, relname),
			 is_events ?
			 errdetail("The event store is append-only for every role, the owner included.") :
			 errdetail("evstore.%s is maintained by evstore's own functions.", relname),
			 is_events ?
			 errhint("Append a compensating event, or retire the stream with evstore.delete_stream().") :
			 errhint("Use evstore.append_event(), evstore.delete_stream() or evstore.tombstone_stream().")));
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

	/* extension scripts (install, upgrade) manage the triggers themselves */
	if (creating_extension)
		PG_RETURN_NULL();

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
