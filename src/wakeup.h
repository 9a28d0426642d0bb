/*-------------------------------------------------------------------------
 *
 * wakeup.h
 *	  The optional append wake-up (LISTEN/NOTIFY), wakeup.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_WAKEUP_H
#define EVSTORE_WAKEUP_H

extern void evstore_wakeup_init(void);

/* Called once at the end of every append that wrote events. */
extern void evstore_wakeup_notify(const char *stream_id, int sidlen);

#endif							/* EVSTORE_WAKEUP_H */
