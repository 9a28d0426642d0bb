/*-------------------------------------------------------------------------
 *
 * schema_validate.c
 *	  The subset of JSON Schema evstore validates events with: compiled
 *	  once into a tree of SchemaNode, then walked for each event.
 *
 * Keywords: type (a name or a list of names: null, boolean, object,
 * array, number, integer, string), properties, required,
 * additionalProperties (a boolean or a schema), enum, const, items (one
 * schema for every element), minItems/maxItems, minimum/maximum,
 * exclusiveMinimum/exclusiveMaximum (numbers), minLength/maxLength (in
 * characters), pattern (a PostgreSQL regular expression, unanchored like
 * JSON Schema's), format "uuid" and "date-time" (RFC 3339).  The
 * annotations $schema, $id, $comment, title, description, default,
 * examples are accepted and ignored; any other keyword is refused when
 * the schema is registered, so nothing is silently left unchecked.
 *
 *-------------------------------------------------------------------------
 */
#include "schema.h"

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"

#define T_NULL		0x01
#define T_BOOLEAN	0x02
#define T_OBJECT	0x04
#define T_ARRAY		0x08
#define T_NUMBER	0x10
#define T_INTEGER	0x20
#define T_STRING	0x40

typedef enum
{
	FMT_NONE = 0,
	FMT_UUID,
	FMT_DATE_TIME
} SchemaFormat;

struct SchemaNode
{
	uint32		types;			/* 0: any */
	int			nprops;
	char	  **prop_names;
	int		   *prop_lens;
	SchemaNode **props;
	int			nrequired;
	char	  **required;
	int		   *required_lens;
	int			additional;		/* -1 any, 0 false, 2 schema */
	SchemaNode *additional_schema;
	Jsonb	   *enum_vals;		/* an array, or NULL */
	Jsonb	   *const_val;		/* a one-element array, or NULL */
	SchemaNode *items;
	int			min_items;		/* -1: none */
	int			max_items;
	Numeric		minimum;
	Numeric		maximum;
	Numeric		exclusive_minimum;
	Numeric		exclusive_maximum;
	int			min_length;		/* -1: none */
	int			max_length;
	text	   *pattern;
	SchemaFormat format;
};

static void
bad_schema(const char *path, const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid event schema at \"%s\": %s", path, msg),
			 errhint("See docs/schema-evolution.md for the supported subset of JSON Schema.")));
}

static bool
key_is(JsonbValue *k, const char *s)
{
	return k->val.string.len == (int) strlen(s) &&
		memcmp(k->val.string.val, s, k->val.string.len) == 0;
}

static uint32
type_bit(JsonbValue *v, const char *path)
{
	static const char *names[] = {"null", "boolean", "object", "array", "number", "integer", "string"};

	if (v->type != jbvString)
		bad_schema(path, "\"type\" must be a string or an array of strings");
	for (int i = 0; i < 7; i++)
		if (key_is(v, names[i]))
			return 1u << i;
	bad_schema(path, psprintf("unknown type \"%.*s\"", v->val.string.len, v->val.string.val));
	return 0;
}

static Numeric
number_of(JsonbValue *v, const char *path, const char *kw)
{
	if (v->type != jbvNumeric)
		bad_schema(path, psprintf("\"%s\" must be a number", kw));
	return v->val.numeric;
}

static int
count_of(JsonbValue *v, const char *path, const char *kw)
{
	Numeric		n = number_of(v, path, kw);
	int64		i;

	i = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(n)));
	if (i < 0 || i > PG_INT32_MAX)
		bad_schema(path, psprintf("\"%s\" must be a non-negative integer", kw));
	return (int) i;
}

static Jsonb *
wrap_array(JsonbValue *v)
{
	JsonbParseState *ps = NULL;

	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	pushJsonbValue(&ps, WJB_ELEM, v);
	return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_ARRAY, NULL));
}

static SchemaNode *compile_node(JsonbValue *v, const char *path);

static SchemaNode *
compile_container(JsonbContainer *c, const char *path)
{
	SchemaNode *n = palloc0(sizeof(SchemaNode));
	JsonbIterator *it;
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	n->additional = -1;
	n->min_items = n->max_items = -1;
	n->min_length = n->max_length = -1;

	if (!JsonContainerIsObject(c))
		bad_schema(path, "a schema must be a JSON object");
	it = JsonbIteratorInit(c);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		tok = JsonbIteratorNext(&it, &v, true);
		if (key_is(&k, "type"))
		{
			if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
			{
				JsonbIterator *it2 = JsonbIteratorInit(v.val.binary.data);
				JsonbValue	e;

				while ((tok = JsonbIteratorNext(&it2, &e, true)) != WJB_DONE)
					if (tok == WJB_ELEM)
						n->types |= type_bit(&e, path);
				if (n->types == 0)
					bad_schema(path, "\"type\" must not be an empty array");
			}
			else
				n->types = type_bit(&v, path);
		}
		else if (key_is(&k, "properties"))
		{
			JsonbIterator *it2;
			JsonbValue	pk,
						pv;
			int			i = 0;

			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				bad_schema(path, "\"properties\" must be an object");
			n->nprops = JsonContainerSize(v.val.binary.data);
			n->prop_names = palloc(sizeof(char *) * Max(n->nprops, 1));
			n->prop_lens = palloc(sizeof(int) * Max(n->nprops, 1));
			n->props = palloc(sizeof(SchemaNode *) * Max(n->nprops, 1));
			it2 = JsonbIteratorInit(v.val.binary.data);
			while ((tok = JsonbIteratorNext(&it2, &pk, true)) != WJB_DONE)
			{
				if (tok != WJB_KEY)
					continue;
				(void) JsonbIteratorNext(&it2, &pv, true);
				n->prop_names[i] = pnstrdup(pk.val.string.val, pk.val.string.len);
				n->prop_lens[i] = pk.val.string.len;
				n->props[i] = compile_node(&pv, psprintf("%s/properties/%s", path, n->prop_names[i]));
				i++;
			}
		}
		else if (key_is(&k, "required"))
		{
			JsonbIterator *it2;
			JsonbValue	e;
			int			i = 0;

			if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
				bad_schema(path, "\"required\" must be an array of strings");
			n->nrequired = JsonContainerSize(v.val.binary.data);
			n->required = palloc(sizeof(char *) * Max(n->nrequired, 1));
			n->required_lens = palloc(sizeof(int) * Max(n->nrequired, 1));
			it2 = JsonbIteratorInit(v.val.binary.data);
			while ((tok = JsonbIteratorNext(&it2, &e, true)) != WJB_DONE)
			{
				if (tok != WJB_ELEM)
					continue;
				if (e.type != jbvString)
					bad_schema(path, "\"required\" must be an array of strings");
				n->required[i] = pnstrdup(e.val.string.val, e.val.string.len);
				n->required_lens[i] = e.val.string.len;
				i++;
			}
		}
		else if (key_is(&k, "additionalProperties"))
		{
			if (v.type == jbvBool)
				n->additional = v.val.boolean ? -1 : 0;
			else
			{
				n->additional = 2;
				n->additional_schema = compile_node(&v, psprintf("%s/additionalProperties", path));
			}
		}
		else if (key_is(&k, "enum"))
		{
			if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
				bad_schema(path, "\"enum\" must be an array");
			n->enum_vals = JsonbValueToJsonb(&v);
		}
		else if (key_is(&k, "const"))
			n->const_val = wrap_array(&v);
		else if (key_is(&k, "items"))
			n->items = compile_node(&v, psprintf("%s/items", path));
		else if (key_is(&k, "minItems"))
			n->min_items = count_of(&v, path, "minItems");
		else if (key_is(&k, "maxItems"))
			n->max_items = count_of(&v, path, "maxItems");
		else if (key_is(&k, "minimum"))
			n->minimum = number_of(&v, path, "minimum");
		else if (key_is(&k, "maximum"))
			n->maximum = number_of(&v, path, "maximum");
		else if (key_is(&k, "exclusiveMinimum"))
			n->exclusive_minimum = number_of(&v, path, "exclusiveMinimum");
		else if (key_is(&k, "exclusiveMaximum"))
			n->exclusive_maximum = number_of(&v, path, "exclusiveMaximum");
		else if (key_is(&k, "minLength"))
			n->min_length = count_of(&v, path, "minLength");
		else if (key_is(&k, "maxLength"))
			n->max_length = count_of(&v, path, "maxLength");
		else if (key_is(&k, "pattern"))
		{
			if (v.type != jbvString)
				bad_schema(path, "\"pattern\" must be a string");
			n->pattern = cstring_to_text_with_len(v.val.string.val, v.val.string.len);
			/* compile it now: a bad expression fails the registration */
			(void) DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
										   PointerGetDatum(cstring_to_text("")),
										   PointerGetDatum(n->pattern));
		}
		else if (key_is(&k, "format"))
		{
			if (v.type == jbvString && key_is(&v, "uuid"))
				n->format = FMT_UUID;
			else if (v.type == jbvString && key_is(&v, "date-time"))
				n->format = FMT_DATE_TIME;
			else
				bad_schema(path, "\"format\" must be \"uuid\" or \"date-time\"");
		}
		else if (key_is(&k, "$schema") || key_is(&k, "$id") || key_is(&k, "$comment") ||
				 key_is(&k, "title") || key_is(&k, "description") ||
				 key_is(&k, "default") || key_is(&k, "examples"))
			continue;
		else
			bad_schema(path, psprintf("unsupported keyword \"%.*s\"",
									  k.val.string.len, k.val.string.val));
	}
	return n;
}

static SchemaNode *
compile_node(JsonbValue *v, const char *path)
{
	if (v->type == jbvBool)
	{
		SchemaNode *n = palloc0(sizeof(SchemaNode));

		n->additional = -1;
		n->min_items = n->max_items = n->min_length = n->max_length = -1;
		if (!v->val.boolean)
			n->types = 0x80;	/* no type matches: "false" accepts nothing */
		return n;
	}
	if (v->type != jbvBinary)
		bad_schema(path, "a schema must be a JSON object");
	return compile_container(v->val.binary.data, path);
}

/* Compile a registered schema; errors name what is wrong. */
SchemaNode *
schema_compile(Jsonb *schema)
{
	if (JB_ROOT_IS_SCALAR(schema))
	{
		JsonbValue	v;

		(void) JsonbExtractScalar(&schema->root, &v);
		return compile_node(&v, "");
	}
	return compile_container(&schema->root, "");
}

/* ---------------------------------------------------------------------
 * Validation
 * ---------------------------------------------------------------------
 */
typedef struct VState
{
	StringInfoData ptr;			/* JSON pointer of the value being checked */
	const char *rule;
	const char *why;
} VState;

static bool
fail(VState *st, const char *rule, const char *why)
{
	st->rule = rule;
	st->why = why;
	return false;
}

static void
ptr_push(VState *st, const char *key, int len)
{
	appendStringInfoChar(&st->ptr, '/');
	for (int i = 0; i < len; i++)
	{
		if (key[i] == '~')
			appendStringInfoString(&st->ptr, "~0");
		else if (key[i] == '/')
			appendStringInfoString(&st->ptr, "~1");
		else
			appendStringInfoChar(&st->ptr, key[i]);
	}
}

static bool
numeric_is_int(Numeric n)
{
	Datum		f = DirectFunctionCall1(numeric_floor, NumericGetDatum(n));

	return DatumGetBool(DirectFunctionCall2(numeric_eq, f, NumericGetDatum(n)));
}

static int
num_cmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(b)));
}

static uint32
value_types(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return T_NULL;
		case jbvBool:
			return T_BOOLEAN;
		case jbvString:
			return T_STRING;
		case jbvNumeric:
			return T_NUMBER | (numeric_is_int(v->val.numeric) ? T_INTEGER : 0);
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? T_ARRAY : T_OBJECT;
		default:
			return 0;
	}
}

static bool
is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool
valid_uuid(const char *s, int len)
{
	if (len != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!is_hex(s[i]))
			return false;
	}
	return true;
}

static bool
digits(const char *s, int n, int *out)
{
	*out = 0;
	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		*out = *out * 10 + (s[i] - '0');
	}
	return true;
}

/* RFC 3339 date-time: 2026-01-31T12:00:00(.frac)?(Z|+hh:mm|-hh:mm) */
static bool
valid_date_time(const char *s, int len)
{
	int			y,
				mo,
				d,
				h,
				mi,
				se,
				i;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
		s[7] != '-' || !digits(s + 8, 2, &d) ||
		(s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
		!digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) ||
		s[16] != ':' || !digits(s + 17, 2, &se))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
		(mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) ||
		h > 23 || mi > 59 || se > 60)
		return false;
	i = 19;
	if (i < len && s[i] == '.')
	{
		i++;
		if (i >= len || s[i] < '0' || s[i] > '9')
			return false;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z'))
		return i + 1 == len;
	if (i < len && (s[i] == '+' || s[i] == '-'))
	{
		int			oh,
					om;

		return len - i == 6 && digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
			digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59;
	}
	return false;
}

/* is v equal to one of the elements of arr? */
static bool
in_array(Jsonb *arr, JsonbValue *v)
{
	Jsonb	   *one = wrap_array(v);
	JsonbIterator *it = JsonbIteratorInit(&arr->root);
	JsonbValue	e;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		Jsonb	   *other;

		if (tok != WJB_ELEM)
			continue;
		other = wrap_array(&e);
		if (DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(one),
											 JsonbPGetDatum(other))))
			return true;
	}
	return false;
}

static bool validate_value(SchemaNode *n, JsonbValue *v, VState *st);

static bool
validate_object(SchemaNode *n, JsonbContainer *c, VState *st)
{
	int			base = st->ptr.len;

	for (int i = 0; i < n->nrequired; i++)
	{
		JsonbValue *f = getKeyJsonValueFromContainer(c, n->required[i], n->required_lens[i], NULL);

		if (f == NULL)
		{
			ptr_push(st, n->required[i], n->required_lens[i]);
			return fail(st, "required", "the property is missing");
		}
	}
	for (int i = 0; i < n->nprops; i++)
	{
		JsonbValue	fv;

		if (getKeyJsonValueFromContainer(c, n->prop_names[i], n->prop_lens[i], &fv) == NULL)
			continue;
		ptr_push(st, n->prop_names[i], n->prop_lens[i]);
		if (!validate_value(n->props[i], &fv, st))
			return false;
		st->ptr.len = base;
		st->ptr.data[base] = '\0';
	}
	if (n->additional >= 0)
	{
		JsonbIterator *it = JsonbIteratorInit(c);
		JsonbValue	k,
					v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			bool		known = false;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &v, true);
			for (int i = 0; i < n->nprops && !known; i++)
				known = (n->prop_lens[i] == k.val.string.len &&
						 memcmp(n->prop_names[i], k.val.string.val, k.val.string.len) == 0);
			if (known)
				continue;
			ptr_push(st, k.val.string.val, k.val.string.len);
			if (n->additional == 0)
				return fail(st, "additionalProperties", "the schema allows no other properties");
			if (!validate_value(n->additional_schema, &v, st))
				return false;
			st->ptr.len = base;
			st->ptr.data[base] = '\0';
		}
	}
	return true;
}

static bool
validate_array(SchemaNode *n, JsonbContainer *c, VState *st)
{
	int			size = JsonContainerSize(c);
	int			base = st->ptr.len;

	if (n->min_items >= 0 && size < n->min_items)
		return fail(st, "minItems", psprintf("the array has %d items, fewer than %d", size, n->min_items));
	if (n->max_items >= 0 && size > n->max_items)
		return fail(st, "maxItems", psprintf("the array has %d items, more than %d", size, n->max_items));
	if (n->items)
	{
		for (int i = 0; i < size; i++)
		{
			JsonbValue *e = getIthJsonbValueFromContainer(c, i);

			appendStringInfo(&st->ptr, "/%d", i);
			if (!validate_value(n->items, e, st))
				return false;
			st->ptr.len = base;
			st->ptr.data[base] = '\0';
		}
	}
	return true;
}

static bool
validate_value(SchemaNode *n, JsonbValue *v, VState *st)
{
	uint32		t = value_types(v);

	if (n->types != 0 && (n->types & t) == 0)
		return fail(st, "type", n->types == 0x80 ? "the schema is false" :
					psprintf("the value is %s", t & T_NULL ? "null" : t & T_BOOLEAN ? "a boolean" :
							 t & T_STRING ? "a string" : t & T_NUMBER ? "a number" :
							 t & T_ARRAY ? "an array" : "an object"));
	if (n->const_val)
	{
		Jsonb	   *one = wrap_array(v);

		if (!DatumGetBool(DirectFunctionCall2(jsonb_eq, JsonbPGetDatum(one),
											  JsonbPGetDatum(n->const_val))))
			return fail(st, "const", "the value differs from the constant");
	}
	if (n->enum_vals && !in_array(n->enum_vals, v))
		return fail(st, "enum", "the value is not one of the listed values");
	if (t & T_NUMBER)
	{
		Numeric		x = v->val.numeric;

		if (n->minimum && num_cmp(x, n->minimum) < 0)
			return fail(st, "minimum", "the number is below the minimum");
		if (n->maximum && num_cmp(x, n->maximum) > 0)
			return fail(st, "maximum", "the number is above the maximum");
		if (n->exclusive_minimum && num_cmp(x, n->exclusive_minimum) <= 0)
			return fail(st, "exclusiveMinimum", "the number is not above the exclusive minimum");
		if (n->exclusive_maximum && num_cmp(x, n->exclusive_maximum) >= 0)
			return fail(st, "exclusiveMaximum", "the number is not below the exclusive maximum");
	}
	else if (t & T_STRING)
	{
		const char *s = v->val.string.val;
		int			len = v->val.string.len;

		if (n->min_length >= 0 || n->max_length >= 0)
		{
			int			chars = pg_mbstrlen_with_len(s, len);

			if (n->min_length >= 0 && chars < n->min_length)
				return fail(st, "minLength", psprintf("the string has %d characters, fewer than %d", chars, n->min_length));
			if (n->max_length >= 0 && chars > n->max_length)
				return fail(st, "maxLength", psprintf("the string has %d characters, more than %d", chars, n->max_length));
		}
		if (n->pattern &&
			!DatumGetBool(DirectFunctionCall2Coll(textregexeq, C_COLLATION_OID,
												  PointerGetDatum(cstring_to_text_with_len(s, len)),
												  PointerGetDatum(n->pattern))))
			return fail(st, "pattern", psprintf("the string does not match \"%s\"", text_to_cstring(n->pattern)));
		if (n->format == FMT_UUID && !valid_uuid(s, len))
			return fail(st, "format", "the string is not a UUID");
		if (n->format == FMT_DATE_TIME && !valid_date_time(s, len))
			return fail(st, "format", "the string is not an RFC 3339 date-time");
	}
	else if (t & T_OBJECT)
		return validate_object(n, v->val.binary.data, st);
	else if (t & T_ARRAY)
		return validate_array(n, v->val.binary.data, st);
	return true;
}

/*
 * Validate data against a compiled schema: NULL when it matches, else a
 * sentence saying why not, with the JSON pointer of the offending value
 * and the keyword it broke.
 */
const char *
schema_validate(SchemaNode *node, Jsonb *data, char **pointer, const char **rule)
{
	VState		st;
	JsonbValue	v;
	bool		ok;

	initStringInfo(&st.ptr);
	st.rule = NULL;
	st.why = NULL;
	if (JB_ROOT_IS_SCALAR(data))
		(void) JsonbExtractScalar(&data->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &data->root;
		v.val.binary.len = VARSIZE(data) - VARHDRSZ;
	}
	ok = validate_value(node, &v, &st);
	if (ok)
	{
		pfree(st.ptr.data);
		return NULL;
	}
	*pointer = st.ptr.data;
	*rule = st.rule;
	return st.why;
}
