/*-------------------------------------------------------------------------
 *
 * shredding_paths.c
 *	  Crypto-shredding: the dotted paths that name the fields protect()
 *	  encrypts, parsed into a tree and matched against object keys and
 *	  array indexes during the walk.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "shredding.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

struct PathNode
{
	char	   *seg;
	int			seglen;
	int			index;			/* array index the segment names, or -1 */
	bool		wildcard;
	bool		terminal;
	struct PathNode *children;
	struct PathNode *next;
};

static PathNode *
path_child(PathNode *parent, const char *seg, int seglen, bool wildcard)
{
	PathNode   *n;

	for (n = parent->children; n != NULL; n = n->next)
		if (n->wildcard == wildcard && n->seglen == seglen &&
			memcmp(n->seg, seg, seglen) == 0)
			return n;
	n = palloc0(sizeof(PathNode));
	n->seg = pnstrdup(seg, seglen);
	n->seglen = seglen;
	n->wildcard = wildcard;
	n->index = -1;
	if (!wildcard && seglen > 0 && seglen <= 9)
	{
		int			v = 0;
		bool		digits = true;

		for (int i = 0; i < seglen; i++)
		{
			if (!isdigit((unsigned char) seg[i]))
				digits = false;
			else
				v = v * 10 + (seg[i] - '0');
		}
		if (digits && (seglen == 1 || seg[0] != '0'))
			n->index = v;
	}
	n->next = parent->children;
	parent->children = n;
	return n;
}

/*
 * Add one dotted path to the tree.  Segments are separated by '.', a
 * backslash escapes the next character ('\.' for a dot, '\\' for a
 * backslash, '\*' for a literal '*'); an unescaped '*' segment matches every
 * member of an object or element of an array.
 */
static void
add_path(PathNode *root, const char *path)
{
	int			len = strlen(path);
	char	   *seg = palloc(len + 1);
	int			seglen = 0;
	bool		escaped_any = false;
	PathNode   *node = root;

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evstore.protect path must not be empty")));
	for (int i = 0; i <= len; i++)
	{
		if (i == len || path[i] == '.')
		{
			bool		wildcard = (!escaped_any && seglen == 1 && seg[0] == '*');

			if (seglen == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid evstore.protect path \"%s\"", path),
						 errdetail("A path is keys separated by dots; a key cannot be empty."),
						 errhint("Escape a dot inside a key as \"\\.\".")));
			node = path_child(node, seg, seglen, wildcard);
			seglen = 0;
			escaped_any = false;
			continue;
		}
		if (path[i] == '\\')
		{
			if (i + 1 >= len)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid evstore.protect path \"%s\"", path),
						 errdetail("The path ends with a lone backslash.")));
			i++;
			escaped_any = true;
		}
		seg[seglen++] = path[i];
	}
	node->terminal = true;
}

/*
 * Children of the nodes in 'set' that match an object key (key != NULL) or
 * an array index.  *terminal tells whether one of them ends a path.
 */
List *
shred_path_match(List *set, const JsonbValue *key, int index, bool *terminal)
{
	List	   *res = NIL;
	ListCell   *lc;

	*terminal = false;
	foreach(lc, set)
	{
		PathNode   *p = lfirst(lc);

		for (PathNode *c = p->children; c != NULL; c = c->next)
		{
			bool		m;

			if (c->wildcard)
				m = true;
			else if (key != NULL)
				m = (c->seglen == key->val.string.len &&
					 memcmp(c->seg, key->val.string.val, c->seglen) == 0);
			else
				m = (c->index == index);
			if (m)
			{
				res = lappend(res, c);
				if (c->terminal)
					*terminal = true;
			}
		}
	}
	return res;
}
/* Parsed paths, kept across calls of one query while the array is the same */
typedef struct PathCache
{
	MemoryContext cxt;
	int			nbytes;
	char	   *bytes;			/* the array as it was */
	int			nelems;
	PathNode   *root;
} PathCache;

PathNode *
shred_parse_paths(FunctionCallInfo fcinfo, ArrayType *paths, int *nelems)
{
	PathCache  *pc = (PathCache *) fcinfo->flinfo->fn_extra;
	int			nbytes = VARSIZE(paths);
	MemoryContext old;
	Datum	   *elems;
	bool	   *elnulls;
	int			n;
	PathNode   *root;

	if (pc != NULL && pc->nbytes == nbytes && memcmp(pc->bytes, paths, nbytes) == 0)
	{
		*nelems = pc->nelems;
		return pc->root;
	}
	if (ARR_NDIM(paths) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("paths must be a one-dimensional array")));
	if (pc == NULL)
	{
		pc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(PathCache));
		pc->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
										"evstore protect paths",
										ALLOCSET_SMALL_SIZES);
		fcinfo->flinfo->fn_extra = pc;
	}
	MemoryContextReset(pc->cxt);
	pc->nbytes = 0;
	old = MemoryContextSwitchTo(pc->cxt);
	deconstruct_array(paths, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elnulls, &n);
	root = palloc0(sizeof(PathNode));
	for (int i = 0; i < n; i++)
	{
		if (elnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("paths must not contain nulls")));
		add_path(root, TextDatumGetCString(elems[i]));
	}
	pc->bytes = palloc(nbytes);
	memcpy(pc->bytes, paths, nbytes);
	MemoryContextSwitchTo(old);
	pc->nbytes = nbytes;
	pc->nelems = n;
	pc->root = root;
	*nelems = n;
	return root;
}
