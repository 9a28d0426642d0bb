/*-------------------------------------------------------------------------
 *
 * lifecycle.h
 *	  Stream lifecycle (delete, tombstone) and the optional append wake-up
 *	  (LISTEN/NOTIFY).
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_LIFECYCLE_H
#define EVSTORE_LIFECYCLE_H

extern void evstore_lifecycle_init(void);

/* Called once at the end of every append that wrote events. */
extern void evstore_lifecycle_notify(const char *stream_id, int sidlen);

#endif							/* EVSTORE_LIFECYCLE_H */
