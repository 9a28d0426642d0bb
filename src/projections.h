/*-------------------------------------------------------------------------
 *
 * projections.h
 *	  Projection triggers: read models maintained inside the appending
 *	  transaction (projections.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_PROJECTIONS_H
#define EVSTORE_PROJECTIONS_H

#include "utils/relcache.h"

extern void evstore_projections_init(void);

/* shared memory of the statistics; shmem.c requests and attaches it */
extern Size evstore_projstats_shmem_size(void);
extern void evstore_projstats_shmem_request(void);
extern void evstore_projstats_shmem_startup(void);
extern void evstore_projstats_register_hooks_tmp(void);	/* TEMPORARY: replaced
														 * by shmem.c at merge */

/* projections_upsert.c: the upsert of attribute sync without SPI */
typedef struct ProjUpsert ProjUpsert;

extern const char *proj_upsert_unsupported(Relation rel);
extern ProjUpsert *proj_upsert_prepare(Relation rel, AttrNumber keyatt,
									   Oid keyindex, MemoryContext cxt);
extern bool proj_upsert_exec(ProjUpsert *u, const bool *stale, Datum key,
							 const AttrNumber *atts, const Datum *values,
							 const bool *nulls, int n);
extern void proj_upsert_release(ProjUpsert *u);
extern void proj_upsert_forget(ProjUpsert *u, SubTransactionId subid);

#endif							/* EVSTORE_PROJECTIONS_H */
