/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  All of evstore's shared memory, requested and attached from one pair
 *	  of hooks: the subscription fence (fence.c) and the projection
 *	  statistics (projections_stats.c).  Each of them says how much it needs
 *	  and attaches its own structure; this file decides when.
 *
 * Shared memory exists only when the library is loaded through
 * shared_preload_libraries; evstore_require_preload() is the one check that
 * every caller of shared memory makes first.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool preloaded = false;
static bool attached = false;

/* shmem_request_hook: reserve the space and locks of every module */
static void
evstore_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(evstore_fence_shmem_size());
	evstore_projstats_shmem_request();
}

/* shmem_startup_hook: attach (and in the first process, initialize) them */
static void
evstore_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	evstore_fence_shmem_startup();
	evstore_projstats_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
	attached = true;
}

/*
 * Called from _PG_init.  Installs the hooks only while the library is being
 * preloaded: a library loaded later cannot get shared memory.
 */
void
evstore_shmem_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = evstore_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = evstore_shmem_startup;
}

bool
evstore_shmem_ready(void)
{
	return preloaded && attached;
}

void
evstore_require_preload(void)
{
	if (!evstore_shmem_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore must be loaded via shared_preload_libraries"),
				 errdetail("Subscriptions that never skip a late commit need evstore's shared memory."),
				 errhint("Add 'evstore' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

PG_FUNCTION_INFO_V1(evstore_require_preload_sql);

/* evstore._require_preload() -> void (install-time check) */
Datum
evstore_require_preload_sql(PG_FUNCTION_ARGS)
{
	evstore_require_preload();
	PG_RETURN_VOID();
}
