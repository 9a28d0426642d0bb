/*-------------------------------------------------------------------------
 *
 * shredding_cipher.c
 *	  Crypto-shredding: AES-256-GCM, random bytes and wiping of key
 *	  material.  The only file of evstore that calls OpenSSL.
 *
 * The cipher context is created once per backend and reused; it keeps the
 * key schedule of its last use until shred_cipher_reset().
 *
 * OpenSSL keeps a per-thread queue of errors, which other users of OpenSSL in
 * the backend (the server's SSL, pgcrypto) read too.  Each operation here
 * clears it first, so that a failure is reported with its own reason, and
 * leaves it empty, so that nobody else reads a stale error of ours.  After a
 * failure the cipher context is reset (its key schedule wiped) and any
 * partial output is wiped before the error is raised.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "shredding.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* ---------- OpenSSL state ---------- */

static EVP_CIPHER_CTX *gcm_ctx = NULL;
static bool gcm_ready = false;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
static EVP_CIPHER *gcm_cipher = NULL;
#else
static const EVP_CIPHER *gcm_cipher = NULL;
#endif

/*
 * errdetail() with the reason of the first error OpenSSL queued (for use
 * inside ereport()); empties the queue.
 */
static int
openssl_errdetail(void)
{
	unsigned long e = ERR_get_error();
	char		buf[256];
	const char *reason;

	ERR_clear_error();
	if (e == 0)
		return errdetail("OpenSSL reported no reason.");
	reason = ERR_reason_error_string(e);
	ERR_error_string_n(e, buf, sizeof(buf));
	if (reason != NULL)
		return errdetail("OpenSSL reports: %s (%s).", reason, buf);
	return errdetail("OpenSSL reports: %s.", buf);
}

/* Overwrite key material or plaintext (the compiler may not drop it). */
void
shred_wipe(void *ptr, size_t len)
{
	OPENSSL_cleanse(ptr, len);
}

/* Forget the key schedule the cipher context keeps from its last use. */
void
shred_cipher_reset(void)
{
	if (gcm_ctx != NULL)
	{
		EVP_CIPHER_CTX_reset(gcm_ctx);
		gcm_ready = false;
	}
}

static void
crypto_setup(void)
{
	ERR_clear_error();
	if (gcm_cipher == NULL)
	{
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
		gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
#else
		gcm_cipher = EVP_aes_256_gcm();
#endif
		if (gcm_cipher == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("OpenSSL does not provide AES-256-GCM"),
					 openssl_errdetail()));
	}
	if (gcm_ctx == NULL)
	{
		gcm_ctx = EVP_CIPHER_CTX_new();
		if (gcm_ctx == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not allocate an OpenSSL cipher context.")));
		ERR_clear_error();
		gcm_ready = false;
	}
	if (!gcm_ready)
	{
		if (EVP_CipherInit_ex(gcm_ctx, gcm_cipher, NULL, NULL, NULL, 1) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("could not initialize AES-256-GCM"),
					 openssl_errdetail()));
		gcm_ready = true;
	}
}

/*
 * Nonces come from a per-backend pool refilled from RAND_bytes, so that
 * encrypting many values does not pay OpenSSL's per-call overhead for 12
 * bytes each time.  Each pool byte is handed out once, and the pool is only
 * ever filled inside a backend (never in the postmaster before a fork), so
 * no two processes share pool bytes.
 */
#define NONCE_POOL_SIZE		(NONCE_LEN * 128)
static uint8 nonce_pool[NONCE_POOL_SIZE];
static int	nonce_pool_used = NONCE_POOL_SIZE;

void
shred_random_nonce(uint8 *nonce)
{
	if (nonce_pool_used + NONCE_LEN > NONCE_POOL_SIZE)
	{
		shred_random_bytes(nonce_pool, NONCE_POOL_SIZE);
		nonce_pool_used = 0;
	}
	memcpy(nonce, nonce_pool + nonce_pool_used, NONCE_LEN);
	memset(nonce_pool + nonce_pool_used, 0, NONCE_LEN);
	nonce_pool_used += NONCE_LEN;
}

void
shred_random_bytes(uint8 *buf, int len)
{
	ERR_clear_error();
	if (RAND_bytes(buf, len) != 1)
	{
		shred_wipe(buf, len);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not generate random bytes"),
				 openssl_errdetail()));
	}
}

/* Encrypt; ct must have room for len bytes.  Errors out on OpenSSL failure. */
void
shred_gcm_encrypt(const uint8 *key, const uint8 *nonce,
				  const uint8 *aad1, int aad1len,
				  const uint8 *aad2, int aad2len,
				  const uint8 *pt, int len, uint8 *ct, uint8 *tag)
{
	int			outl;
	uint8		dummy[16];

	crypto_setup();
	if (EVP_CipherInit_ex(gcm_ctx, NULL, NULL, key, nonce, 1) != 1 ||
		(aad1len > 0 && EVP_EncryptUpdate(gcm_ctx, NULL, &outl, aad1, aad1len) != 1) ||
		(aad2len > 0 && EVP_EncryptUpdate(gcm_ctx, NULL, &outl, aad2, aad2len) != 1) ||
		(len > 0 && EVP_EncryptUpdate(gcm_ctx, ct, &outl, pt, len) != 1) ||
		EVP_EncryptFinal_ex(gcm_ctx, dummy, &outl) != 1 ||
		EVP_CIPHER_CTX_ctrl(gcm_ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
	{
		shred_cipher_reset();
		shred_wipe(dummy, sizeof(dummy));
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("AES-256-GCM encryption failed"),
				 openssl_errdetail()));
	}
}

/* Decrypt and authenticate; returns false when the tag does not verify. */
bool
shred_gcm_decrypt(const uint8 *key, const uint8 *nonce,
				  const uint8 *aad1, int aad1len,
				  const uint8 *aad2, int aad2len,
				  const uint8 *ct, int len, const uint8 *tag, uint8 *pt)
{
	bool		ok;
	int			outl;
	uint8		dummy[16];

	crypto_setup();
	if (EVP_CipherInit_ex(gcm_ctx, NULL, NULL, key, nonce, 0) != 1 ||
		(aad1len > 0 && EVP_DecryptUpdate(gcm_ctx, NULL, &outl, aad1, aad1len) != 1) ||
		(aad2len > 0 && EVP_DecryptUpdate(gcm_ctx, NULL, &outl, aad2, aad2len) != 1) ||
		(len > 0 && EVP_DecryptUpdate(gcm_ctx, pt, &outl, ct, len) != 1) ||
		EVP_CIPHER_CTX_ctrl(gcm_ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *) tag) != 1)
	{
		/* pt may hold unauthenticated plaintext */
		if (len > 0)
			shred_wipe(pt, len);
		shred_cipher_reset();
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("AES-256-GCM decryption failed"),
				 openssl_errdetail()));
	}
	ok = EVP_DecryptFinal_ex(gcm_ctx, dummy, &outl) == 1;
	/* a tag that does not verify is the caller's error, not OpenSSL's */
	ERR_clear_error();
	return ok;
}
