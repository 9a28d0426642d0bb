/*-------------------------------------------------------------------------
 *
 * sandbox.c
 *	  Running another role's code inside the caller's session (a
 *	  projection's handler inside an append, an upcaster's function inside
 *	  a read) and leaving nothing of it behind in that session.
 *
 * Between evstore_sandbox_enter() and evstore_sandbox_leave() the code
 * runs as the given role in a security-restricted operation, which already
 * refuses LISTEN, DISCARD, cursors WITH HOLD, temporary tables and SET
 * ROLE.  On top of that:
 *
 *	 - every setting it changes (SET and set_config(..., false) included)
 *	   is rolled back when it returns, as index builds do;
 *	 - the utility hook below refuses the statements that would leave
 *	   session-level state behind or reach the caller's (PREPARE,
 *	   DEALLOCATE, EXECUTE, LOAD, CLOSE, FETCH);
 *	 - session-level advisory locks, taken by functions no hook sees, are
 *	   counted before and after, released and refused.
 *
 * After an error, evstore_sandbox_abort() restores the caller's role (the
 * settings go with the aborted (sub)transaction).
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"

#include "access/xact.h"
#include "compat.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/guc.h"

/* the innermost sandbox running, or NULL */
static EvstoreSandbox *current = NULL;

/*
 * The advisory locks held before the outermost sandbox about to run.  The
 * count taken after one serves as the count before the next, until the
 * caller forgets it (evstore_sandbox_forget_locks): between two sandboxes
 * of one append or one read only evstore's own code runs, which takes no
 * session-level lock, so one walk of the lock lists per call is enough.
 */
static struct
{
	bool		valid;
	EvstoreLockSet set;
}			prior_locks;

void
evstore_sandbox_forget_locks(void)
{
	prior_locks.valid = false;
}

static void
lockset_fill(EvstoreLockSet *s)
{
	s->held = evstore_advisory_holds(s->tags, s->masks, EVSTORE_SANDBOX_MAX_LOCKS, &s->n);
}

/* Name the guest for the errors, before anything can fail. */
void
evstore_sandbox_prepare(EvstoreSandbox *sb, const char *kind, const char *name,
						const char *inside, const char *what, const char *whose)
{
	sb->kind = kind;
	sb->name = name;
	sb->inside = inside;
	sb->what = what;
	sb->whose = whose;
	sb->prior = NULL;			/* not entered */
}

void
evstore_sandbox_enter(EvstoreSandbox *sb, Oid role, const char *search_path)
{
	GetUserIdAndSecContext(&sb->save_userid, &sb->save_sec);

	/* the caller's advisory locks, to tell the guest's apart */
	if (current == NULL)
	{
		if (!prior_locks.valid)
		{
			lockset_fill(&prior_locks.set);
			prior_locks.valid = true;
		}
		sb->prior = &prior_locks.set;
	}
	else
	{
		/* nested: the outer guest may have taken some since its start */
		lockset_fill(&sb->own);
		sb->prior = &sb->own;
	}

	if (OidIsValid(role))
		SetUserIdAndSecContext(role, sb->save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	sb->nest = NewGUCNestLevel();
	if (search_path)
		(void) set_config_option("search_path", search_path,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	sb->prev = current;
	current = sb;
}

/* After the guest: release and refuse the session-level locks it took. */
static void
check_locks(EvstoreSandbox *sb, EvstoreLockSet *prior)
{
	EvstoreLockSet now;
	bool		released = false;
	int			nest;

	lockset_fill(&now);
	if (likely(now.held <= prior->held))
	{
		if (prior == &prior_locks.set)
		{
			/* the count after serves as the count before the next */
			prior_locks.set.held = now.held;
			prior_locks.set.n = now.n;
			memcpy(prior_locks.set.tags, now.tags, now.n * sizeof(LOCKTAG));
			memcpy(prior_locks.set.masks, now.masks, now.n * sizeof(LOCKMASK));
		}
		return;
	}

	/*
	 * New advisory lock modes: release those held at session level (a
	 * transaction-level one is the guest's business and goes with the
	 * transaction).  LockRelease() warns when a mode is held at transaction
	 * level only; the warning is silenced for the look.
	 */
	prior_locks.valid = false;
	nest = NewGUCNestLevel();
	(void) set_config_option("client_min_messages", "error", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("log_min_messages", "error", PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	for (int i = 0; i < now.n; i++)
	{
		LOCKMASK	had = 0;

		for (int k = 0; k < prior->n; k++)
			if (memcmp(&prior->tags[k], &now.tags[i], sizeof(LOCKTAG)) == 0)
				had = prior->masks[k];
		for (LOCKMODE m = 1; m <= MaxLockMode; m++)
			if ((now.masks[i] & LOCKBIT_ON(m)) && !(had & LOCKBIT_ON(m)))
				while (LockRelease(&now.tags[i], m, true))
					released = true;
	}
	AtEOXact_GUC(false, nest);
	if (released)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s \"%s\" took a session-level advisory lock", sb->kind, sb->name),
				 errdetail("%s runs inside the %s session and must leave nothing behind in it; the lock was released.",
						   sb->what, sb->whose),
				 errhint("Use pg_advisory_xact_lock(), which ends with the transaction.")));
}

/*
 * The guest returned: roll its settings back, refuse its session-level
 * locks, and be the caller again.
 */
void
evstore_sandbox_leave(EvstoreSandbox *sb)
{
	EvstoreLockSet *prior = sb->prior;

	Assert(current == sb);
	AtEOXact_GUC(false, sb->nest);
	current = sb->prev;
	sb->prior = NULL;			/* left: an abort now only restores nothing */
	PG_TRY();
	{
		check_locks(sb, prior);
	}
	PG_CATCH();
	{
		SetUserIdAndSecContext(sb->save_userid, sb->save_sec);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SetUserIdAndSecContext(sb->save_userid, sb->save_sec);
}

/* The guest failed (in PG_CATCH): be the caller again. */
void
evstore_sandbox_abort(EvstoreSandbox *sb)
{
	if (sb->prior == NULL)
		return;					/* it failed before entering */
	/* the innermost still running is the one that failed, or an outer one */
	while (current != NULL && current != sb)
		current = current->prev;
	if (current == sb)
		current = sb->prev;
	prior_locks.valid = false;
	SetUserIdAndSecContext(sb->save_userid, sb->save_sec);
}

/* A guest is running: what evstore's own functions refuse to do inside it. */
bool
evstore_sandbox_active(void)
{
	return current != NULL;
}

/*
 * evstore's ProcessUtility_hook for guests: refuse the statements that
 * would leave session-level state behind or reach the caller's (prepared
 * statements, cursors, loaded libraries).
 */
static ProcessUtility_hook_type prev_process_utility = NULL;

static void
sandbox_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
						ProcessUtilityContext context, ParamListInfo params,
						QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (current != NULL)
	{
		const char *what = NULL;

		switch (nodeTag(pstmt->utilityStmt))
		{
			case T_PrepareStmt:
				what = "PREPARE";
				break;
			case T_DeallocateStmt:
				what = "DEALLOCATE";
				break;
			case T_ExecuteStmt:
				what = "EXECUTE";
				break;
			case T_LoadStmt:
				what = "LOAD";
				break;
			case T_ClosePortalStmt:
				what = "CLOSE";
				break;
			case T_FetchStmt:
				what = "FETCH";
				break;
			default:
				break;
		}
		if (what)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("cannot run %s inside %s", what, current->inside),
					 errdetail("%s runs inside the %s session; it may neither leave session-level state behind nor use the %s.",
							   current->what, current->whose, current->whose)));
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* an error no caller caught ends every sandbox with its transaction */
static void
sandbox_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
	{
		current = NULL;
		prior_locks.valid = false;
	}
}

void
evstore_sandbox_init(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = sandbox_process_utility;
	RegisterXactCallback(sandbox_xact_callback, NULL);
}
