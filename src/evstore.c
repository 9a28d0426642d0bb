/*-------------------------------------------------------------------------
 *
 * evstore.c
 *	  Module entry point.  Each concern lives in its own file:
 *
 *	  catalog.c   cached OIDs of evstore's relations
 *	  fence.c     shared-memory fence that keeps read_all from skipping
 *	  streams.c   per-stream locks and state
 *	  write.c     executor harness for inserts and updates without SPI
 *	  append.c    append_event / append_events
 *	  read.c      read_stream / stream_version / read_all
 *	  guard.c     append-only triggers
 *	  util.c      category, hashing, UUIDv7
 *	  lifecycle.c delete/tombstone streams, append wake-up (NOTIFY)
 *	  projections.c  read models kept in the appending transaction
 *	  shredding.c crypto-shredding: protect, reveal, forget
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "wakeup.h"
#include "projections.h"
#include "shredding.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	evstore_catalog_init();
	evstore_shmem_init();
	evstore_fence_init();
	evstore_append_init();
	evstore_wakeup_init();
	evstore_projections_init();
	evstore_shredding_init();
}
