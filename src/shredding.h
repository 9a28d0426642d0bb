/*-------------------------------------------------------------------------
 *
 * shredding.h
 *	  Crypto-shredding (forgettable payloads): per-subject data keys and
 *	  AES-256-GCM field encryption inside jsonb.  See docs/shredding.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_SHREDDING_H
#define EVSTORE_SHREDDING_H

/* SQLSTATEs of crypto-shredding (class ES, 8xx) */
#define ERRCODE_EVSTORE_SUBJECT_FORGOTTEN		MAKE_SQLSTATE('E','S','8','0','1')
#define ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE	MAKE_SQLSTATE('E','S','8','0','2')
#define ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT	MAKE_SQLSTATE('E','S','8','0','3')
#define ERRCODE_EVSTORE_CIPHERTEXT_AUTH_FAILED	MAKE_SQLSTATE('E','S','8','0','4')
#define ERRCODE_EVSTORE_UNKNOWN_KEY				MAKE_SQLSTATE('E','S','8','0','5')

extern void evstore_shredding_init(void);

#endif							/* EVSTORE_SHREDDING_H */
