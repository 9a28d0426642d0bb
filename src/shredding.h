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

/* Sizes in bytes: AES-256-GCM key, nonce and tag; a data key id */
#define KEY_LEN				32
#define NONCE_LEN			12
#define TAG_LEN				16
#define KEYID_LEN			8

extern void evstore_shredding_init(void);

/* shredding_cipher.c: AES-256-GCM, random bytes, wiping (all of OpenSSL) */
extern void shred_wipe(void *ptr, size_t len);
extern void shred_cipher_reset(void);
extern void shred_random_nonce(uint8 *nonce);
extern void shred_random_bytes(uint8 *buf, int len);
extern void shred_gcm_encrypt(const uint8 *key, const uint8 *nonce,
							  const uint8 *aad1, int aad1len,
							  const uint8 *aad2, int aad2len,
							  const uint8 *pt, int len, uint8 *ct, uint8 *tag);
extern bool shred_gcm_decrypt(const uint8 *key, const uint8 *nonce,
							  const uint8 *aad1, int aad1len,
							  const uint8 *aad2, int aad2len,
							  const uint8 *ct, int len, const uint8 *tag,
							  uint8 *pt);

#endif							/* EVSTORE_SHREDDING_H */
