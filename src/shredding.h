/*-------------------------------------------------------------------------
 *
 * shredding.h
 *	  Crypto-shredding (forgettable payloads): per-subject data keys and
 *	  AES-256-GCM field encryption inside jsonb.  See docs/shredding.md.
 *
 * Crypto-shredding implements SPEC section 8.  Selected fields of a jsonb
 * document are replaced by a marker object {"$evstore_enc": "<base64>"}
 * holding the field's JSON text encrypted with AES-256-GCM under a data key
 * that belongs to one data subject.  Data keys live in evstore.subject_keys,
 * only ever wrapped (AES-256-GCM again) under a master key that comes from
 * a file or a command outside SQL.  Forgetting a subject deletes its wrapped
 * key; the ciphertext stays where it is and reads as JSON null from then
 * on.  docs/shredding.md has the byte formats and the threat model.
 *
 * The files, and what this header shares between them (evstore.c needs
 * only evstore_shredding_init):
 *	  shredding_cipher.c	 AES-256-GCM, random bytes, wiping; the only file
 *							 that calls OpenSSL
 *	  shredding_masterkey.c  the master key source and key wrapping
 *	  shredding_keys.c		 the key table, the per-backend key cache,
 *							 forget(), is_forgotten(), rotate_master_key()
 *	  shredding_paths.c		 the path parser of protect()
 *	  shredding_protect.c	 protect() and reveal()
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_SHREDDING_H
#define EVSTORE_SHREDDING_H

#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/jsonb.h"

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

/* Big-endian integers in the byte formats */
static inline void
shred_put_be64(uint8 *p, uint64 v)
{
	for (int i = 7; i >= 0; i--)
	{
		p[i] = (uint8) (v & 0xFF);
		v >>= 8;
	}
}

static inline uint64
shred_get_be64(const uint8 *p)
{
	uint64		v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

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

/* shredding_masterkey.c: the master key source, wrapping data keys */
extern int32 shred_current_master_version;
extern bool shred_master_loaded;
extern void shred_masterkey_init(void);
extern void shred_wipe_master_keys(void);
extern void shred_load_master_keys(void);
extern bytea *shred_wrap_key(const uint8 *key, int32 mversion, int64 key_id,
							 const char *subject, int subjlen);
extern void shred_unwrap_key(bytea *wrapped, int32 mversion, int64 key_id,
							 const char *subject, int subjlen, uint8 *out);

/* shredding_paths.c: the paths protect() encrypts, as a tree of PathNodes */
typedef struct PathNode PathNode;

extern PathNode *shred_parse_paths(FunctionCallInfo fcinfo, ArrayType *paths,
								   int *nelems);
extern List *shred_path_match(List *set, const JsonbValue *key, int index,
							  bool *terminal);

/* shredding_keys.c: the key table and the per-backend key cache */
extern void evstore_shredding_init(void);

/* A key handed out to one function call; wiped after each use. */
typedef struct KeyInfo
{
	int64		key_id;
	bool		forgotten;
	int			subjlen;
	const char *subject;
	uint8		key[KEY_LEN];
} KeyInfo;

extern KeyInfo shred_call_key;
extern void shred_mark_key_cache_stale(void);
extern void shred_begin_call(void);
extern void shred_get_key_by_id(int64 key_id, KeyInfo *out);
extern void shred_get_subject_key(const char *subject, int subjlen,
								  bool allow_forgotten, KeyInfo *out);

#endif							/* EVSTORE_SHREDDING_H */
