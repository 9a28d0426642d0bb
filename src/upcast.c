/*-------------------------------------------------------------------------
 *
 * upcast.c
 *	  Upcasters: turning a stored event of an old schema version into the
 *	  current shape of its type, on read.  evstore.events is never changed.
 *
 * An upcaster takes events of (event_type, from_version) to to_version,
 * optionally under a new type name.  Upcasters chain: after one applied,
 * the one registered for (new type, to_version) applies, and so on.
 * to_version > from_version, so a chain always ends.
 *
 * The declarative form is a list of steps on the event's data, applied
 * here in C on a lazily expanded tree of the JSON object (only the objects
 * a path goes into are expanded), encoded back once per event:
 *
 *	 {"op": "rename", "from": "/a", "to": "/b"}        (also "move")
 *	 {"op": "copy",   "from": "/a", "to": "/b"}
 *	 {"op": "drop",   "path": "/a"}                   (also "remove")
 *	 {"op": "add",    "path": "/a", "value": v}       only when /a is absent
 *	 {"op": "add",    "path": "/a", "from": "/b", "map": {...}, "value": v}
 *	        /a computed from /b: its value, or map[its text]; else the default v
 *	 {"op": "split",  "from": "/name", "to": ["/first", "/last"], "separator": " "}
 *	 {"op": "merge",  "from": ["/first", "/last"], "to": "/name", "separator": " "}
 *
 * Paths are JSON pointers into the data object (object keys only).  A step
 * whose source is missing does nothing: reads never fail on data.  The
 * function form calls f(jsonb) -> jsonb (the data) or
 * f(evstore.events) -> evstore.events (type, data and metadata are taken).
 *
 * The result's metadata carries "schema_version" of the version reached.
 *
 *-------------------------------------------------------------------------
 */
#include "schema.h"

#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/regproc.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

bool		evstore_upcast_enabled = true;

typedef enum
{
	OP_RENAME,
	OP_COPY,
	OP_DROP,
	OP_ADD,
	OP_SPLIT,
	OP_MERGE
} UpOpKind;

typedef struct UpPath
{
	int			n;
	char	  **keys;
	int		   *lens;
} UpPath;

struct UpStep
{
	UpOpKind	kind;
	UpPath		from;			/* rename, copy, drop, add (computed), split */
	UpPath		to;				/* rename, copy, add, merge */
	UpPath	   *many;			/* split targets, merge sources */
	int			nmany;
	char	   *sep;
	int			seplen;
	JsonbValue *value;			/* add: the value or default */
	JsonbContainer *map;		/* add: lookup object */
	bool		keep;			/* split/merge: keep the sources */
};

/* ---------------------------------------------------------------------
 * Compiling steps
 * ---------------------------------------------------------------------
 */
static void
bad_step(int i, const char *msg)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid upcaster step %d: %s", i, msg),
			 errhint("See docs/schema-evolution.md for the declarative steps.")));
}

static void
parse_path(JsonbValue *v, UpPath *p, int step, const char *what)
{
	const char *s;
	int			len,
				i,
				start;
	StringInfoData seg;

	if (v == NULL || v->type != jbvString)
		bad_step(step, psprintf("\"%s\" must be a JSON pointer string", what));
	s = v->val.string.val;
	len = v->val.string.len;
	if (len < 2 || s[0] != '/')
		bad_step(step, psprintf("\"%s\" must be a JSON pointer to a field, like \"/name\"", what));
	p->n = 0;
	for (i = 0; i < len; i++)
		if (s[i] == '/')
			p->n++;
	p->keys = palloc(sizeof(char *) * p->n);
	p->lens = palloc(sizeof(int) * p->n);
	initStringInfo(&seg);
	start = 1;
	for (int k = 0; k < p->n; k++)
	{
		resetStringInfo(&seg);
		for (i = start; i < len && s[i] != '/'; i++)
		{
			if (s[i] == '~' && i + 1 < len && (s[i + 1] == '0' || s[i + 1] == '1'))
			{
				appendStringInfoChar(&seg, s[i + 1] == '0' ? '~' : '/');
				i++;
			}
			else
				appendStringInfoChar(&seg, s[i]);
		}
		if (seg.len == 0)
			bad_step(step, psprintf("\"%s\" has an empty segment", what));
		p->keys[k] = pnstrdup(seg.data, seg.len);
		p->lens[k] = seg.len;
		start = i + 1;
	}
}

static JsonbValue *
step_key(JsonbContainer *c, const char *key)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), NULL);
}

static void
parse_path_list(JsonbValue *v, UpStep *st, int step, const char *what)
{
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerSize(v->val.binary.data) < 1)
		bad_step(step, psprintf("\"%s\" must be a non-empty array of JSON pointers", what));
	st->nmany = JsonContainerSize(v->val.binary.data);
	st->many = palloc(sizeof(UpPath) * st->nmany);
	for (int i = 0; i < st->nmany; i++)
		parse_path(getIthJsonbValueFromContainer(v->val.binary.data, i), &st->many[i], step, what);
}

static void
parse_sep(JsonbContainer *c, UpStep *st, int step)
{
	JsonbValue *v = step_key(c, "separator");

	if (v == NULL)
	{
		st->sep = " ";
		st->seplen = 1;
		return;
	}
	if (v->type != jbvString || v->val.string.len == 0)
		bad_step(step, "\"separator\" must be a non-empty string");
	st->sep = pnstrdup(v->val.string.val, v->val.string.len);
	st->seplen = v->val.string.len;
}

static bool
op_is(JsonbValue *v, const char *s)
{
	return v->val.string.len == (int) strlen(s) &&
		memcmp(v->val.string.val, s, v->val.string.len) == 0;
}

/* Compile the steps of a declarative upcaster (a JSON array). */
UpStep *
upcast_compile_steps(Jsonb *steps, int *nsteps)
{
	int			n;
	UpStep	   *out;

	if (!JB_ROOT_IS_ARRAY(steps) || JB_ROOT_IS_SCALAR(steps))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("upcaster steps must be a JSON array of step objects")));
	n = JB_ROOT_COUNT(steps);
	out = palloc0(sizeof(UpStep) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		JsonbValue *e = getIthJsonbValueFromContainer(&steps->root, i);
		JsonbContainer *c;
		JsonbValue *op;
		UpStep	   *st = &out[i];
		int			map_len = 0;

		if (e->type != jbvBinary || !JsonContainerIsObject(e->val.binary.data))
			bad_step(i, "a step must be a JSON object");
		c = e->val.binary.data;
		op = step_key(c, "op");
		if (op == NULL || op->type != jbvString)
			bad_step(i, "a step needs an \"op\" string");
		if (op_is(op, "rename") || op_is(op, "move") || op_is(op, "copy"))
		{
			st->kind = op_is(op, "copy") ? OP_COPY : OP_RENAME;
			parse_path(step_key(c, "from"), &st->from, i, "from");
			parse_path(step_key(c, "to"), &st->to, i, "to");
		}
		else if (op_is(op, "drop") || op_is(op, "remove"))
		{
			st->kind = OP_DROP;
			parse_path(step_key(c, "path"), &st->from, i, "path");
		}
		else if (op_is(op, "add"))
		{
			JsonbValue *from = step_key(c, "from");
			JsonbValue *map = step_key(c, "map");

			st->kind = OP_ADD;
			parse_path(step_key(c, "path"), &st->to, i, "path");
			st->value = step_key(c, "value");
			if (from)
				parse_path(from, &st->from, i, "from");
			else if (st->value == NULL)
				bad_step(i, "\"add\" needs a \"value\", a \"from\" or both");
			if (map)
			{
				if (!from)
					bad_step(i, "\"map\" needs a \"from\"");
				if (map->type != jbvBinary || !JsonContainerIsObject(map->val.binary.data))
					bad_step(i, "\"map\" must be a JSON object");
				st->map = map->val.binary.data;
				map_len = map->val.binary.len;
			}
		}
		else if (op_is(op, "split"))
		{
			st->kind = OP_SPLIT;
			parse_path(step_key(c, "from"), &st->from, i, "from");
			parse_path_list(step_key(c, "to"), st, i, "to");
			parse_sep(c, st, i);
		}
		else if (op_is(op, "merge"))
		{
			st->kind = OP_MERGE;
			parse_path_list(step_key(c, "from"), st, i, "from");
			parse_path(step_key(c, "to"), &st->to, i, "to");
			parse_sep(c, st, i);
		}
		else
			bad_step(i, psprintf("unknown op \"%.*s\"", op->val.string.len, op->val.string.val));
		if (st->kind == OP_SPLIT || st->kind == OP_MERGE)
		{
			JsonbValue *keep = step_key(c, "keep");

			if (keep && keep->type != jbvBool)
				bad_step(i, "\"keep\" must be a boolean");
			st->keep = keep && keep->val.boolean;
		}
		/* keep the JSON the step points into: copy it */
		if (st->value)
		{
			JsonbValue *copy = palloc(sizeof(JsonbValue));

			*copy = *st->value;
			if (copy->type == jbvBinary)
			{
				Jsonb	   *j = JsonbValueToJsonb(copy);

				copy->val.binary.data = &j->root;
			}
			st->value = copy;
		}
		if (st->map)
		{
			JsonbValue	mv;
			Jsonb	   *j;

			mv.type = jbvBinary;
			mv.val.binary.data = st->map;
			mv.val.binary.len = map_len;
			j = JsonbValueToJsonb(&mv);
			st->map = &j->root;
		}
	}
	*nsteps = n;
	return out;
}

/* ---------------------------------------------------------------------
 * A mutable JSON object tree, expanded lazily
 * ---------------------------------------------------------------------
 */
typedef struct JNode JNode;

typedef struct JField
{
	char	   *key;
	int			keylen;
	JNode	   *val;			/* NULL: removed */
} JField;

struct JNode
{
	bool		is_obj;			/* expanded object: fields */
	JsonbValue	v;				/* otherwise: a scalar or jbvBinary */
	JField	   *fields;
	int			n;
	int			cap;
	const JsonbValue *cv;		/* an "add" step's constant value, or NULL */
};

static JNode *
jnode_value(JsonbValue *v)
{
	JNode	   *n = palloc(sizeof(JNode));

	n->is_obj = false;
	n->v = *v;
	n->fields = NULL;
	n->n = n->cap = 0;
	n->cv = NULL;
	return n;
}

static JNode *
jnode_empty_object(void)
{
	JNode	   *n = palloc0(sizeof(JNode));

	n->is_obj = true;
	return n;
}

/* a child of a container as a JsonbValue (as jsonb_util.c's fillJsonbValue) */
static void
fill_value(JEntry e, char *base, uint32 off, uint32 len, JsonbValue *v)
{
	if (JBE_ISNULL(e))
		v->type = jbvNull;
	else if (JBE_ISSTRING(e))
	{
		v->type = jbvString;
		v->val.string.val = base + off;
		v->val.string.len = len;
	}
	else if (JBE_ISNUMERIC(e))
	{
		v->type = jbvNumeric;
		v->val.numeric = (Numeric) (base + INTALIGN(off));
	}
	else if (JBE_ISBOOL_TRUE(e))
	{
		v->type = jbvBool;
		v->val.boolean = true;
	}
	else if (JBE_ISBOOL_FALSE(e))
	{
		v->type = jbvBool;
		v->val.boolean = false;
	}
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = (JsonbContainer *) (base + INTALIGN(off));
		v->val.binary.len = len - (INTALIGN(off) - off);
	}
}

/*
 * Expand a jbvBinary object node into fields; false if not an object.
 * Reads the container's entries directly: the keys come in jsonb order.
 */
static bool
jnode_expand(JNode *n)
{
	JsonbContainer *c;
	int			count;
	char	   *base;
	uint32		off = 0;
	JNode	   *vals;

	if (n->is_obj)
		return true;
	if (n->v.type != jbvBinary || !JsonContainerIsObject(n->v.val.binary.data))
		return false;
	c = n->v.val.binary.data;
	count = JsonContainerSize(c);
	base = (char *) &c->children[count * 2];
	n->cap = count + 4;
	n->fields = palloc(sizeof(JField) * n->cap);
	vals = palloc(sizeof(JNode) * Max(count, 1));
	for (int i = 0; i < count * 2; i++)
	{
		JEntry		e = c->children[i];
		uint32		end = JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) : off + JBE_OFFLENFLD(e);

		if (i < count)
		{
			n->fields[i].key = base + off;
			n->fields[i].keylen = end - off;
		}
		else
		{
			JNode	   *v = &vals[i - count];

			v->is_obj = false;
			v->fields = NULL;
			v->n = v->cap = 0;
			v->cv = NULL;
			fill_value(e, base, off, end - off, &v->v);
			n->fields[i - count].val = v;
		}
		off = end;
	}
	n->n = count;
	n->is_obj = true;
	return true;
}

static JField *
jnode_field(JNode *obj, const char *key, int len)
{
	for (int i = 0; i < obj->n; i++)
		if (obj->fields[i].val != NULL && obj->fields[i].keylen == len &&
			memcmp(obj->fields[i].key, key, len) == 0)
			return &obj->fields[i];
	return NULL;
}

/*
 * Add a field (room has been made), keeping the fields in jsonb's key
 * order (by length, then bytes), so that encoding finds them sorted.
 */
static JField *
jnode_insert(JNode *obj, char *key, int len, JNode *val)
{
	int			pos = obj->n;

	while (pos > 0 &&
		   (obj->fields[pos - 1].keylen > len ||
			(obj->fields[pos - 1].keylen == len &&
			 memcmp(obj->fields[pos - 1].key, key, len) > 0)))
		pos--;
	memmove(&obj->fields[pos + 1], &obj->fields[pos], sizeof(JField) * (obj->n - pos));
	obj->fields[pos].key = key;
	obj->fields[pos].keylen = len;
	obj->fields[pos].val = val;
	obj->n++;
	return &obj->fields[pos];
}

/* the parent object of the path's last key; create: make missing objects */
static JNode *
jnode_parent(JNode *root, const UpPath *p, bool create)
{
	JNode	   *cur = root;

	for (int i = 0; i < p->n - 1; i++)
	{
		JField	   *f;

		if (!jnode_expand(cur))
			return NULL;
		f = jnode_field(cur, p->keys[i], p->lens[i]);
		if (f == NULL)
		{
			if (!create)
				return NULL;
			if (cur->n == cur->cap)
			{
				cur->cap = Max(cur->cap * 2, 8);
				cur->fields = cur->fields ?
					repalloc(cur->fields, sizeof(JField) * cur->cap) :
					palloc(sizeof(JField) * cur->cap);
			}
			f = jnode_insert(cur, p->keys[i], p->lens[i], jnode_empty_object());
		}
		cur = f->val;
	}
	return jnode_expand(cur) ? cur : NULL;
}

static JNode *
jnode_get(JNode *root, const UpPath *p)
{
	JNode	   *parent = jnode_parent(root, p, false);
	JField	   *f;

	if (parent == NULL)
		return NULL;
	f = jnode_field(parent, p->keys[p->n - 1], p->lens[p->n - 1]);
	return f ? f->val : NULL;
}

static void
jnode_remove(JNode *root, const UpPath *p)
{
	JNode	   *parent = jnode_parent(root, p, false);
	JField	   *f;

	if (parent == NULL)
		return;
	f = jnode_field(parent, p->keys[p->n - 1], p->lens[p->n - 1]);
	if (f)
		f->val = NULL;
}

static void
jnode_set(JNode *root, const UpPath *p, JNode *val)
{
	JNode	   *parent = jnode_parent(root, p, true);
	JField	   *f;

	if (parent == NULL)
		return;					/* a non-object in the way: nothing */
	f = jnode_field(parent, p->keys[p->n - 1], p->lens[p->n - 1]);
	if (f)
	{
		f->val = val;
		return;
	}
	if (parent->n == parent->cap)
	{
		parent->cap = Max(parent->cap * 2, 8);
		parent->fields = parent->fields ?
			repalloc(parent->fields, sizeof(JField) * parent->cap) :
			palloc(sizeof(JField) * parent->cap);
	}
	jnode_insert(parent, p->keys[p->n - 1], p->lens[p->n - 1], val);
}

static JNode *
jnode_string(const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	return jnode_value(&v);
}

/* text of a scalar node (strings as they are), or NULL */
static char *
jnode_text(JNode *n, int *len)
{
	char	   *s;

	if (n->is_obj)
		return NULL;
	switch (n->v.type)
	{
		case jbvString:
			*len = n->v.val.string.len;
			return n->v.val.string.val;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n->v.val.numeric)));
			*len = strlen(s);
			return s;
		case jbvBool:
			s = n->v.val.boolean ? "true" : "false";
			*len = strlen(s);
			return s;
		default:
			return NULL;
	}
}

/* ---------------------------------------------------------------------
 * Encoding the tree straight into the jsonb format (as convertToJsonb
 * does, without the intermediate JsonbValue tree and its sort: the fields
 * are kept in key order).  Nested containers that were not expanded are
 * copied as they are.
 * ---------------------------------------------------------------------
 */
static int
pad_to_int(StringInfo buf)
{
	int			pad = INTALIGN(buf->len) - buf->len;

	for (int i = 0; i < pad; i++)
		buf->data[buf->len++] = '\0';
	return pad;
}

static void encode_object(StringInfo buf, JNode *n);

/*
 * The JEntry of the k-th child of a container, given its type and length:
 * every JB_OFFSET_STRIDE-th child stores its end offset instead.
 */
static inline JEntry
child_entry(JEntry meta, uint32 *totallen, int k)
{
	*totallen += JBE_OFFLENFLD(meta);
	if (*totallen > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("upcast event data exceeds the maximum jsonb size")));
	if ((k % JB_OFFSET_STRIDE) == 0)
		meta = (meta & JENTRY_TYPEMASK) | *totallen | JENTRY_HAS_OFF;
	return meta;
}

static Size object_size_bound(JNode *n);

/* the encoded size of a value node, without padding */
static Size
object_size_bound_value(JNode *v)
{
	if (v->is_obj)
		return object_size_bound(v);
	if (v->v.type == jbvString)
		return v->v.val.string.len;
	if (v->v.type == jbvNumeric)
		return VARSIZE_ANY(v->v.val.numeric);
	if (v->v.type == jbvBinary)
		return v->v.val.binary.len;
	return 0;
}

/* an upper bound of the encoded size of an object node */
static Size
object_size_bound(JNode *n)
{
	Size		sz = sizeof(uint32);

	for (int i = 0; i < n->n; i++)
	{
		JNode	   *v = n->fields[i].val;

		if (v == NULL)
			continue;
		sz += 2 * sizeof(JEntry) + n->fields[i].keylen + 3;	/* 3: padding */
		if (v->is_obj)
			sz += object_size_bound(v);
		else if (v->v.type == jbvString)
			sz += v->v.val.string.len;
		else if (v->v.type == jbvNumeric)
			sz += VARSIZE_ANY(v->v.val.numeric);
		else if (v->v.type == jbvBinary)
			sz += v->v.val.binary.len;
	}
	return sz;
}

/* append without a capacity check: object_size_bound() made room */
static inline void
APPEND_RAW(StringInfo buf, const void *src, int nbytes)
{
	memcpy(buf->data + buf->len, src, nbytes);
	buf->len += nbytes;
}

/* append one value; returns its JEntry (type and length, padding included) */
static JEntry
encode_value(StringInfo buf, JNode *n)
{
	int			start = buf->len;
	int			pad;

	if (n->is_obj)
	{
		pad = pad_to_int(buf);
		encode_object(buf, n);
		return JENTRY_ISCONTAINER | (buf->len - start);
	}
	switch (n->v.type)
	{
		case jbvNull:
			return JENTRY_ISNULL;
		case jbvBool:
			return n->v.val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
		case jbvString:
			APPEND_RAW(buf, n->v.val.string.val, n->v.val.string.len);
			return JENTRY_ISSTRING | n->v.val.string.len;
		case jbvNumeric:
			pad = pad_to_int(buf);
			APPEND_RAW(buf, (char *) n->v.val.numeric, VARSIZE_ANY(n->v.val.numeric));
			return JENTRY_ISNUMERIC | (buf->len - start);
		case jbvBinary:
			pad = pad_to_int(buf);
			APPEND_RAW(buf, (char *) n->v.val.binary.data, n->v.val.binary.len);
			return JENTRY_ISCONTAINER | (buf->len - start);
		default:
			elog(ERROR, "evstore: unexpected jsonb value type %d", (int) n->v.type);
	}
	(void) pad;
	return 0;
}

static void
encode_object(StringInfo buf, JNode *n)
{
	int			count = 0;
	int			entries;
	uint32		header;
	uint32		totallen = 0;
	int			k = 0;

	for (int i = 0; i < n->n; i++)
		if (n->fields[i].val != NULL)
			count++;
	header = count | JB_FOBJECT;
	APPEND_RAW(buf, (char *) &header, sizeof(uint32));
	entries = buf->len;
	buf->len += sizeof(JEntry) * count * 2;

	for (int i = 0; i < n->n; i++)
	{
		JEntry		meta;

		if (n->fields[i].val == NULL)
			continue;
		APPEND_RAW(buf, n->fields[i].key, n->fields[i].keylen);
		meta = child_entry(JENTRY_ISSTRING | n->fields[i].keylen, &totallen, k);
		((JEntry *) (buf->data + entries))[k++] = meta;
	}
	for (int i = 0; i < n->n; i++)
	{
		JEntry		meta;

		if (n->fields[i].val == NULL)
			continue;
		meta = child_entry(encode_value(buf, n->fields[i].val), &totallen, k);
		((JEntry *) (buf->data + entries))[k++] = meta;
	}
}

/* a buffer for a jsonb of at most "bound" bytes, its header to be set */
static void
jsonb_buffer(StringInfo buf, Size bound)
{
	if (bound > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("upcast event data exceeds the maximum jsonb size")));
	buf->maxlen = (int) bound;
	buf->data = palloc(buf->maxlen);
	buf->len = VARHDRSZ;
	buf->cursor = 0;
}

static Jsonb *
jnode_to_jsonb(JNode *root)
{
	JsonbParseState *ps = NULL;
	StringInfoData buf;
	Size		bound;

	if (!root->is_obj)
	{
		if (root->v.type == jbvBinary)
			return JsonbValueToJsonb(&root->v);
		/* a scalar root */
		pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
		ps->contVal.val.array.rawScalar = true;
		pushJsonbValue(&ps, WJB_ELEM, &root->v);
		return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_ARRAY, NULL));
	}
	bound = VARHDRSZ + object_size_bound(root) + 1;
	jsonb_buffer(&buf, bound);
	encode_object(&buf, root);
	Assert(buf.len < buf.maxlen);
	SET_VARSIZE(buf.data, buf.len);
	return (Jsonb *) buf.data;
}

static JNode *
jnode_from_jsonb(Jsonb *j)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(j))
	{
		(void) JsonbExtractScalar(&j->root, &v);
		return jnode_value(&v);
	}
	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	return jnode_value(&v);
}

/* apply one step; a missing source or a non-object in the way: nothing */
static void
apply_step(JNode *root, const UpStep *st)
{
	JNode	   *src;

	if (!jnode_expand(root))
		return;
	switch (st->kind)
	{
		case OP_RENAME:
		case OP_COPY:
			src = jnode_get(root, &st->from);
			if (src == NULL)
				return;
			if (st->kind == OP_RENAME)
				jnode_remove(root, &st->from);
			jnode_set(root, &st->to, src);
			break;
		case OP_DROP:
			jnode_remove(root, &st->from);
			break;
		case OP_ADD:
			if (jnode_get(root, &st->to) != NULL)
				return;
			src = st->from.n > 0 ? jnode_get(root, &st->from) : NULL;
			if (src != NULL && st->map != NULL)
			{
				int			len;
				char	   *s = jnode_text(src, &len);
				JsonbValue *mapped = s ? getKeyJsonValueFromContainer(st->map, s, len, NULL) : NULL;

				src = mapped ? jnode_value(mapped) : NULL;
			}
			if (src == NULL && st->value != NULL)
			{
				src = jnode_value(st->value);
				src->cv = st->value;
			}
			if (src != NULL)
				jnode_set(root, &st->to, src);
			break;
		case OP_SPLIT:
			{
				int			len,
							part = 0,
							start = 0;
				char	   *s;

				src = jnode_get(root, &st->from);
				if (src == NULL || src->is_obj || src->v.type != jbvString)
					return;
				s = src->v.val.string.val;
				len = src->v.val.string.len;
				if (!st->keep)
					jnode_remove(root, &st->from);
				for (int i = 0; i <= len && part < st->nmany; i++)
				{
					bool		at_sep = (part < st->nmany - 1 && i + st->seplen <= len &&
										  memcmp(s + i, st->sep, st->seplen) == 0);

					if (at_sep || i == len)
					{
						jnode_set(root, &st->many[part++], jnode_string(s + start, i - start));
						if (at_sep)
						{
							i += st->seplen - 1;
							start = i + 1;
						}
					}
				}
			}
			break;
		case OP_MERGE:
			{
				StringInfoData buf;
				bool		any = false;

				initStringInfo(&buf);
				for (int i = 0; i < st->nmany; i++)
				{
					JNode	   *part = jnode_get(root, &st->many[i]);
					int			len;
					char	   *s = part ? jnode_text(part, &len) : NULL;

					if (s == NULL)
						continue;
					if (any)
						appendBinaryStringInfo(&buf, st->sep, st->seplen);
					appendBinaryStringInfo(&buf, s, len);
					any = true;
				}
				if (!any)
					return;
				if (!st->keep)
					for (int i = 0; i < st->nmany; i++)
						jnode_remove(root, &st->many[i]);
				jnode_set(root, &st->to, jnode_string(buf.data, buf.len));
			}
			break;
	}
}

/* ---------------------------------------------------------------------
 * Chain programs
 *
 * The declarative run of a chain from one upcaster (until the chain ends
 * or reaches a function upcaster) is compiled on first use into a flat
 * program: all its steps, the type and version it ends at.  It lives in
 * the registry's memory, so it goes with the registry when an upcaster or
 * schema changes (the relcache callback).
 *
 * When every step is a top-level rename, copy, drop or add (constant or
 * from another field, no map), what comes out depends only on which keys
 * the data object has, not on its values.  Events of one type and version
 * nearly always have the same keys, so the program keeps a few "shapes":
 * for one set of input keys, the output's keys and where each value comes
 * from (an input field or a step's constant).  An event of a known shape
 * is then encoded straight from the stored jsonb: the keys part is copied
 * as prepared, each value copied as it is stored.  The first event of a
 * shape goes through the tree, which gives the shape; the result is the
 * same, byte for byte.
 * ---------------------------------------------------------------------
 */
#define UP_MAX_SHAPES		4
#define UP_SHAPE_MAX_KEYS	64

typedef struct UpShape
{
	void	   *mem;			/* everything below, in one chunk */
	int			nin;			/* the input: number of keys */
	JEntry	   *in_entries;		/* its key JEntries */
	char	   *in_keys;		/* its key bytes */
	uint32		in_keylen;
	int			nout;			/* the output: number of keys */
	char	   *head;			/* header and key JEntries */
	char	   *out_keys;		/* key bytes */
	uint32		out_keylen;
	int		   *src;			/* per output value: input index, or -1 */
	JEntry	   *ctype;			/* src -1: the constant's type bits */
	char	  **cbytes;			/* its encoded bytes (unpadded) */
	uint32	   *clen;
	Size		const_bound;	/* encoded size bound of the constants */
} UpShape;

struct UpProgram
{
	const UpStep **steps;		/* every step, in order */
	int			nsteps;
	Upcaster   *next;			/* the function upcaster that follows, or
								 * NULL: the chain ends here */
	text	   *to_type;		/* the type at the end, or NULL: unchanged */
	int32		to_version;		/* the version at the end */
	Upcaster   *last;			/* the last upcaster applied */
	bool		by_shape;		/* all steps allow shapes */
	UpShape		shapes[UP_MAX_SHAPES];
	int			nshapes;
	int			next_shape;		/* the one replaced when all are taken */
	uint64		hits;			/* events of a known shape */
	uint64		misses;			/* shapes made */
};

static Upcaster *
find_upcaster(RegType *t, int32 version)
{
	for (int i = 0; i < t->nups; i++)
		if (t->ups[i]->from_version == version)
			return t->ups[i];
	return NULL;
}

/* a step whose result depends only on the keys present */
static bool
step_by_shape(const UpStep *st)
{
	switch (st->kind)
	{
		case OP_RENAME:
		case OP_COPY:
			return st->from.n == 1 && st->to.n == 1;
		case OP_DROP:
			return st->from.n == 1;
		case OP_ADD:
			return st->to.n == 1 && st->from.n <= 1 && st->map == NULL;
		default:
			return false;
	}
}

/* the program of the declarative run from "first" (built on first use) */
static UpProgram *
upcast_program(Registry *reg, Upcaster *first)
{
	MemoryContext old;
	UpProgram  *prog;
	Upcaster   *up = first;
	List	   *steps = NIL;
	char	   *type = NULL;
	int			typelen = 0;
	ListCell   *lc;
	int			i = 0;

	if (likely(first->program != NULL))
		return first->program;
	old = MemoryContextSwitchTo(GetMemoryChunkContext(first));
	prog = palloc0(sizeof(UpProgram));
	prog->by_shape = true;
	while (up != NULL && !OidIsValid(up->func))
	{
		RegType    *t;

		for (int k = 0; k < up->nsteps; k++)
		{
			steps = lappend(steps, &up->steps[k]);
			prog->by_shape &= step_by_shape(&up->steps[k]);
		}
		if (up->to_type)
		{
			type = up->to_type;
			typelen = up->to_typelen;
		}
		prog->to_version = up->to_version;
		prog->last = up;
		t = registry_find_type(reg, type ? type : up->event_type,
							   type ? typelen : up->typelen);
		up = (t != NULL) ? find_upcaster(t, up->to_version) : NULL;
	}
	prog->next = up;
	prog->nsteps = list_length(steps);
	prog->steps = palloc(sizeof(UpStep *) * Max(prog->nsteps, 1));
	foreach(lc, steps)
		prog->steps[i++] = lfirst(lc);
	list_free(steps);
	if (type)
		prog->to_type = cstring_to_text_with_len(type, typelen);
	prog->by_shape &= prog->nsteps > 0;
	MemoryContextSwitchTo(old);
	first->program = prog;
	return prog;
}

/* where the keys and values of an object container are; false: too many */
static bool
object_layout(JsonbContainer *c, uint32 *keylen, uint32 *voff, uint32 *vlen)
{
	int			count = JsonContainerSize(c);
	uint32		off = 0;

	if (count > UP_SHAPE_MAX_KEYS)
		return false;
	for (int i = 0; i < count * 2; i++)
	{
		JEntry		e = c->children[i];
		uint32		end = JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) : off + JBE_OFFLENFLD(e);

		if (i == count)
			*keylen = off;
		if (i >= count)
		{
			voff[i - count] = off;
			vlen[i - count] = end - off;
		}
		off = end;
	}
	if (count == 0)
		*keylen = 0;
	return true;
}

/* the shape of this event's keys through the program, made from the tree */
static UpShape *
shape_build(UpProgram *prog, Jsonb *data, uint32 in_keylen)
{
	JNode	   *root = jnode_from_jsonb(data);
	JNode	   *vals;
	int			nin;
	int			nout = 0;
	int			k = 0;
	uint32		totallen = 0;
	uint32		out_keylen = 0;
	UpShape    *sh;
	char	   *mem;

	if (!jnode_expand(root))
		return NULL;
	nin = root->n;
	vals = nin > 0 ? root->fields[0].val : NULL;
	for (int i = 0; i < prog->nsteps; i++)
		apply_step(root, prog->steps[i]);
	for (int i = 0; i < root->n; i++)
	{
		JNode	   *v = root->fields[i].val;

		if (v == NULL)
			continue;
		if (!((v >= vals && v < vals + nin) || (v->cv != NULL && !v->is_obj)))
		{
			/* cannot happen with the steps allowed; take the tree always */
			prog->by_shape = false;
			return NULL;
		}
		nout++;
	}
	if (nout > UP_SHAPE_MAX_KEYS)
	{
		prog->by_shape = false;
		return NULL;
	}

	/*
	 * Shapes that keep changing (optional keys) are not worth it: after a
	 * few dozen, when less than four in five events found theirs, the tree
	 * does it from now on.
	 */
	if (++prog->misses >= 32 && prog->misses * 4 > prog->hits)
		prog->by_shape = false;

	for (int i = 0; i < root->n; i++)
		if (root->fields[i].val != NULL)
			out_keylen += root->fields[i].keylen;
	if (prog->nshapes < UP_MAX_SHAPES)
		sh = &prog->shapes[prog->nshapes++];
	else
	{
		/* all taken: replace one */
		sh = &prog->shapes[prog->next_shape];
		prog->next_shape = (prog->next_shape + 1) % UP_MAX_SHAPES;
		pfree(sh->mem);
	}
	sh->nin = 0;				/* matches nothing until complete */
	mem = MemoryContextAllocZero(GetMemoryChunkContext(prog),
								 sizeof(char *) * nout + sizeof(int) * nout +
								 sizeof(uint32) * nout +
								 sizeof(JEntry) * (nin + 2 * nout + 1) +
								 in_keylen + out_keylen + 1);
	sh->mem = mem;
	sh->cbytes = (char **) mem;
	mem += sizeof(char *) * nout;
	sh->clen = (uint32 *) mem;
	mem += sizeof(uint32) * nout;
	sh->ctype = (JEntry *) mem;
	mem += sizeof(JEntry) * nout;
	sh->src = (int *) mem;
	mem += sizeof(int) * nout;
	sh->in_entries = (JEntry *) mem;
	mem += sizeof(JEntry) * nin;
	sh->head = mem;
	mem += sizeof(uint32) + sizeof(JEntry) * nout;
	sh->in_keys = mem;
	mem += in_keylen;
	sh->out_keys = mem;
	memcpy(sh->in_entries, data->root.children, sizeof(JEntry) * nin);
	memcpy(sh->in_keys, (char *) &data->root.children[nin * 2], in_keylen);
	sh->in_keylen = in_keylen;
	sh->out_keylen = out_keylen;
	sh->const_bound = 0;
	*(uint32 *) sh->head = nout | JB_FOBJECT;
	for (int i = 0; i < root->n; i++)
	{
		JNode	   *v = root->fields[i].val;
		JEntry		meta;

		if (v == NULL)
			continue;
		memcpy(sh->out_keys + totallen, root->fields[i].key, root->fields[i].keylen);
		meta = child_entry(JENTRY_ISSTRING | root->fields[i].keylen, &totallen, k);
		((JEntry *) (sh->head + sizeof(uint32)))[k] = meta;
		if (v >= vals && v < vals + nin)
			sh->src[k] = (int) (v - vals);
		else
		{
			/* the constant encoded once, from an aligned start */
			StringInfoData cb;
			JNode		cn;

			cn.is_obj = false;
			cn.v = *v->cv;
			cb.maxlen = (int) (object_size_bound_value(&cn) + 1);
			cb.data = MemoryContextAlloc(GetMemoryChunkContext(prog), cb.maxlen);
			cb.len = 0;
			cb.cursor = 0;
			sh->ctype[k] = encode_value(&cb, &cn) & JENTRY_TYPEMASK;
			sh->src[k] = -1;
			sh->cbytes[k] = cb.data;
			sh->clen[k] = cb.len;
			sh->const_bound += cb.len + 3;
		}
		k++;
	}
	sh->nout = nout;
	sh->nin = nin;
	return sh;
}

/*
 * The program's result for an object of a known (or new) shape, encoded
 * straight from the stored jsonb; NULL when the tree must do it.
 */
static Jsonb *
shape_apply(UpProgram *prog, Jsonb *data)
{
	JsonbContainer *c = &data->root;
	int			nin;
	uint32		keylen = 0;
	uint32		voff[UP_SHAPE_MAX_KEYS];
	uint32		vlen[UP_SHAPE_MAX_KEYS];
	UpShape    *sh = NULL;
	char	   *base;
	StringInfoData buf;
	Size		bound;
	JEntry	   *entries;
	uint32		totallen;

	if (!JB_ROOT_IS_OBJECT(data) || !object_layout(c, &keylen, voff, vlen))
		return NULL;
	nin = JsonContainerSize(c);
	base = (char *) &c->children[nin * 2];
	for (int i = 0; i < prog->nshapes; i++)
	{
		UpShape    *s = &prog->shapes[i];

		if (s->nin == nin && s->in_keylen == keylen &&
			memcmp(s->in_entries, c->children, sizeof(JEntry) * nin) == 0 &&
			memcmp(s->in_keys, base, keylen) == 0)
		{
			sh = s;
			break;
		}
	}
	if (sh != NULL)
		prog->hits++;
	else if ((sh = shape_build(prog, data, keylen)) == NULL)
		return NULL;

	bound = VARHDRSZ + sizeof(uint32) + 2 * sizeof(JEntry) * sh->nout +
		sh->out_keylen + sh->const_bound + 1;
	for (int k = 0; k < sh->nout; k++)
		if (sh->src[k] >= 0)
			bound += vlen[sh->src[k]] + 3;
	jsonb_buffer(&buf, bound);
	APPEND_RAW(&buf, sh->head, sizeof(uint32) + sizeof(JEntry) * sh->nout);
	entries = (JEntry *) (buf.data + VARHDRSZ + sizeof(uint32));
	buf.len += sizeof(JEntry) * sh->nout;
	APPEND_RAW(&buf, sh->out_keys, sh->out_keylen);
	totallen = sh->out_keylen;
	for (int k = 0; k < sh->nout; k++)
	{
		JEntry		type;
		int			idx = sh->nout + k;
		int			start = buf.len;
		const char *src;
		uint32		len;

		if (sh->src[k] >= 0)
		{
			/* as stored: numbers and containers after their padding */
			JEntry		e = c->children[nin + sh->src[k]];
			uint32		off = voff[sh->src[k]];

			type = e & JENTRY_TYPEMASK;
			len = vlen[sh->src[k]];
			src = base + off;
			if (type == JENTRY_ISNUMERIC || type == JENTRY_ISCONTAINER)
			{
				len -= INTALIGN(off) - off;
				src = base + INTALIGN(off);
			}
		}
		else
		{
			type = sh->ctype[k];
			src = sh->cbytes[k];
			len = sh->clen[k];
		}
		if (type == JENTRY_ISNUMERIC || type == JENTRY_ISCONTAINER)
			(void) pad_to_int(&buf);
		APPEND_RAW(&buf, src, len);
		entries[idx] = child_entry(type | (buf.len - start), &totallen, idx);
	}
	Assert(buf.len < buf.maxlen);
	SET_VARSIZE(buf.data, buf.len);
	return (Jsonb *) buf.data;
}

/* ---------------------------------------------------------------------
 * Chains
 * ---------------------------------------------------------------------
 */
struct EvstoreUpcaster
{
	EvstoreUpcastMode mode;
	Registry   *reg;
	MemoryContext cxt;			/* per event, reset before each */
	MemoryContext parent;
	TupleDesc	desc;
	TupleTableSlot *out;		/* virtual */
	TupleTableSlot *mout;		/* minimal tuple (spliced rows) */
	int			since_reset;	/* events upcast since cxt was reset */
};

/*
 * Call an upcaster's function as the role that registered it, in a
 * restricted security context, with every setting it changes rolled back
 * and nothing left behind in the reader's session (sandbox.c, as for a
 * projection handler): a reader never runs someone else's code with its
 * own privileges, nor keeps what that code did to its session.  A null
 * result is an error.
 */
static Datum
invoke_as_owner(Upcaster *up, FunctionCallInfo fcinfo)
{
	EvstoreSandbox sb;
	Datum		result;

	evstore_sandbox_prepare(&sb, "the upcaster of event type", up->event_type,
							"an upcaster", "An upcaster", "reader's");
	PG_TRY();
	{
		evstore_sandbox_enter(&sb, up->owner, "pg_catalog, pg_temp");
		result = FunctionCallInvoke(fcinfo);
		evstore_sandbox_leave(&sb);
	}
	PG_CATCH();
	{
		evstore_sandbox_abort(&sb);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (fcinfo->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("upcaster function %s returned null", format_procedure(up->func)),
				 errdetail("It upcasts events of type \"%s\" from version %d.",
						   up->event_type, up->from_version)));
	return result;
}

/* call a function upcaster; returns the new data (and maybe type, metadata) */
static void
call_function(Upcaster *up, text **type, Jsonb **data, Jsonb **meta)
{
	Datum		result;

	if (up->func_missing)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the function of the upcaster of event type \"%s\" from version %d does not exist",
						up->event_type, up->from_version),
				 errhint("Drop the upcaster with evstore.drop_upcaster() or register it again.")));
	if (!up->flinfo_ready)
	{
		/* in the registry's memory: freed with it */
		fmgr_info_cxt(up->func, &up->flinfo, GetMemoryChunkContext(up));
		up->flinfo_ready = true;
	}
	if (!up->func_takes_row)
	{
		LOCAL_FCINFO(fcinfo, 1);

		InitFunctionCallInfoData(*fcinfo, &up->flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = JsonbPGetDatum(*data);
		fcinfo->args[0].isnull = false;
		result = invoke_as_owner(up, fcinfo);
		*data = DatumGetJsonbP(result);
	}
	else
	{
		LOCAL_FCINFO(fcinfo, 1);
		TupleDesc	td = lookup_rowtype_tupdesc(evstore_catalog()->events_type, -1);
		Datum		values[Natts_events];
		bool		nulls[Natts_events];
		HeapTupleHeader rh;
		HeapTupleData rt;

		memset(values, 0, sizeof(values));
		memset(nulls, true, sizeof(nulls));
		values[Anum_events_event_type - 1] = PointerGetDatum(*type);
		nulls[Anum_events_event_type - 1] = false;
		values[Anum_events_data - 1] = JsonbPGetDatum(*data);
		nulls[Anum_events_data - 1] = false;
		if (*meta)
		{
			values[Anum_events_metadata - 1] = JsonbPGetDatum(*meta);
			nulls[Anum_events_metadata - 1] = false;
		}
		InitFunctionCallInfoData(*fcinfo, &up->flinfo, 1, InvalidOid, NULL, NULL);
		if (td->natts != Natts_events)
			elog(ERROR, "evstore: unexpected shape of evstore.events");
		fcinfo->args[0].value = HeapTupleGetDatum(heap_form_tuple(td, values, nulls));
		fcinfo->args[0].isnull = false;
		result = invoke_as_owner(up, fcinfo);
		rh = DatumGetHeapTupleHeader(result);
		rt.t_len = HeapTupleHeaderGetDatumLength(rh);
		ItemPointerSetInvalid(&rt.t_self);
		rt.t_tableOid = InvalidOid;
		rt.t_data = rh;
		heap_deform_tuple(&rt, td, values, nulls);
		ReleaseTupleDesc(td);
		if (nulls[Anum_events_event_type - 1] || nulls[Anum_events_data - 1])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("upcaster function %s returned an event without type or data",
							format_procedure(up->func))));
		*type = DatumGetTextPP(values[Anum_events_event_type - 1]);
		*data = DatumGetJsonbP(values[Anum_events_data - 1]);
		*meta = nulls[Anum_events_metadata - 1] ? NULL : DatumGetJsonbP(values[Anum_events_metadata - 1]);
	}
}

/* metadata with "schema_version": version */
static Jsonb *
stamp_version(Jsonb *meta, int32 version)
{
	JNode	   *root;
	JsonbValue	v;
	UpPath		p;
	char	   *key = EVSTORE_SCHEMA_VERSION_KEY;
	int			len = strlen(key);

	if (meta == NULL)
	{
		/* the common case: build {"schema_version": N} directly */
		JsonbParseState *ps = NULL;
		JsonbValue	k;

		k.type = jbvString;
		k.val.string.val = key;
		k.val.string.len = len;
		v.type = jbvNumeric;
		v.val.numeric = int64_to_numeric(version);
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		pushJsonbValue(&ps, WJB_KEY, &k);
		pushJsonbValue(&ps, WJB_VALUE, &v);
		return JsonbValueToJsonb(pushJsonbValue(&ps, WJB_END_OBJECT, NULL));
	}
	root = jnode_from_jsonb(meta);
	if (!jnode_expand(root))
		return meta;
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(version);
	p.n = 1;
	p.keys = &key;
	p.lens = &len;
	jnode_set(root, &p, jnode_value(&v));
	return jnode_to_jsonb(root);
}

/*
 * Run the chain for one event.  Returns false when no upcaster applies.
 * t: the registry's entry of the event's type.  declarative_only: stop
 * before a function upcaster.
 */
static bool
run_chain(Registry *reg, RegType *t, text **type, Jsonb **data, Jsonb **meta,
		  int32 *version_out, bool declarative_only)
{
	int32		version;
	Upcaster   *last = NULL;

	if (t == NULL || t->nups == 0)
		return false;
	version = evstore_event_schema_version(*meta);
	for (;;)
	{
		Upcaster   *up = find_upcaster(t, version);

		if (up == NULL)
			break;
		if (OidIsValid(up->func))
		{
			if (declarative_only)
				break;
			call_function(up, type, data, meta);
			version = up->to_version;
			last = up;
		}
		else
		{
			UpProgram  *prog = upcast_program(reg, up);

			if (prog->nsteps > 0)
			{
				Jsonb	   *res = prog->by_shape ? shape_apply(prog, *data) : NULL;

				if (res == NULL)
				{
					JNode	   *root = jnode_from_jsonb(*data);

					for (int i = 0; i < prog->nsteps; i++)
						apply_step(root, prog->steps[i]);
					res = jnode_to_jsonb(root);
				}
				*data = res;
			}
			if (prog->to_type)
				*type = prog->to_type;
			version = prog->to_version;
			last = prog->last;
			if (prog->next == NULL)
				break;			/* the chain ends here */
		}
		t = registry_find_type(reg, VARDATA_ANY(*type), VARSIZE_ANY_EXHDR(*type));
		if (t == NULL || t->nups == 0)
			break;
	}
	if (last == NULL)
		return false;
	if (*meta == NULL)
	{
		/* the common case: a constant, built once */
		if (last->stamp == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(last));

			last->stamp = stamp_version(NULL, version);
			MemoryContextSwitchTo(old);
		}
		*meta = last->stamp;
	}
	else
		*meta = stamp_version(*meta, version);
	*version_out = version;
	return true;
}

/*
 * Start upcasting for one read.  NULL when there is nothing to do (upcasting
 * is off for this reader, or no upcaster is registered): the callers then
 * skip it entirely.  The registry seen here is the one for the whole read.
 */
EvstoreUpcaster *
evstore_upcaster_begin(TupleDesc events_desc, EvstoreUpcastMode mode)
{
	Registry   *reg;
	EvstoreUpcaster *u;

	if (mode == UPCAST_READ && !evstore_upcast_enabled)
		return NULL;
	reg = evstore_registry();
	if (likely(reg->nupcasters == 0))
		return NULL;
	/* other code ran since the last read: count the advisory locks anew */
	evstore_sandbox_forget_locks();
	u = palloc0(sizeof(EvstoreUpcaster));
	u->mode = mode;
	u->reg = reg;
	u->desc = events_desc;
	u->parent = CurrentMemoryContext;
	return u;
}

static void
upcaster_reset(EvstoreUpcaster *u)
{
	/*
	 * The previous event's memory is released in bulk, every few hundred
	 * kilobytes rather than every event: the result of a call stays valid
	 * until the next one either way.
	 */
	if (u->cxt == NULL)
		u->cxt = AllocSetContextCreate(u->parent, "evstore upcast",
									   256 * 1024, 256 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	else if (++u->since_reset >= 64)
	{
		MemoryContextReset(u->cxt);
		u->since_reset = 0;
	}
}

/* as heaptuple.c: a varlena column that may take a short header */
#define UP_ATT_IS_PACKABLE(att) \
	((att)->attlen == -1 && (att)->attstorage != TYPSTORAGE_PLAIN)

/*
 * The upcast row as a minimal tuple made from the stored heap tuple: the
 * columns before event_type are copied in one piece (their bytes, padding
 * included, stay at the same offsets), the new event_type, data and
 * metadata are laid out as heap_fill_tuple() lays them out, and the columns
 * after them are copied in one piece too: they start with recorded_at,
 * double-aligned in both tuples, so their bytes keep their alignment.  NULL
 * when the row does not allow it (then the caller forms the row).
 */
static MinimalTuple
splice_row(TupleTableSlot *in, Pointer stored_type, Datum *newvals)
{
	TupleDesc	desc = in->tts_tupleDescriptor;
	HeapTuple	tuple;
	HeapTupleHeader th;
	bool		should_free;
	char	   *tp;
	Size		datalen;
	Size		prefix;
	Pointer		last;
	Size		tail;
	Size		off;
	Size		hoff;
	MinimalTuple mt;
	char	   *data;
	const int	first = Anum_events_event_type - 1;
	const int	after = Anum_events_metadata;	/* index of recorded_at */

	if (!(TTS_IS_BUFFERTUPLE(in) || TTS_IS_HEAPTUPLE(in)) || desc->natts != Natts_events ||
		TupleDescAttr(desc, after)->attalign != TYPALIGN_DOUBLE)
		return NULL;
	tuple = ExecFetchSlotHeapTuple(in, false, &should_free);
	if (should_free || HeapTupleHasExternal(tuple))
		return NULL;
	th = tuple->t_data;
	tp = (char *) th + th->t_hoff;
	datalen = tuple->t_len - th->t_hoff;
	if (stored_type < tp || stored_type >= tp + datalen)
		return NULL;
	prefix = stored_type - tp;
	/* no null bitmap in the result: only the stored metadata may be null */
	for (int i = 0; i < Natts_events; i++)
		if (TupleDescAttr(desc, i)->attisdropped ||
			(i != Anum_events_metadata - 1 && HeapTupleHasNulls(tuple) && att_isnull(i, th->t_bits)))
			return NULL;

	/* where the stored columns after the metadata start */
	last = DatumGetPointer(in->tts_values[in->tts_isnull[Anum_events_metadata - 1] ?
										  Anum_events_data - 1 : Anum_events_metadata - 1]);
	if (last < tp || last >= tp + datalen)
		return NULL;
	tail = att_align_nominal((Size) (last - tp) + VARSIZE_ANY(last), TYPALIGN_DOUBLE);
	if (tail > datalen)
		return NULL;

	/* the size, as heap_compute_data_size() */
	off = prefix;
	for (int i = 0; i < 3; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, first + i);
		Pointer		val = DatumGetPointer(newvals[i]);

		if (att->attlen != -1 || VARATT_IS_EXTERNAL(val))
			return NULL;
		if (UP_ATT_IS_PACKABLE(att) && VARATT_CAN_MAKE_SHORT(val))
			off += VARATT_CONVERTED_SHORT_SIZE(val);
		else
		{
			off = att_align_datum(off, att->attalign, att->attlen, newvals[i]);
			off = att_addlength_datum(off, att->attlen, newvals[i]);
		}
	}
	off = att_align_nominal(off, TYPALIGN_DOUBLE);

	hoff = MAXALIGN(SizeofMinimalTupleHeader);
	mt = (MinimalTuple) palloc0(hoff + off + (datalen - tail));
	mt->t_len = hoff + off + (datalen - tail);
	HeapTupleHeaderSetNatts(mt, Natts_events);
	mt->t_hoff = hoff + MINIMAL_TUPLE_OFFSET;
	mt->t_infomask = HEAP_HASVARWIDTH;
	data = (char *) mt + hoff;
	memcpy(data, tp, prefix);

	/* the three columns, as heap_fill_tuple() fills varlenas */
	data += prefix;
	for (int i = 0; i < 3; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, first + i);
		Pointer		val = DatumGetPointer(newvals[i]);
		Size		len;

		if (VARATT_IS_SHORT(val))
		{
			len = VARSIZE_SHORT(val);
			memcpy(data, val, len);
		}
		else if (UP_ATT_IS_PACKABLE(att) && VARATT_CAN_MAKE_SHORT(val))
		{
			len = VARATT_CONVERTED_SHORT_SIZE(val);
			SET_VARSIZE_SHORT(data, len);
			memcpy(data + 1, VARDATA(val), len - 1);
		}
		else
		{
			data = (char *) att_align_nominal(data, att->attalign);
			len = VARSIZE(val);
			memcpy(data, val, len);
		}
		data += len;
	}
	data = (char *) att_align_nominal(data, TYPALIGN_DOUBLE);
	if (data != (char *) mt + hoff + off)
		elog(ERROR, "evstore: upcast row laid out wrongly");
	memcpy(data, tp + tail, datalen - tail);
	return mt;
}

/*
 * The event in "in" in its current shape: "in" itself when no upcaster
 * applies, else a slot valid until the next call.
 */
TupleTableSlot *
evstore_upcaster_slot(EvstoreUpcaster *u, TupleTableSlot *in)
{
	bool		isnull;
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *meta;
	Datum		tdatum = slot_getattr(in, Anum_events_event_type, &isnull);
	MemoryContext old;
	int32		version;
	RegType    *t;
	MinimalTuple mt;

	/* the common case: the type has no upcaster */
	type = (text *) DatumGetPointer(tdatum);
	if (VARATT_IS_EXTENDED(type))
		type = pg_detoast_datum_packed(type);
	t = registry_find_type(u->reg, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	if (t == NULL || t->nups == 0)
		return in;

	upcaster_reset(u);
	old = MemoryContextSwitchTo(u->cxt);
	data = DatumGetJsonbP(slot_getattr(in, Anum_events_data, &isnull));
	meta = (Jsonb *) DatumGetPointer(slot_getattr(in, Anum_events_metadata, &isnull));
	meta = isnull ? NULL : DatumGetJsonbP(PointerGetDatum(meta));
	if (!run_chain(u->reg, t, &type, &data, &meta, &version, u->mode == UPCAST_DECODER))
	{
		MemoryContextSwitchTo(old);
		return in;
	}
	if (meta != NULL)
	{
		/* the stored row with three columns replaced */
		Datum		values[3];

		values[0] = PointerGetDatum(type);
		values[1] = JsonbPGetDatum(data);
		values[2] = JsonbPGetDatum(meta);
		if ((mt = splice_row(in, DatumGetPointer(tdatum), values)) != NULL)
		{
			if (u->mout == NULL)
			{
				MemoryContextSwitchTo(u->parent);
				u->mout = MakeSingleTupleTableSlot(in->tts_tupleDescriptor,
												   &TTSOpsMinimalTuple);
				MemoryContextSwitchTo(u->cxt);
			}
			/* the tuple lives in u->cxt, reset in bulk */
			ExecStoreMinimalTuple(mt, u->mout, false);
			MemoryContextSwitchTo(old);
			return u->mout;
		}
	}
	if (u->out == NULL)
	{
		MemoryContextSwitchTo(u->parent);
		u->out = MakeSingleTupleTableSlot(in->tts_tupleDescriptor, &TTSOpsVirtual);
		MemoryContextSwitchTo(u->cxt);
	}
	ExecClearTuple(u->out);
	slot_getallattrs(in);
	memcpy(u->out->tts_values, in->tts_values, sizeof(Datum) * in->tts_tupleDescriptor->natts);
	memcpy(u->out->tts_isnull, in->tts_isnull, sizeof(bool) * in->tts_tupleDescriptor->natts);
	u->out->tts_values[Anum_events_event_type - 1] = PointerGetDatum(type);
	u->out->tts_values[Anum_events_data - 1] = JsonbPGetDatum(data);
	u->out->tts_values[Anum_events_metadata - 1] = JsonbPGetDatum(meta);
	u->out->tts_isnull[Anum_events_metadata - 1] = (meta == NULL);
	ExecStoreVirtualTuple(u->out);
	MemoryContextSwitchTo(old);
	return u->out;
}

/*
 * The same on the three columns (the output plugin); true when changed.
 * The new values live in the caller's memory context.
 */
bool
evstore_upcaster_datums(EvstoreUpcaster *u, Datum *type, Datum *data,
						Datum *metadata, bool *metadata_null, int32 *version)
{
	text	   *t = DatumGetTextPP(*type);
	Jsonb	   *d;
	Jsonb	   *m;
	RegType    *rt = registry_find_type(u->reg, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

	if (rt == NULL || rt->nups == 0)
		return false;
	d = DatumGetJsonbP(*data);
	m = *metadata_null ? NULL : DatumGetJsonbP(*metadata);
	if (!run_chain(u->reg, rt, &t, &d, &m, version, u->mode == UPCAST_DECODER))
		return false;
	*type = PointerGetDatum(t);
	*data = JsonbPGetDatum(d);
	*metadata = JsonbPGetDatum(m);
	*metadata_null = (m == NULL);
	return true;
}

void
evstore_upcaster_end(EvstoreUpcaster *u)
{
	if (u == NULL)
		return;
	if (u->out)
		ExecDropSingleTupleTableSlot(u->out);
	if (u->mout)
		ExecDropSingleTupleTableSlot(u->mout);
	if (u->cxt)
		MemoryContextDelete(u->cxt);
	pfree(u);
}

void
evstore_upcast_init(void)
{
	DefineCustomBoolVariable("evstore.upcast",
							 "Readers see events in the current shape of their type (upcasters applied).",
							 "Off: read_stream, read_all and subscription_fetch return events as stored. "
							 "Projections always see current shapes.",
							 &evstore_upcast_enabled,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);
}

PG_FUNCTION_INFO_V1(evstore_upcast_event);

/* evstore.upcast(event evstore.events) -> evstore.events */
Datum
evstore_upcast_event(PG_FUNCTION_ARGS)
{
	HeapTupleHeader th = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	td = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th),
											HeapTupleHeaderGetTypMod(th));
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *meta;
	int32		version;
	HeapTuple	result;
	Registry   *reg;

	if (td->natts < Natts_events)
		elog(ERROR, "evstore: unexpected shape of evstore.events");
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	values = palloc(sizeof(Datum) * td->natts);
	nulls = palloc(sizeof(bool) * td->natts);
	heap_deform_tuple(&tuple, td, values, nulls);
	if (nulls[Anum_events_event_type - 1] || nulls[Anum_events_data - 1])
	{
		ReleaseTupleDesc(td);
		PG_RETURN_DATUM(PointerGetDatum(th));
	}
	type = DatumGetTextPP(values[Anum_events_event_type - 1]);
	data = DatumGetJsonbP(values[Anum_events_data - 1]);
	meta = nulls[Anum_events_metadata - 1] ? NULL : DatumGetJsonbP(values[Anum_events_metadata - 1]);
	reg = evstore_registry();
	evstore_sandbox_forget_locks();
	if (!run_chain(reg, registry_find_type(reg, VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type)),
				   &type, &data, &meta, &version, false))
	{
		ReleaseTupleDesc(td);
		PG_RETURN_DATUM(PointerGetDatum(th));
	}
	values[Anum_events_event_type - 1] = PointerGetDatum(type);
	values[Anum_events_data - 1] = JsonbPGetDatum(data);
	values[Anum_events_metadata - 1] = JsonbPGetDatum(meta);
	nulls[Anum_events_metadata - 1] = (meta == NULL);
	result = heap_form_tuple(td, values, nulls);
	ReleaseTupleDesc(td);
	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}
