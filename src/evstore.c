/*-------------------------------------------------------------------------
 *
 * evstore.c
 *	  Module entry point.  Each concern lives in its own file:
 *
 *	  Core (evstore.h)
 *	  catalog.c      cached OIDs of evstore's relations, relcache callback
 *	  shmem.c        all shared memory: one request/startup hook pair
 *	  fence.c        the fence that keeps read_all from skipping late commits
 *	  streams.c      per-stream locks and state, index look-ups
 *	  write.c        executor harness for inserts and updates without SPI
 *	  append.c       append_event / append_events
 *	  append_multi.c append_multi / lock_streams: several streams at once
 *	  read.c         read_stream / stream_version / read_all
 *	  lifecycle.c    delete_stream / tombstone_stream
 *	  stats.c        counters per database behind evstore.stats
 *	  wakeup.c       consumers' wake-up after appends (NOTIFY), on a core hook
 *	  guard.c        append-only triggers, direct INSERT and COPY refused
 *	  ddl_guard.c    DDL on evstore's objects refused, DROP with events
 *	  util.c         category, hashing, UUIDv7, argument helpers
 *	  sandbox.c      running another role's code (projection handlers,
 *	                 upcaster functions) leaving nothing in the session
 *	  compat.h       every difference between PostgreSQL majors
 *
 *	  Projections (projections.h): read models kept in the appending transaction
 *	  projections_cache.c     catalog cache and its invalidation
 *	  projections_dispatch.c  an event to the projections that want it
 *	  projections_sync.c      attribute-sync planning and value conversion
 *	  projections_upsert.c    attribute-sync upsert through the table AM
 *	  projections_ddl.c       create / drop / rebuild
 *	  projections_stats.c     shared-memory statistics and rebuild progress
 *	  projections_async.c     async projections: launcher, database workers
 *	  projections_rebuild.c   blue/green rebuilds in a background worker
 *
 *	  Crypto-shredding (shredding.h)
 *	  shredding_cipher.c      AES-256-GCM and wiping: the only OpenSSL caller
 *	  shredding_masterkey.c   the master key source, key wrapping
 *	  shredding_keys.c        key table and cache, forget, rotate
 *	  shredding_paths.c       the path parser
 *	  shredding_protect.c     protect / reveal
 *
 *	  Schema evolution (schema.h)
 *	  schema_registry.c       registry cache, versions and validation on append
 *	  schema_validate.c       the JSON Schema subset
 *	  upcast.c                upcasters and their chains, on read
 *
 *	  Output plugin (decoder.h)
 *	  decoder.c               callbacks, events relation cache, filters
 *	  decoder_options.c       option parsing
 *	  decoder_format.c        JSON and CloudEvents writers
 *
 *	  evstore.sql             the SQL objects: the single source of the
 *	                          install script (updates/ upgrades to it)
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "wakeup.h"
#include "projections.h"
#include "shredding.h"
#include "schema.h"

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	evstore_catalog_init();
	evstore_distributed_init();
	evstore_guard_init();
	evstore_ddl_guard_init();
	evstore_sandbox_init();
	evstore_shmem_init();
	evstore_fence_init();
	evstore_append_init();
	evstore_stats_init();
	evstore_wakeup_init();
	evstore_projections_init();
	evstore_shredding_init();
	evstore_schema_init();
	evstore_upcast_init();
	evstore_projections_async_init();	/* settings, launcher */

	/*
	 * Last: every evstore.* setting is defined now, so a name with our
	 * prefix that is not one of them is a mistake.  SET, ALTER SYSTEM and
	 * ALTER ROLE/DATABASE ... SET of such a name fail, and placeholders
	 * made before the library was loaded are removed with a warning.
	 */
	MarkGUCPrefixReserved("evstore");
}
