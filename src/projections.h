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

extern void evstore_projections_init(void);

#endif							/* EVSTORE_PROJECTIONS_H */
