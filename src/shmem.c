/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  All of evstore's shared memory, requested and attached from one pair
 *	  of hooks: the subscription fence (fence.c), the store's counters
 *	  (stats.c), the projection statistics (projections_stats.c) and the
 *	  async projections' workers and states (projections_async.c).  Each of them says how much it needs
 *	  and attaches its own structure; this file decides when.
 *
 * Shared memory exists only when the library is loaded through
 * shared_preload_libraries; evstore_require_preload() (fence.c) is the one
 * check that every user of shared memory makes first.  This file only wires
 * the modules' shared memory to the hooks: nothing but _PG_init calls it.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* shmem_request_hook: reserve the space and locks of every module */
static void
evstore_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(evstore_fence_shmem_size());
	RequestAddinShmemSpace(evstore_stats_shmem_size());
	evstore_projstats_shmem_request();
	RequestAddinShmemSpace(evstore_projasync_shmem_size());
}

/* shmem_startup_hook: attach (and in the first process, initialize) them */
static void
evstore_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	evstore_fence_shmem_startup();
	evstore_stats_shmem_startup();
	evstore_projstats_shmem_startup();
	evstore_projasync_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
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
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = evstore_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = evstore_shmem_startup;
}
