/*-------------------------------------------------------------------------
 *
 * shredding_masterkey.c
 *	  Crypto-shredding: the master key source and the wrapping of data
 *	  keys under it.
 *
 * The master keys come from evstore.master_key_file or the output of
 * evstore.master_key_command (never from SQL), are loaded at most once per
 * transaction and wiped at its end.  Data keys are stored only wrapped
 * (AES-256-GCM) under one of them.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "shredding.h"

#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/guc.h"

/* Wrapped data key, version 1: ver(1) | nonce(12) | wrapped key(32) | tag(16) */
#define WRAP_VERSION		1
#define WRAPPED_LEN			(1 + NONCE_LEN + KEY_LEN + TAG_LEN)
#define WRAP_AAD_PREFIX		"evstore-wrap"
#define WRAP_AAD_PREFIX_LEN (sizeof(WRAP_AAD_PREFIX) - 1)

/* Master key source limits */
#define MAX_MASTER_KEYS		64
#define MAX_MASTER_SOURCE	65536

/* ---------- settings ---------- */

static char *master_key_file = NULL;
static char *master_key_command = NULL;

/* ---------- master keys (loaded at most once per transaction) ---------- */

typedef struct MasterKey
{
	int32		version;
	uint8		key[KEY_LEN];
} MasterKey;

static MasterKey master_keys[MAX_MASTER_KEYS];
static int	n_master_keys = 0;
int32		shred_current_master_version = 0;
bool		shred_master_loaded = false;

void
shred_wipe_master_keys(void)
{
	shred_wipe(master_keys, sizeof(master_keys));
	/* the cipher context may hold a master key's schedule */
	shred_cipher_reset();
	n_master_keys = 0;
	shred_current_master_version = 0;
	shred_master_loaded = false;
}

/* Any change of a master key setting drops everything derived from it. */
static void
master_key_assign(const char *newval, void *extra)
{
	shred_mark_key_cache_stale();
	if (shred_master_loaded)
		shred_wipe_master_keys();
}

/*
 * The master key settings, defined by evstore_shredding_init().
 *
 * Both are PGC_SIGHUP, like archive_command: settable only in the server's
 * configuration (postgresql.conf, or ALTER SYSTEM) and taken in on reload,
 * never by SET, ALTER ROLE/DATABASE ... SET or a function's SET clause.  The
 * command runs as the server's OS user, so GRANT SET ON PARAMETER on a
 * PGC_SUSET setting would hand that role a shell.  GUC_SUPERUSER_ONLY keeps
 * the values (which may name a secret's location) from other roles.
 */
void
shred_masterkey_init(void)
{
	DefineCustomStringVariable("evstore.master_key_file",
							   "File holding evstore's master key(s) for crypto-shredding.",
							   "One key per line as \"<version> <64 hex digits>\" (or a single bare hex key, version 1). "
							   "A relative path is relative to the data directory.",
							   &master_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, master_key_assign, NULL);
	DefineCustomStringVariable("evstore.master_key_command",
							   "Shell command printing evstore's master key(s) on standard output.",
							   "Same format as evstore.master_key_file; run by the server when a data key must be wrapped or unwrapped.",
							   &master_key_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, master_key_assign, NULL);
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parse the key source text.  Never reports key material: on failure
 * returns a static message and the 1-based line number.
 */
static const char *
parse_master_keys(const char *buf, int len, int *errline)
{
	int			pos = 0;
	int			line = 0;

	n_master_keys = 0;
	shred_current_master_version = 0;
	while (pos < len)
	{
		int			start = pos,
					end;
		int64		version = 1;
		bool		has_version = false;
		const char *hex;
		int			hexlen;
		MasterKey  *mk;

		line++;
		*errline = line;
		while (pos < len && buf[pos] != '\n')
			pos++;
		end = pos;
		pos++;					/* skip the newline */
		while (start < end && isspace((unsigned char) buf[start]))
			start++;
		while (end > start && isspace((unsigned char) buf[end - 1]))
			end--;
		if (start == end || buf[start] == '#')
			continue;

		/* optional "<version>" followed by ':' or blanks */
		hex = buf + start;
		hexlen = end - start;
		for (int i = start; i < end; i++)
		{
			if (buf[i] == ':' || buf[i] == ' ' || buf[i] == '\t')
			{
				int			j = i;

				if (i == start)
					return "a master key version must be a positive integer";
				version = 0;
				for (int k = start; k < i; k++)
				{
					if (!isdigit((unsigned char) buf[k]))
						return "a master key version must be a positive integer";
					version = version * 10 + (buf[k] - '0');
					if (version > PG_INT32_MAX)
						return "a master key version must be at most 2147483647";
				}
				while (j < end && (buf[j] == ':' || buf[j] == ' ' || buf[j] == '\t'))
					j++;
				hex = buf + j;
				hexlen = end - j;
				has_version = true;
				break;
			}
		}
		if (version < 1)
			return "a master key version must be a positive integer";
		if (hexlen != KEY_LEN * 2)
			return "a master key must be exactly 64 hexadecimal digits (256 bits)";
		if (!has_version && n_master_keys > 0)
			return "a key without a version is only allowed as the only key";
		for (int k = 0; k < n_master_keys; k++)
		{
			if (master_keys[k].version == version)
				return "a master key version appears twice";
		}
		if (n_master_keys >= MAX_MASTER_KEYS)
			return "too many master key versions (the limit is 64)";
		mk = &master_keys[n_master_keys];
		mk->version = (int32) version;
		for (int k = 0; k < KEY_LEN; k++)
		{
			int			hi = hexval(hex[2 * k]),
						lo = hexval(hex[2 * k + 1]);

			if (hi < 0 || lo < 0)
			{
				shred_wipe(mk, sizeof(*mk));
				return "a master key must be exactly 64 hexadecimal digits (256 bits)";
			}
			mk->key[k] = (uint8) ((hi << 4) | lo);
		}
		n_master_keys++;
		if (version > shred_current_master_version)
			shred_current_master_version = (int32) version;
	}
	*errline = 0;
	if (n_master_keys == 0)
		return "no master key found";
	return NULL;
}

/*
 * Read everything from fd into buf (at most MAX_MASTER_SOURCE bytes).  Plain
 * read(2), no stdio: a stdio buffer would keep a copy of the key text in
 * freed memory.
 */
static bool
read_all_fd(int fd, StringInfo buf, int *err)
{
	char		chunk[1024];
	ssize_t		n;

	*err = 0;
	for (;;)
	{
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (buf->len + (int) n > MAX_MASTER_SOURCE)
		{
			shred_wipe(chunk, sizeof(chunk));
			*err = EFBIG;
			return false;
		}
		appendBinaryStringInfo(buf, chunk, (int) n);
	}
	shred_wipe(chunk, sizeof(chunk));
	if (n < 0)
	{
		*err = errno ? errno : EIO;
		return false;
	}
	return true;
}

static void
wipe_buffer(StringInfo buf)
{
	shred_wipe(buf->data, buf->maxlen);
	pfree(buf->data);
}

#define MASTER_KEY_HINT \
	"Set evstore.master_key_file or evstore.master_key_command in the server's configuration (postgresql.conf or ALTER SYSTEM) and reload; see docs/shredding.md."

/*
 * Load the master keys from the configured source, once per transaction.
 * The key text lives only in a buffer that is wiped before anything can
 * fail, and no message ever includes it.
 */
void
shred_load_master_keys(void)
{
	bool		has_file = master_key_file && master_key_file[0] != '\0';
	bool		has_cmd = master_key_command && master_key_command[0] != '\0';
	StringInfoData buf;
	const char *problem;
	int			line = 0;
	int			err = 0;

	if (shred_master_loaded)
		return;
	if (!has_file && !has_cmd)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
				 errmsg("evstore master key is not configured"),
				 errdetail("Protecting and revealing data needs a master key to wrap and unwrap the data keys."),
				 errhint(MASTER_KEY_HINT)));
	if (has_file && has_cmd)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
				 errmsg("evstore master key is configured twice"),
				 errdetail("Both evstore.master_key_file and evstore.master_key_command are set."),
				 errhint("Set only one of them.")));

	/* sized once, so that no reallocation leaves a copy of the key behind */
	initStringInfo(&buf);
	enlargeStringInfo(&buf, MAX_MASTER_SOURCE + 1);
	if (has_file)
	{
		int			fd = OpenTransientFile(master_key_file, O_RDONLY | PG_BINARY);
		bool		ok;

		if (fd < 0)
		{
			err = errno;
			wipe_buffer(&buf);
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
					 errmsg("could not open the evstore master key file: %s", strerror(err)),
					 superuser() ? errdetail("evstore.master_key_file is \"%s\".", master_key_file) : 0,
					 errhint(MASTER_KEY_HINT)));
		}
		ok = read_all_fd(fd, &buf, &err);
		CloseTransientFile(fd);
		if (!ok)
		{
			wipe_buffer(&buf);
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
					 errmsg("could not read the evstore master key file: %s",
							err == EFBIG ? "file too large" : strerror(err)),
					 errhint(MASTER_KEY_HINT)));
		}
	}
	else
	{
		FILE	   *f;
		bool		ok;
		int			rc;

		fflush(NULL);
		f = OpenPipeStream(master_key_command, PG_BINARY_R);
		if (f == NULL)
		{
			err = errno;
			wipe_buffer(&buf);
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
					 errmsg("could not run the evstore master key command: %s", strerror(err)),
					 errhint(MASTER_KEY_HINT)));
		}
		ok = read_all_fd(fileno(f), &buf, &err);
		rc = ClosePipeStream(f);
		if (!ok || rc != 0)
		{
			wipe_buffer(&buf);
			if (!ok)
				ereport(ERROR,
						(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
						 errmsg("could not read the output of the evstore master key command: %s",
								err == EFBIG ? "output too large" : strerror(err)),
						 errhint(MASTER_KEY_HINT)));
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
					 errmsg("evstore master key command failed"),
					 errdetail("The command %s.", wait_result_to_str(rc)),
					 errhint(MASTER_KEY_HINT)));
		}
	}

	problem = parse_master_keys(buf.data, buf.len, &line);
	wipe_buffer(&buf);
	if (problem != NULL)
	{
		shred_wipe_master_keys();
		if (line > 0)
			ereport(ERROR,
					(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
					 errmsg("invalid evstore master key source: %s", problem),
					 errdetail("The problem is on line %d of the %s.", line,
							   has_file ? "master key file" : "master key command's output"),
					 errhint("Each line is \"<version> <64 hex digits>\"; a single bare key is version 1.")));
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
				 errmsg("invalid evstore master key source: %s", problem),
				 errhint("Each line is \"<version> <64 hex digits>\"; a single bare key is version 1.")));
	}
	shred_master_loaded = true;
}

static const MasterKey *
master_key(int32 version)
{
	shred_load_master_keys();
	for (int i = 0; i < n_master_keys; i++)
		if (master_keys[i].version == version)
			return &master_keys[i];
	ereport(ERROR,
			(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
			 errmsg("evstore master key version %d is not available", version),
			 errdetail("A data key is wrapped under master key version %d, which the configured master key source does not list.", version),
			 errhint("Add that version back to the master key source, or run evstore.rotate_master_key() while it is still available.")));
	return NULL;				/* keep compiler quiet */
}

/* Additional data of a wrapped key: prefix | ver | master version | key id | subject */
static int
wrap_aad(uint8 *aad, int32 mversion, int64 key_id)
{
	memcpy(aad, WRAP_AAD_PREFIX, WRAP_AAD_PREFIX_LEN);
	aad[WRAP_AAD_PREFIX_LEN] = WRAP_VERSION;
	aad[WRAP_AAD_PREFIX_LEN + 1] = (uint8) ((uint32) mversion >> 24);
	aad[WRAP_AAD_PREFIX_LEN + 2] = (uint8) ((uint32) mversion >> 16);
	aad[WRAP_AAD_PREFIX_LEN + 3] = (uint8) ((uint32) mversion >> 8);
	aad[WRAP_AAD_PREFIX_LEN + 4] = (uint8) mversion;
	shred_put_be64(aad + WRAP_AAD_PREFIX_LEN + 5, (uint64) key_id);
	return WRAP_AAD_PREFIX_LEN + 5 + KEYID_LEN;
}

bytea *
shred_wrap_key(const uint8 *key, int32 mversion, int64 key_id,
			   const char *subject, int subjlen)
{
	const MasterKey *mk = master_key(mversion);
	bytea	   *res = (bytea *) palloc(VARHDRSZ + WRAPPED_LEN);
	uint8	   *p = (uint8 *) VARDATA(res);
	uint8		aad[64];
	int			aadlen = wrap_aad(aad, mversion, key_id);

	SET_VARSIZE(res, VARHDRSZ + WRAPPED_LEN);
	p[0] = WRAP_VERSION;
	shred_random_bytes(p + 1, NONCE_LEN);
	shred_gcm_encrypt(mk->key, p + 1, aad, aadlen,
					  (const uint8 *) subject, subjlen,
					  key, KEY_LEN,
					  p + 1 + NONCE_LEN, p + 1 + NONCE_LEN + KEY_LEN);
	return res;
}

void
shred_unwrap_key(bytea *wrapped, int32 mversion, int64 key_id,
				 const char *subject, int subjlen, uint8 *out)
{
	const MasterKey *mk;
	const uint8 *p = (const uint8 *) VARDATA_ANY(wrapped);
	uint8		aad[64];
	int			aadlen;

	if (VARSIZE_ANY_EXHDR(wrapped) != WRAPPED_LEN || p[0] != WRAP_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("wrapped data key %lld in evstore.subject_keys is malformed",
						(long long) key_id)));
	mk = master_key(mversion);
	aadlen = wrap_aad(aad, mversion, key_id);
	if (!shred_gcm_decrypt(mk->key, p + 1, aad, aadlen,
						   (const uint8 *) subject, subjlen,
						   p + 1 + NONCE_LEN, KEY_LEN,
						   p + 1 + NONCE_LEN + KEY_LEN, out))
	{
		shred_wipe(out, KEY_LEN);
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MASTER_KEY_UNAVAILABLE),
				 errmsg("could not unwrap data key %lld with evstore master key version %d",
						(long long) key_id, mversion),
				 errdetail("The master key configured as version %d is not the one that wrapped this key, or the key row was altered.",
						   mversion)));
	}
}
