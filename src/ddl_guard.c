/*-------------------------------------------------------------------------
 *
 * ddl_guard.c
 *	  Stored history cannot be rewritten or dropped by DDL.
 *
 * A ProcessUtility hook inspects every utility statement BEFORE it runs and
 * refuses DDL that would change evstore's relations (the extension's
 * tables, sequence and views, their indexes, triggers, rules and policies),
 * replace or alter its functions, or move objects out of the extension.
 * Only what operations genuinely need is let through: storage parameters,
 * statistics targets, tablespaces, CLUSTER ON, replica identity, owner
 * changes, GRANT/REVOKE, COMMENT, and the commands that are no ALTER at all
 * (VACUUM, ANALYZE, CLUSTER, REINDEX).  evstore's own extension scripts, and
 * pg_upgrade's binary-upgrade restore, are exempt; any other extension's
 * script is not.
 *
 * The same check runs again from the evstore_guard_ddl event trigger
 * (guard.c) for a backend in which the library was not loaded in advance.
 *
 * An object_access_hook refuses to drop evstore.events while it holds
 * events, whatever the route (DROP EXTENSION, DROP SCHEMA ... CASCADE,
 * DROP OWNED), unless evstore.allow_drop_with_events is on.
 *
 * COPY FROM into evstore.events or evstore.streams is checked here too, by
 * guard.c (a restore fills an empty store; anything else is refused).
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_event_trigger.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "storage/lmgr.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

static ProcessUtility_hook_type prev_utility_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;
static bool allow_drop_with_events = false;

/*
 * True while evstore's own extension script runs (CREATE EXTENSION evstore,
 * ALTER EXTENSION evstore UPDATE), and during pg_upgrade's restore of the
 * schema: those create and change evstore's objects legitimately.
 */
bool
evstore_own_script_running(void)
{
	Oid			ext;

	if (IsBinaryUpgrade || evstore_distributing())
		return true;
	if (!creating_extension)
		return false;
	ext = get_extension_oid("evstore", true);
	return OidIsValid(ext) && CurrentExtensionObject == ext;
}

/*
 * Is relid one of evstore's guarded relations: a relation that belongs to
 * the extension, an index of one, or the row type of a composite type of
 * the extension?
 */
bool
evstore_relation_is_guarded(Oid relid)
{
	Oid			ext;
	char		relkind;

	if (!OidIsValid(relid))
		return false;
	ext = get_extension_oid("evstore", true);
	if (!OidIsValid(ext))
		return false;
	relkind = get_rel_relkind(relid);
	if (relkind == RELKIND_INDEX || relkind == RELKIND_PARTITIONED_INDEX)
		relid = IndexGetRelation(relid, true);
	else if (relkind == RELKIND_COMPOSITE_TYPE)
		return getExtensionOfObject(TypeRelationId, get_rel_type_id(relid)) == ext;
	if (!OidIsValid(relid))
		return false;
	return getExtensionOfObject(RelationRelationId, relid) == ext;
}

/* schema evstore while the extension is installed (it is not relocatable) */
static Oid
evstore_schema_oid(void)
{
	if (!OidIsValid(get_extension_oid("evstore", true)))
		return InvalidOid;
	return get_namespace_oid("evstore", true);
}

static Oid
rangevar_relid(RangeVar *rv)
{
	if (rv == NULL)
		return InvalidOid;
	return RangeVarGetRelid(rv, NoLock, true);
}

static void
refuse(Node *parsetree, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s on %s is not allowed",
					GetCommandTagName(CreateCommandTag(parsetree)), what),
			 errdetail("evstore's tables, indexes, sequence and functions are changed only by evstore's own scripts: a change could rewrite or lose stored history."),
			 errhint("Allowed are storage parameters (SET/RESET (...)), statistics targets, SET TABLESPACE, CLUSTER ON, REPLICA IDENTITY, OWNER TO, GRANT, REVOKE, COMMENT, VACUUM, ANALYZE, CLUSTER and REINDEX.")));
}

static void
check_rel(Node *parsetree, Oid relid)
{
	if (evstore_relation_is_guarded(relid) && !evstore_own_script_running())
	{
		char	   *nsp = get_namespace_name(get_rel_namespace(relid));
		char	   *rel = get_rel_name(relid);

		refuse(parsetree, quote_qualified_identifier(nsp, rel));
	}
}

/* the relation named by all but the last element of a qualified name */
static void
check_rel_of_subobject(Node *parsetree, List *names)
{
	if (list_length(names) < 2)
		return;
	check_rel(parsetree,
			  rangevar_relid(makeRangeVarFromNameList(list_copy_head(names, list_length(names) - 1))));
}

/* a non-relation object: refused when it belongs to the extension */
static void
check_object(Node *parsetree, ObjectType type, Node *object)
{
	ObjectAddress addr;
	Relation	rel = NULL;
	Oid			ext = get_extension_oid("evstore", true);

	if (!OidIsValid(ext) || object == NULL)
		return;
	/* only kinds of objects the extension has (and no shared objects) */
	switch (type)
	{
		case OBJECT_FUNCTION:
		case OBJECT_PROCEDURE:
		case OBJECT_ROUTINE:
		case OBJECT_AGGREGATE:
		case OBJECT_TYPE:
		case OBJECT_DOMAIN:
		case OBJECT_EVENT_TRIGGER:
		case OBJECT_LANGUAGE:
			break;
		default:
			return;
	}
	addr = get_object_address(type, object, &rel, AccessShareLock, true);
	if (rel)
		relation_close(rel, NoLock);
	if (!OidIsValid(addr.objectId))
		return;
	if (addr.classId == RelationRelationId)
		check_rel(parsetree, addr.objectId);
	else if (getExtensionOfObject(addr.classId, addr.objectId) == ext &&
			 !evstore_own_script_running())
		refuse(parsetree, getObjectDescription(&addr, false));
}

static bool
alter_table_cmd_allowed(AlterTableCmd *cmd)
{
	switch (cmd->subtype)
	{
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetCompression:
		case AT_ClusterOn:
		case AT_DropCluster:
		case AT_SetTableSpace:
		case AT_ReplicaIdentity:
		case AT_ChangeOwner:
			return true;
		default:
			return false;
	}
}

static void
check_alter_table(AlterTableStmt *stmt)
{
	Oid			relid = rangevar_relid(stmt->relation);
	bool		guarded = evstore_relation_is_guarded(relid);
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (guarded && !alter_table_cmd_allowed(cmd))
			check_rel((Node *) stmt, relid);
		/* another table made a child or partition of a guarded one */
		if (cmd->subtype == AT_AddInherit && cmd->def && IsA(cmd->def, RangeVar))
			check_rel((Node *) stmt, rangevar_relid((RangeVar *) cmd->def));
		if (cmd->subtype == AT_AttachPartition && cmd->def && IsA(cmd->def, PartitionCmd))
			check_rel((Node *) stmt, rangevar_relid(((PartitionCmd *) cmd->def)->name));
	}
}

static void
check_drop(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		switch (stmt->removeType)
		{
			case OBJECT_INDEX:
				check_rel((Node *) stmt, rangevar_relid(makeRangeVarFromNameList(castNode(List, obj))));
				break;
			case OBJECT_TRIGGER:
			case OBJECT_POLICY:
			case OBJECT_RULE:
				check_rel_of_subobject((Node *) stmt, castNode(List, obj));
				break;
			default:
				/* members of the extension: PostgreSQL refuses to drop them */
				break;
		}
	}
}

static void
check_create_function(CreateFunctionStmt *stmt)
{
	char	   *name;
	Oid			nsp = QualifiedNameGetCreationNamespace(stmt->funcname, &name);

	if (OidIsValid(nsp) && nsp == evstore_schema_oid() &&
		!evstore_own_script_running())
		refuse((Node *) stmt, psprintf("schema %s", get_namespace_name(nsp)));
}

/*
 * Refuse the statement if it would change one of evstore's objects.  Called
 * before the statement runs (ProcessUtility hook), and from the event
 * trigger for backends that loaded evstore late.
 */
void
evstore_ddl_guard_check(Node *parsetree)
{
	if (parsetree == NULL || !IsTransactionState())
		return;

	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			check_alter_table((AlterTableStmt *) parsetree);
			break;
		case T_AlterSeqStmt:
			check_rel(parsetree, rangevar_relid(((AlterSeqStmt *) parsetree)->sequence));
			break;
		case T_CreateTrigStmt:
			check_rel(parsetree, rangevar_relid(((CreateTrigStmt *) parsetree)->relation));
			break;
		case T_CreatePolicyStmt:
			check_rel(parsetree, rangevar_relid(((CreatePolicyStmt *) parsetree)->table));
			break;
		case T_AlterPolicyStmt:
			check_rel(parsetree, rangevar_relid(((AlterPolicyStmt *) parsetree)->table));
			break;
		case T_RuleStmt:
			check_rel(parsetree, rangevar_relid(((RuleStmt *) parsetree)->relation));
			break;
		case T_IndexStmt:
			check_rel(parsetree, rangevar_relid(((IndexStmt *) parsetree)->relation));
			break;
		case T_ViewStmt:
			if (((ViewStmt *) parsetree)->replace)
				check_rel(parsetree, rangevar_relid(((ViewStmt *) parsetree)->view));
			break;
		case T_CreateStmt:
			{
				ListCell   *lc;

				/* INHERITS or PARTITION OF a guarded table */
				foreach(lc, ((CreateStmt *) parsetree)->inhRelations)
					check_rel(parsetree, rangevar_relid(lfirst_node(RangeVar, lc)));
				break;
			}
		case T_RenameStmt:
			{
				RenameStmt *stmt = (RenameStmt *) parsetree;

				if (stmt->relation)
					check_rel(parsetree, rangevar_relid(stmt->relation));
				else if (stmt->renameType == OBJECT_SCHEMA)
				{
					Oid			nsp = evstore_schema_oid();

					if (OidIsValid(nsp) &&
						get_namespace_oid(stmt->subname, true) == nsp &&
						!evstore_own_script_running())
						refuse(parsetree, psprintf("schema %s", stmt->subname));
				}
				else
					check_object(parsetree, stmt->renameType, stmt->object);
				break;
			}
		case T_AlterObjectSchemaStmt:
			{
				AlterObjectSchemaStmt *stmt = (AlterObjectSchemaStmt *) parsetree;

				if (stmt->relation)
					check_rel(parsetree, rangevar_relid(stmt->relation));
				else if (stmt->objectType != OBJECT_EXTENSION)
					check_object(parsetree, stmt->objectType, stmt->object);
				break;
			}
		case T_AlterObjectDependsStmt:
			{
				/* DEPENDS ON EXTENSION x: dropping x would drop the object */
				AlterObjectDependsStmt *stmt = (AlterObjectDependsStmt *) parsetree;

				if (stmt->relation)
					check_rel(parsetree, rangevar_relid(stmt->relation));
				else
					check_object(parsetree, stmt->objectType, stmt->object);
				break;
			}
		case T_AlterFunctionStmt:
			{
				AlterFunctionStmt *stmt = (AlterFunctionStmt *) parsetree;

				check_object(parsetree, stmt->objtype, (Node *) stmt->func);
				break;
			}
		case T_CreateFunctionStmt:
			check_create_function((CreateFunctionStmt *) parsetree);
			break;
		case T_AlterExtensionContentsStmt:
			if (strcmp(((AlterExtensionContentsStmt *) parsetree)->extname, "evstore") == 0 &&
				!evstore_own_script_running())
				refuse(parsetree, "extension evstore");
			break;
		case T_AlterEventTrigStmt:
			{
				AlterEventTrigStmt *stmt = (AlterEventTrigStmt *) parsetree;

				check_object(parsetree, OBJECT_EVENT_TRIGGER,
							 (Node *) makeString(stmt->trigname));
				break;
			}
		case T_DropStmt:
			check_drop((DropStmt *) parsetree);
			break;
		default:
			break;
	}
}

static void
ddl_guard_utility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	evstore_ddl_guard_check(parsetree);
	if (parsetree && IsA(parsetree, CopyStmt) && IsTransactionState())
		evstore_guard_copy_from((CopyStmt *) parsetree);

	if (prev_utility_hook)
		prev_utility_hook(pstmt, queryString, readOnlyTree, context, params,
						  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * evstore.events is about to be dropped (by whatever route): refuse while
 * it holds events, unless the session said it means it.
 */
static void
check_drop_events(Oid relid)
{
	Oid			nsp;
	Relation	rel;
	bool		has_events;

	if (allow_drop_with_events || !IsTransactionState())
		return;
	nsp = get_namespace_oid("evstore", true);
	if (!OidIsValid(nsp) || get_rel_namespace(relid) != nsp ||
		get_rel_relkind(relid) != RELKIND_RELATION)
		return;
	{
		char	   *name = get_rel_name(relid);

		if (name == NULL || strcmp(name, "events") != 0)
			return;
	}
	if (evstore_own_script_running())
		return;

	rel = table_open(relid, AccessShareLock);
	has_events = evstore_relation_has_rows(rel);
	table_close(rel, AccessShareLock);

	if (has_events)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop evstore.events: the event store holds events"),
				 errdetail("Dropping the extension evstore (directly, with its schema, or with its owner's objects) deletes every stored event."),
				 errhint("If that is really meant, run SET evstore.allow_drop_with_events = on; in this session first, then drop again (take a pg_dump first if the events may be needed).")));
}

static void
ddl_guard_object_access(ObjectAccessType access, Oid classId, Oid objectId,
						int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == RelationRelationId && subId == 0)
		check_drop_events(objectId);
}

/* Called from _PG_init. */
void
evstore_ddl_guard_init(void)
{
	DefineCustomBoolVariable("evstore.allow_drop_with_events",
							 "Allows dropping evstore (and every stored event) while evstore.events holds events.",
							 "Off by default: DROP EXTENSION evstore, DROP SCHEMA evstore CASCADE and DROP OWNED "
							 "by its owner are refused while events are stored.",
							 &allow_drop_with_events,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ddl_guard_utility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = ddl_guard_object_access;
}
