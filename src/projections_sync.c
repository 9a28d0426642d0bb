/*-------------------------------------------------------------------------
 *
 * projections_sync.c
 *	  Attribute-sync projections: the description of the target table and
 *	  the SPI plans of its upserts (one per set of columns an event
 *	  carries) and deletes, the conversion of JSON values to column values,
 *	  and applying one event.  The upsert without SPI, taken when the
 *	  target allows, is in projections_upsert.c.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/syscache.h"

typedef struct ConvertContext
{
	const char *attname;
	SyncColumn *col;
} ConvertContext;

/* ---------------------------------------------------------------------
 * Attribute sync: target description and plans
 * ---------------------------------------------------------------------
 */

/* column_map: which attribute feeds column colname (NULL: none) */
static char *
column_source(Jsonb *map, const char *colname)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	bool		named_as_key = false;
	char	   *result = NULL;

	if (map == NULL)
		return pstrdup(colname);
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && key)
		{
			if (v.type == jbvString && (int) strlen(colname) == v.val.string.len &&
				memcmp(colname, v.val.string.val, v.val.string.len) == 0)
				result = key;
			if (strcmp(key, colname) == 0)
				named_as_key = true;
		}
	}
	if (result)
		return result;
	return named_as_key ? NULL : pstrdup(colname);
}

static void
init_column(SyncColumn *c, Form_pg_attribute att, const char *attname, MemoryContext cxt)
{
	Oid			infunc;

	c->colname = MemoryContextStrdup(cxt, NameStr(att->attname));
	c->attname = attname ? MemoryContextStrdup(cxt, attname) : NULL;
	c->attlen = attname ? strlen(attname) : 0;
	c->attnum = att->attnum;
	c->typid = att->atttypid;
	c->typmod = att->atttypmod;
	getTypeInputInfo(att->atttypid, &infunc, &c->typioparam);
	fmgr_info_cxt(infunc, &c->infunc, cxt);
}

/*
 * The upsert for events carrying exactly the columns in mask: columns not
 * in the event are left out of the INSERT (so a new row gets their
 * defaults) and out of the UPDATE (so an existing row keeps them).
 */
static SPIPlanPtr
build_shape_plan(Projection *p, Bitmapset *mask, bool keep)
{
	StringInfoData ins,
				vals,
				upd;
	Oid		   *argtypes = palloc(sizeof(Oid) * (1 + p->ncols));
	int			nargs = 1;
	int			i = -1;
	int			save_nestlevel;
	SPIPlanPtr	plan;

	initStringInfo(&ins);
	initStringInfo(&vals);
	initStringInfo(&upd);
	argtypes[0] = p->keycol.typid;
	appendStringInfo(&ins, "INSERT INTO %s AS t (%s", p->qrel, quote_identifier(p->key_column));
	appendStringInfoString(&vals, "$1");
	while ((i = bms_next_member(mask, i)) >= 0)
	{
		const char *qc = quote_identifier(p->cols[i].colname);

		argtypes[nargs++] = p->cols[i].typid;
		appendStringInfo(&ins, ", %s", qc);
		appendStringInfo(&vals, ", $%d", nargs);
		appendStringInfo(&upd, "%s%s = EXCLUDED.%s", nargs > 2 ? ", " : "", qc, qc);
	}
	appendStringInfo(&ins, ") VALUES (%s) ON CONFLICT (%s) DO ", vals.data,
					 quote_identifier(p->key_column));
	if (nargs > 1)
		appendStringInfo(&ins, "UPDATE SET %s", upd.data);
	else
		appendStringInfoString(&ins, "NOTHING");

	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	plan = SPI_prepare_cursor(ins.data, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "evstore: could not prepare \"%s\": %s", ins.data,
			 SPI_result_code_string(SPI_result));
	if (keep)
		SPI_keepplan(plan);
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);
	return keep ? plan : NULL;
}

/* The cached upsert plan for a set of columns, built when first seen. */
static SPIPlanPtr
shape_plan(Projection *p, Bitmapset *mask)
{
	int			k;
	MemoryContext old;

	for (k = 0; k < p->nshapes; k++)
		if (bms_equal(p->shape_mask[k], mask))
			return p->shape_plan[k];

	if (p->nshapes < PROJ_MAX_SHAPES)
		k = p->nshapes++;
	else
	{
		/* nothing is executing a plan of this projection at this point */
		k = p->next_evict;
		p->next_evict = (p->next_evict + 1) % PROJ_MAX_SHAPES;
		SPI_freeplan(p->shape_plan[k]);
		p->shape_plan[k] = NULL;
	}
	p->shape_plan[k] = build_shape_plan(p, mask, true);
	old = MemoryContextSwitchTo(proj_catalog_cache.cxt);
	p->shape_mask[k] = bms_copy(mask);
	MemoryContextSwitchTo(old);
	return p->shape_plan[k];
}

/*
 * Describe the target and build the plans.  With keep, the plans are
 * saved in the projection; otherwise (create time) they only validate.
 * Raises clear errors for every problem with the definition.
 */
void
proj_sync_prepare(Projection *p, bool keep, MemoryContext cxt)
{
	Relation	rel;
	TupleDesc	td;
	AttrNumber	keyatt;
	Oid			opfamily = InvalidOid;
	Oid			opcintype = InvalidOid;
	Oid			keyindex = InvalidOid;
	Oid			eqop;
	List	   *indexes;
	ListCell   *lc;
	StringInfoData del;
	Oid			keytype;
	int			save_nestlevel;
	SPIPlanPtr	plan;
	MemoryContext old;

	rel = table_open(p->target, AccessShareLock);
	p->has_triggers = rel->trigdesc != NULL;
	td = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target of projection \"%s\" must be a table", p->name),
				 errdetail("\"%s\" is not a table.", RelationGetRelationName(rel))));
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target of projection \"%s\" must not be a temporary table", p->name),
				 errdetail("Appends from every session write the read model.")));
	if (RelationGetNamespace(rel) == evstore_catalog()->namespace_oid)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a projection cannot write evstore's own table \"%s\"",
						RelationGetRelationName(rel))));

	keyatt = get_attnum(p->target, p->key_column);
	if (keyatt == InvalidAttrNumber || keyatt < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table \"%s\" does not exist",
						p->key_column, RelationGetRelationName(rel))));
	if (TupleDescAttr(td, keyatt - 1)->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("key column \"%s\" of table \"%s\" is a generated column",
						p->key_column, RelationGetRelationName(rel))));

	/* a unique index on exactly the key column (ON CONFLICT needs it) */
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index ix = idx->rd_index;

		if (ix->indisunique && ix->indimmediate && ix->indisvalid &&
			ix->indnkeyatts == 1 && ix->indkey.values[0] == keyatt &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(idx->rd_indextuple, Anum_pg_index_indexprs, NULL))
		{
			opfamily = idx->rd_opfamily[0];
			opcintype = idx->rd_opcintype[0];
			keyindex = RelationGetRelid(idx);
		}
		index_close(idx, AccessShareLock);
		if (OidIsValid(opfamily))
			break;
	}
	if (!OidIsValid(opfamily))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("key column \"%s\" of table \"%s\" has no unique index",
						p->key_column, RelationGetRelationName(rel)),
				 errdetail("Attribute sync upserts rows with INSERT ... ON CONFLICT on the key."),
				 errhint("Make the key column the primary key or add a unique constraint on it alone.")));
	eqop = get_opfamily_member(opfamily, opcintype, opcintype, BTEqualStrategyNumber);
	if (!OidIsValid(eqop))
		elog(ERROR, "evstore: no equality operator for the key of \"%s\"",
			 RelationGetRelationName(rel));

	/* column_map: an object of attribute -> column name or null */
	if (p->column_map)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;

		if (!JB_ROOT_IS_OBJECT(p->column_map))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column_map must be a JSON object"),
					 errdetail("Map data attributes to column names, e.g. {\"qty\": \"quantity\"}; map to null to ignore an attribute.")));
		it = JsonbIteratorInit(&p->column_map->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_VALUE)
				continue;
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("values of column_map must be column names or null")));
			else
			{
				char	   *col = pnstrdup(v.val.string.val, v.val.string.len);
				AttrNumber	a = get_attnum(p->target, col);

				if (a == InvalidAttrNumber || a < 0)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column_map names column \"%s\", which table \"%s\" does not have",
									col, RelationGetRelationName(rel))));
				if (a == keyatt)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("column_map must not map an attribute to the key column \"%s\"", col),
							 errhint("The key comes from key_source.")));
			}
		}
	}

	old = MemoryContextSwitchTo(cxt);
	p->cols = palloc0(sizeof(SyncColumn) * Max(td->natts, 1));
	p->ncols = 0;
	init_column(&p->keycol, TupleDescAttr(td, keyatt - 1), NULL, cxt);
	for (int i = 0; i < td->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(td, i);
		char	   *src;

		if (att->attisdropped || att->attgenerated || att->attidentity ||
			att->attnum == keyatt)
			continue;
		src = column_source(p->column_map, NameStr(att->attname));
		if (src == NULL)
			continue;
		init_column(&p->cols[p->ncols++], att, src, cxt);
	}
	p->values = palloc0(sizeof(Datum) * (1 + p->ncols));
	p->nulls = palloc(sizeof(char) * (1 + p->ncols));
	p->qrel = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										 RelationGetRelationName(rel));
	MemoryContextSwitchTo(old);
	keytype = p->keycol.typid;

	initStringInfo(&del);
	{
		HeapTuple	optup = SearchSysCache1(OPEROID, ObjectIdGetDatum(eqop));
		Form_pg_operator op;

		if (!HeapTupleIsValid(optup))
			elog(ERROR, "evstore: cache lookup failed for operator %u", eqop);
		op = (Form_pg_operator) GETSTRUCT(optup);
		appendStringInfo(&del, "DELETE FROM %s WHERE %s OPERATOR(%s.%s) $1", p->qrel,
						 quote_identifier(p->key_column),
						 quote_identifier(get_namespace_name(op->oprnamespace)),
						 NameStr(op->oprname));
		ReleaseSysCache(optup);
	}

	/* names are resolved with a fixed, safe search_path */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	if (p->delete_types.n > 0)
	{
		plan = SPI_prepare_cursor(del.data, 1, &keytype, CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "evstore: could not prepare \"%s\": %s", del.data,
				 SPI_result_code_string(SPI_result));
		if (keep)
		{
			SPI_keepplan(plan);
			p->delete_plan = plan;
		}
	}
	SPI_finish();
	AtEOXact_GUC(true, save_nestlevel);

	/* can upserts skip SPI?  Decided once; a change of the table resets it */
	if (keep)
	{
		const char *why = proj_upsert_unsupported(rel);

		p->fast_stale = false;
		if (why == NULL)
		{
			p->fast = proj_upsert_prepare(rel, keyatt, keyindex, cxt);
			p->fast_atts = MemoryContextAlloc(cxt, sizeof(AttrNumber) * Max(p->ncols, 1));
			p->fast_nulls = MemoryContextAlloc(cxt, sizeof(bool) * Max(p->ncols, 1));
			ereport(DEBUG1,
					(errmsg_internal("projection \"%s\" upserts into \"%s\" directly",
									 p->name, RelationGetRelationName(rel))));
		}
		else
			ereport(DEBUG1,
					(errmsg_internal("projection \"%s\" upserts into \"%s\" through SPI: %s",
									 p->name, RelationGetRelationName(rel), why)));
	}
	table_close(rel, AccessShareLock);

	/* at create time, check that the upsert of every column prepares */
	if (!keep)
	{
		Bitmapset  *all = NULL;

		for (int i = 0; i < p->ncols; i++)
			all = bms_add_member(all, i);
		(void) build_shape_plan(p, all, false);
	}
	else
		p->prepared = true;
}

static void
convert_error_callback(void *arg)
{
	ConvertContext *cc = (ConvertContext *) arg;

	if (cc->attname)
		errcontext("converting data attribute \"%s\" for column \"%s\" of type %s",
				   cc->attname, cc->col->colname,
				   format_type_with_typemod(cc->col->typid, cc->col->typmod));
	else
		errcontext("converting the key for column \"%s\" of type %s",
				   cc->col->colname,
				   format_type_with_typemod(cc->col->typid, cc->col->typmod));
}

/* A JSON value as a datum of the column's type, via its input function. */
static Datum
json_to_datum(JsonbValue *v, SyncColumn *col, const char *attname, bool *isnull)
{
	char	   *str;
	ConvertContext cc;
	ErrorContextCallback errcb;
	Datum		result;

	*isnull = false;
	if (v->type == jbvNull)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (col->typid == JSONBOID)
		return JsonbPGetDatum(JsonbValueToJsonb(v));
	if (v->type == jbvNumeric && col->typid == NUMERICOID && col->typmod < 0)
		return NumericGetDatum(v->val.numeric);

	switch (v->type)
	{
		case jbvString:
			if (col->typid == JSONOID)
				str = JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
			else
				str = pnstrdup(v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			str = DatumGetCString(DirectFunctionCall1(numeric_out,
													  NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			str = v->val.boolean ? "true" : "false";
			break;
		case jbvBinary:
			str = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
		default:
			elog(ERROR, "evstore: unexpected JSON value type %d", (int) v->type);
			str = NULL;			/* keep the compiler quiet */
	}

	cc.attname = attname;
	cc.col = col;
	errcb.callback = convert_error_callback;
	errcb.arg = &cc;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	result = InputFunctionCall(&col->infunc, str, col->typioparam, col->typmod);
	error_context_stack = errcb.previous;
	return result;
}

void
proj_apply_sync(Projection *p, TupleTableSlot *slot, const char *type, int typelen)
{
	bool		isnull;
	bool		is_delete;
	Jsonb	   *data;
	Datum		key;
	int			rc;
	int			nv = 1;
	Bitmapset  *mask = NULL;
	SPIPlanPtr	plan;

	if (!p->prepared)
		proj_sync_prepare(p, true, proj_catalog_cache.cxt);

	is_delete = strlist_contains(&p->delete_types, type, typelen);
	data = DatumGetJsonbP(slot_getattr(slot, Anum_events_data, &isnull));

	/* the key */
	if (p->key_is_stream)
	{
		Datum		sid = slot_getattr(slot, Anum_events_stream_id, &isnull);

		if (p->keycol.typid == TEXTOID)
			key = sid;
		else
		{
			JsonbValue	v;

			v.type = jbvString;
			v.val.string.val = TextDatumGetCString(sid);
			v.val.string.len = strlen(v.val.string.val);
			key = json_to_datum(&v, &p->keycol, NULL, &isnull);
		}
	}
	else
	{
		JsonbValue *v = NULL;
		JsonbContainer *c = &data->root;
		JsonbValue	buf;

		for (int i = 0; i < p->npath; i++)
		{
			if (c == NULL || !JsonContainerIsObject(c))
			{
				v = NULL;
				break;
			}
			v = getKeyJsonValueFromContainer(c, p->path[i], strlen(p->path[i]), &buf);
			if (v == NULL)
				break;
			c = v->type == jbvBinary ? v->val.binary.data : NULL;
		}
		if ((v == NULL || v->type == jbvNull) && type[0] == '$')
			return;				/* a marker without the key: nothing to do */
		if (v == NULL || v->type == jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("event has no key for projection \"%s\"", p->name),
					 errdetail("Its data has no value at key source \"$.%s\".", p->path[p->npath - 1])));
		key = json_to_datum(v, &p->keycol, NULL, &isnull);
	}
	p->values[0] = key;
	p->nulls[0] = ' ';

	if (!is_delete)
	{
		bool		is_obj = JB_ROOT_IS_OBJECT(data) && !JB_ROOT_IS_SCALAR(data);

		for (int i = 0; i < p->ncols; i++)
		{
			SyncColumn *col = &p->cols[i];
			JsonbValue	buf;
			JsonbValue *v = is_obj ?
				getKeyJsonValueFromContainer(&data->root, col->attname, col->attlen, &buf) : NULL;
			bool		vnull;

			if (v == NULL)
				continue;
			mask = bms_add_member(mask, i);
			p->values[nv] = json_to_datum(v, col, col->attname, &vnull);
			p->nulls[nv] = vnull ? 'n' : ' ';
			if (p->fast)
			{
				p->fast_atts[nv - 1] = col->attnum;
				p->fast_nulls[nv - 1] = vnull;
			}
			nv++;
		}

		/*
		 * The target's triggers are the owner's code: they resolve names
		 * with the creator's search_path (rolled back with every other
		 * setting by proj_apply_one()).
		 */
		if (p->has_triggers)
			(void) set_config_option("search_path", p->run_path, PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);

		/*
		 * The direct upsert, when the owner may INSERT, UPDATE and SELECT
		 * the whole table (checked per event: role memberships change
		 * without invalidating the table).  Otherwise the SPI plan raises
		 * the permission error SQL raises.
		 */
		if (p->fast && p->fast_stale)
			proj_upsert_release(p->fast);
		else if (p->fast &&
				 pg_class_aclmask(p->target, p->owner, ACL_INSERT | ACL_UPDATE | ACL_SELECT,
								  ACLMASK_ALL) == (ACL_INSERT | ACL_UPDATE | ACL_SELECT) &&
				 proj_upsert_exec(p->fast, &p->fast_stale, key, p->fast_atts,
								  p->values + 1, p->fast_nulls, nv - 1))
			return;
		plan = shape_plan(p, mask);
	}
	else
		plan = p->delete_plan;

	/*
	 * The plans name everything qualified; the creator's search_path is for
	 * what they run (triggers and defaults of the target), rolled back by
	 * proj_apply_one() with every other setting.
	 */
	(void) set_config_option("search_path", p->run_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	rc = SPI_execute_plan(plan, p->values, p->nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "evstore: projection \"%s\" failed: %s", p->name,
			 SPI_result_code_string(rc));
	SPI_finish();
}
