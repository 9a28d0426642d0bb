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

#endif							/* EVSTORE_WAKEUP_H */
