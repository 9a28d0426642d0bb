/*-------------------------------------------------------------------------
 *
 * shredding_protect.c
 *	  Crypto-shredding: protect() and reveal(), the jsonb walkers that
 *	  replace the selected fields by ciphertext markers and back, and their
 *	  SQL entry points.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "shredding.h"
#include "compat.h"

#include "common/base64.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"

/* The marker object's only key */
#define MARKER_KEY			"$evstore_enc"
#define MARKER_KEY_LEN		(sizeof(MARKER_KEY) - 1)

/* Ciphertext format, version 1: ver(1) | key id(8, big-endian) | nonce(12) | ct | tag(16) */
#define ENC_VERSION			1
#define ENC_HEADER_LEN		(1 + KEYID_LEN)
#define ENC_OVERHEAD		(ENC_HEADER_LEN + NONCE_LEN + TAG_LEN)

/* ======================================================================
 * protect
 * ====================================================================== */

typedef struct ProtectCtx
{
	const char *subject;
	int			subjlen;
	bool		allow_forgotten;
	bool		have_key;
	bool		changed;
	StringInfoData pt;
} ProtectCtx;

/* Is this value a ciphertext marker?  (exactly one key, "$evstore_enc") */
static bool
is_marker(JsonbContainer *jc, JsonbValue *val)
{
	JsonbValue *v;

	if (!JsonContainerIsObject(jc))
		return false;
	v = getKeyJsonValueFromContainer(jc, MARKER_KEY, MARKER_KEY_LEN, val);
	if (v == NULL)
		return false;
	if (JsonContainerSize(jc) != 1 || v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
				 errmsg("malformed evstore ciphertext marker"),
				 errdetail("An object with the key \"%s\" must have no other key and a string value.",
						   MARKER_KEY)));
	return true;
}

static void
value_to_json(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvNumeric:
			appendStringInfoString(out,
								   DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
			break;
		case jbvString:
			{
				const char *str = v->val.string.val;
				int			len = v->val.string.len;
				bool		plain = true;

				/* most strings need no escaping: copy them in one go */
				for (int i = 0; i < len; i++)
				{
					unsigned char c = (unsigned char) str[i];

					if (c < 0x20 || c == '"' || c == '\\')
					{
						plain = false;
						break;
					}
				}
				if (plain)
				{
					enlargeStringInfo(out, len + 2);
					appendStringInfoCharMacro(out, '"');
					appendBinaryStringInfo(out, str, len);
					appendStringInfoCharMacro(out, '"');
				}
				else
				{
					char	   *s = pnstrdup(str, len);

					escape_json(out, s);
					pfree(s);
				}
			}
			break;
		case jbvBinary:
			(void) JsonbToCString(out, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

static void
push_marker(JsonbParseState **ps, char *b64, int b64len)
{
	JsonbValue	k,
				v;

	k.type = jbvString;
	k.val.string.val = MARKER_KEY;
	k.val.string.len = MARKER_KEY_LEN;
	v.type = jbvString;
	v.val.string.val = b64;
	v.val.string.len = b64len;
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	pushJsonbValue(ps, WJB_KEY, &k);
	pushJsonbValue(ps, WJB_VALUE, &v);
	pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/* Standard base64 with padding, three bytes at a time; returns the length */
static int
b64_encode(const uint8 *src, int len, char *dst)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char	   *d = dst;
	int			i = 0;

	for (; i + 2 < len; i += 3)
	{
		uint32		w = ((uint32) src[i] << 16) | ((uint32) src[i + 1] << 8) | src[i + 2];

		*d++ = alphabet[(w >> 18) & 63];
		*d++ = alphabet[(w >> 12) & 63];
		*d++ = alphabet[(w >> 6) & 63];
		*d++ = alphabet[w & 63];
	}
	if (i < len)
	{
		uint32		w = (uint32) src[i] << 16;

		if (i + 1 < len)
			w |= (uint32) src[i + 1] << 8;
		*d++ = alphabet[(w >> 18) & 63];
		*d++ = alphabet[(w >> 12) & 63];
		*d++ = (i + 1 < len) ? alphabet[(w >> 6) & 63] : '=';
		*d++ = '=';
	}
	return (int) (d - dst);
}

static void
push_encrypted(ProtectCtx *ctx, JsonbValue *v, JsonbParseState **ps)
{
	int			ptlen;
	int			bloblen;
	uint8	   *blob;
	char	   *b64;
	int			b64len;

	if (!ctx->have_key)
	{
		shred_get_subject_key(ctx->subject, ctx->subjlen, ctx->allow_forgotten,
							  &shred_call_key);
		ctx->have_key = true;
	}
	resetStringInfo(&ctx->pt);
	value_to_json(&ctx->pt, v);
	ptlen = ctx->pt.len;
	bloblen = ENC_OVERHEAD + ptlen;
	blob = palloc(bloblen);
	blob[0] = ENC_VERSION;
	shred_put_be64(blob + 1, (uint64) shred_call_key.key_id);
	shred_random_nonce(blob + ENC_HEADER_LEN);
	shred_gcm_encrypt(shred_call_key.key, blob + ENC_HEADER_LEN,
					  blob, ENC_HEADER_LEN,
					  (const uint8 *) ctx->subject, ctx->subjlen,
					  (const uint8 *) ctx->pt.data, ptlen,
					  blob + ENC_HEADER_LEN + NONCE_LEN,
					  blob + ENC_HEADER_LEN + NONCE_LEN + ptlen);
	shred_wipe(ctx->pt.data, ctx->pt.len);
	b64 = palloc(pg_b64_enc_len(bloblen) + 1);
	b64len = b64_encode(blob, bloblen, b64);
	pfree(blob);
	push_marker(ps, b64, b64len);
	ctx->changed = true;
}

/*
 * Copy a jsonb container into *ps, value by value.  For each object value
 * and array element, visit() may push something else in its place (and
 * returns true), or returns false to have the value copied unchanged.  key
 * is the value's key (NULL for an array element), index the element's
 * position.  Returns what the container's closing token returned.
 */
typedef bool (*JsonbVisitor) (void *arg, JsonbIteratorToken tok,
							  const JsonbValue *key, int index,
							  JsonbValue *v, JsonbParseState **ps);

static JsonbValue *
copy_container(JsonbContainer *jc, JsonbParseState **ps,
			   JsonbVisitor visit, void *arg)
{
	JsonbIterator *it = JsonbIteratorInit(jc);
	JsonbValue	v;
	JsonbValue	key;
	JsonbValue *result = NULL;
	JsonbIteratorToken tok;
	int			index = 0;

	check_stack_depth();
	memset(&key, 0, sizeof(key));
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
			case WJB_BEGIN_OBJECT:
				pushJsonbValue(ps, tok, NULL);
				break;
			case WJB_END_ARRAY:
			case WJB_END_OBJECT:
				result = pushJsonbValue(ps, tok, NULL);
				break;
			case WJB_KEY:
				key = v;
				pushJsonbValue(ps, WJB_KEY, &v);
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (!visit(arg, tok, tok == WJB_VALUE ? &key : NULL, index, &v, ps))
					pushJsonbValue(ps, tok, &v);
				if (tok == WJB_ELEM)
					index++;
				break;
			default:
				elog(ERROR, "unexpected jsonb iterator token %d", (int) tok);
		}
	}
	return result;
}

/* protect(): one level of the walk, with the paths that reach it */
typedef struct ProtectLevel
{
	ProtectCtx *ctx;
	List	   *set;
} ProtectLevel;

static bool
protect_visit(void *arg, JsonbIteratorToken tok, const JsonbValue *key,
			  int index, JsonbValue *v, JsonbParseState **ps)
{
	ProtectLevel *level = (ProtectLevel *) arg;
	bool		terminal;
	bool		done = true;
	JsonbValue	mv;
	List	   *matched = shred_path_match(level->set, key, index, &terminal);

	if (matched == NIL)
		done = false;
	else if (v->type == jbvBinary && is_marker(v->val.binary.data, &mv))
		done = false;			/* already protected */
	else if (terminal)
		push_encrypted(level->ctx, v, ps);
	else if (v->type == jbvBinary)
	{
		ProtectLevel inner = {level->ctx, matched};

		(void) copy_container(v->val.binary.data, ps, protect_visit, &inner);
	}
	else
		done = false;
	list_free(matched);
	return done;
}

static JsonbValue *
protect_container(ProtectCtx *ctx, JsonbContainer *jc, List *set,
				  JsonbParseState **ps)
{
	ProtectLevel level = {ctx, set};

	return copy_container(jc, ps, protect_visit, &level);
}

static Datum
protect_internal(FunctionCallInfo fcinfo, bool allow_forgotten)
{
	Jsonb	   *data;
	int			subjlen;
	char	   *subject;
	ArrayType  *paths;
	int			nelems;
	PathNode   *root;
	ProtectCtx	ctx;
	JsonbParseState *ps = NULL;
	JsonbValue *volatile result = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	subject = evstore_text_arg(fcinfo, 1, "subject", &subjlen);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("paths must not be null")));
	paths = PG_GETARG_ARRAYTYPE_P(2);
	root = shred_parse_paths(fcinfo, paths, &nelems);

	data = PG_GETARG_JSONB_P(0);
	if (nelems == 0 || JB_ROOT_IS_SCALAR(data))
		PG_RETURN_JSONB_P(data);

	shred_begin_call();
	memset(&ctx, 0, sizeof(ctx));
	ctx.subject = subject;
	ctx.subjlen = subjlen;
	ctx.allow_forgotten = allow_forgotten;
	initStringInfo(&ctx.pt);

	/* the data key and the last plaintext are wiped on error too */
	PG_TRY();
	{
		result = protect_container(&ctx, &data->root, list_make1(root), &ps);
	}
	PG_FINALLY();
	{
		shred_wipe(&shred_call_key, sizeof(shred_call_key));
		shred_wipe(ctx.pt.data, ctx.pt.maxlen);
	}
	PG_END_TRY();
	if (!ctx.changed)
		PG_RETURN_JSONB_P(data);
	/* the root's END token returned the finished document */
	Assert(ps == NULL && result != NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(result));
}

/* ======================================================================
 * reveal
 * ====================================================================== */

typedef struct RevealCtx
{
	Jsonb	   *placeholder;
} RevealCtx;

static void
malformed(const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
			 errmsg("%s", msg),
			 detail ? errdetail("%s", detail) : 0));
}

/* The value of a Jsonb document as one JsonbValue (scalar or binary). */
static void
jsonb_as_value(Jsonb *jb, JsonbValue *v)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		if (!JsonbExtractScalar(&jb->root, v))
			elog(ERROR, "could not extract jsonb scalar");
	}
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/*
 * Decrypt one marker's string into *out; the placeholder when the key is
 * forgotten.
 */
static void
decrypt_marker(RevealCtx *ctx, const char *b64, int b64len, JsonbValue *out)
{
	int			maxlen = pg_b64_dec_len(b64len);
	uint8	   *blob = palloc(maxlen + 1);
	int			n;
	int64		key_id;
	int			ptlen;
	char	   *pt;
	bool		ok;

	n = pg_b64_decode(b64, b64len, (evstore_b64_byte *) blob, maxlen);
	if (n < 0)
		malformed("invalid base64 in evstore ciphertext",
				  "The value of \"" MARKER_KEY "\" is not valid base64.");
	if (n >= 1 && blob[0] != ENC_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
				 errmsg("unsupported evstore ciphertext version %d", blob[0]),
				 errdetail("This version of evstore reads ciphertext version %d.", ENC_VERSION)));
	if (n < ENC_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_MALFORMED_CIPHERTEXT),
				 errmsg("evstore ciphertext is truncated"),
				 errdetail("It is %d bytes long; the smallest ciphertext is %d bytes.",
						   n, ENC_OVERHEAD)));
	key_id = (int64) shred_get_be64(blob + 1);
	shred_get_key_by_id(key_id, &shred_call_key);
	if (shred_call_key.forgotten)
	{
		pfree(blob);
		jsonb_as_value(ctx->placeholder, out);
		return;
	}
	ptlen = n - ENC_OVERHEAD;
	pt = palloc(ptlen + 1);
	ok = shred_gcm_decrypt(shred_call_key.key, blob + ENC_HEADER_LEN,
						   blob, ENC_HEADER_LEN,
						   (const uint8 *) shred_call_key.subject,
						   shred_call_key.subjlen,
						   blob + ENC_HEADER_LEN + NONCE_LEN, ptlen,
						   blob + ENC_HEADER_LEN + NONCE_LEN + ptlen,
						   (uint8 *) pt);
	shred_wipe(shred_call_key.key, KEY_LEN);
	pfree(blob);
	if (!ok)
	{
		shred_wipe(pt, ptlen);
		ereport(ERROR,
				(errcode(ERRCODE_EVSTORE_CIPHERTEXT_AUTH_FAILED),
				 errmsg("evstore ciphertext failed authentication"),
				 errdetail("The ciphertext, its nonce, its tag or its key id was altered, or it was made by another key."),
				 errhint("Ciphertext must be stored exactly as evstore.protect() returned it.")));
	}
	pt[ptlen] = '\0';

	/*
	 * Fast path for the commonest case, a string without escapes: the JSON
	 * text is exactly '"' value '"'.  (The plaintext was authenticated, so it
	 * is what protect() wrote: valid UTF-8 with control characters escaped.)
	 */
	if (ptlen >= 2 && pt[0] == '"' && pt[ptlen - 1] == '"' &&
		memchr(pt + 1, '\\', ptlen - 2) == NULL &&
		memchr(pt + 1, '"', ptlen - 2) == NULL)
	{
		out->type = jbvString;
		out->val.string.val = pt + 1;
		out->val.string.len = ptlen - 2;
		return;
	}
	jsonb_as_value(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pt))), out);
}

static JsonbValue *reveal_container(RevealCtx *ctx, JsonbContainer *jc,
									JsonbParseState **ps);

static bool
reveal_visit(void *arg, JsonbIteratorToken tok, const JsonbValue *key,
			 int index, JsonbValue *v, JsonbParseState **ps)
{
	RevealCtx  *ctx = (RevealCtx *) arg;
	JsonbValue	mv;
	JsonbValue	dv;

	if (v->type != jbvBinary)
		return false;
	if (!is_marker(v->val.binary.data, &mv))
	{
		(void) reveal_container(ctx, v->val.binary.data, ps);
		return true;
	}
	decrypt_marker(ctx, mv.val.string.val, mv.val.string.len, &dv);
	/* a protected object may itself hold protected fields */
	if (dv.type == jbvBinary &&
		memmem(dv.val.binary.data, dv.val.binary.len,
			   MARKER_KEY, MARKER_KEY_LEN) != NULL)
		(void) reveal_container(ctx, dv.val.binary.data, ps);
	else
		pushJsonbValue(ps, tok, &dv);
	return true;
}

static JsonbValue *
reveal_container(RevealCtx *ctx, JsonbContainer *jc, JsonbParseState **ps)
{
	return copy_container(jc, ps, reveal_visit, ctx);
}

/*
 * Can the document contain a marker?  Jsonb stores object keys verbatim, so
 * a document whose bytes do not contain the marker key has none.
 */
static bool
has_marker_key(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
		return false;
	return memmem(VARDATA(jb), VARSIZE(jb) - VARHDRSZ,
				  MARKER_KEY, MARKER_KEY_LEN) != NULL;
}

static Jsonb *
json_null(void)
{
	JsonbValue	v;

	v.type = jbvNull;
	return JsonbValueToJsonb(&v);
}

static Datum
reveal_internal(FunctionCallInfo fcinfo, Jsonb *placeholder)
{
	Jsonb	   *data;
	RevealCtx	ctx;
	JsonbParseState *ps = NULL;
	JsonbValue	mv;
	Jsonb	   *volatile res = NULL;

	data = PG_GETARG_JSONB_P(0);
	if (!has_marker_key(data))
		PG_RETURN_JSONB_P(data);

	shred_begin_call();
	ctx.placeholder = placeholder ? placeholder : json_null();
	/* the data key is wiped on error too */
	PG_TRY();
	{
		if (is_marker(&data->root, &mv))
		{
			JsonbValue	dv;

			decrypt_marker(&ctx, mv.val.string.val, mv.val.string.len, &dv);
			if (dv.type == jbvBinary &&
				memmem(dv.val.binary.data, dv.val.binary.len,
					   MARKER_KEY, MARKER_KEY_LEN) != NULL)
			{
				res = JsonbValueToJsonb(reveal_container(&ctx, dv.val.binary.data, &ps));
			}
			else
				res = JsonbValueToJsonb(&dv);
		}
		else
		{
			JsonbValue *result = reveal_container(&ctx, &data->root, &ps);

			Assert(ps == NULL && result != NULL);
			res = JsonbValueToJsonb(result);
		}
	}
	PG_FINALLY();
	{
		shred_wipe(&shred_call_key, sizeof(shred_call_key));
	}
	PG_END_TRY();
	PG_RETURN_JSONB_P(res);
}

/* ======================================================================
 * SQL-callable functions
 * ====================================================================== */

PG_FUNCTION_INFO_V1(evstore_protect);

/* evstore.protect(data jsonb, subject text, paths text[]) -> jsonb */
Datum
evstore_protect(PG_FUNCTION_ARGS)
{
	return protect_internal(fcinfo, false);
}

PG_FUNCTION_INFO_V1(evstore_protect_allow);

/* evstore.protect(data jsonb, subject text, paths text[], allow_forgotten boolean) -> jsonb */
Datum
evstore_protect_allow(PG_FUNCTION_ARGS)
{
	bool		allow = !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);

	return protect_internal(fcinfo, allow);
}

PG_FUNCTION_INFO_V1(evstore_reveal);

/* evstore.reveal(data jsonb) -> jsonb */
Datum
evstore_reveal(PG_FUNCTION_ARGS)
{
	return reveal_internal(fcinfo, NULL);
}

PG_FUNCTION_INFO_V1(evstore_reveal_placeholder);

/* evstore.reveal(data jsonb, placeholder jsonb) -> jsonb */
Datum
evstore_reveal_placeholder(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	return reveal_internal(fcinfo, PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1));
}
