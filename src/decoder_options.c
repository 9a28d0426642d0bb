/*-------------------------------------------------------------------------
 *
 * decoder_options.c
 *	  The output plugin's options (kebab-case, as wal2json): categories,
 *	  event-types, format, cloudevents-source, include-transaction,
 *	  include-metadata.  See docs/output-plugin.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "decoder.h"

#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

static const char *
option_value(DefElem *elem)
{
	if (elem->arg == NULL)
		return NULL;
	if (!IsA(elem->arg, String))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value of evstore output plugin option \"%s\" must be a string",
						elem->defname)));
	return strVal(elem->arg);
}

static bool
option_bool(DefElem *elem)
{
	const char *v = option_value(elem);
	bool		result;

	if (v == NULL)
		return true;			/* "-o include-transaction" alone */
	if (!parse_bool(v, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value \"%s\" for evstore output plugin option \"%s\"",
						v, elem->defname),
				 errhint("Use true or false.")));
	return result;
}

/*
 * Parse "a,b,c" into a filter.  Surrounding spaces are trimmed; a backslash
 * takes the next character literally (so "\," is a comma in a name).
 */
static void
option_list(DefElem *elem, NameFilter *f)
{
	const char *v = option_value(elem);
	const char *p;
	StringInfoData item;
	List	   *items = NIL;
	ListCell   *lc;
	int			i;

	if (v == NULL || *v == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evstore output plugin option \"%s\" requires a value",
						elem->defname),
				 errhint("Pass a comma-separated list of names, e.g. -o %s=order,invoice.",
						 elem->defname)));

	initStringInfo(&item);
	p = v;
	for (;;)
	{
		if (*p == ',' || *p == '\0')
		{
			int			start = 0,
						end = item.len;

			while (start < end && item.data[start] == ' ')
				start++;
			while (end > start && item.data[end - 1] == ' ')
				end--;
			if (start == end)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for evstore output plugin option \"%s\"",
								v, elem->defname),
						 errdetail("The list contains an empty name.")));
			items = lappend(items, pnstrdup(item.data + start, end - start));
			resetStringInfo(&item);
			if (*p == '\0')
				break;
			p++;
			continue;
		}
		if (*p == '\\' && p[1] != '\0')
			p++;
		appendStringInfoChar(&item, *p);
		p++;
	}

	f->n = list_length(items);
	f->names = palloc(sizeof(char *) * f->n);
	f->lens = palloc(sizeof(int) * f->n);
	i = 0;
	foreach(lc, items)
	{
		f->names[i] = lfirst(lc);
		f->lens[i] = strlen(f->names[i]);
		i++;
	}
}

static void
option_twice(DefElem *elem, bool *seen)
{
	if (*seen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evstore output plugin option \"%s\" is given more than once",
						elem->defname)));
	*seen = true;
}

void
decoder_parse_options(DecoderData *data, List *options)
{
	ListCell   *lc;
	bool		seen_categories = false,
				seen_types = false,
				seen_format = false,
				seen_source = false,
				seen_txn = false,
				seen_meta = false,
				seen_upcast = false;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "categories") == 0)
		{
			option_twice(elem, &seen_categories);
			option_list(elem, &data->categories);
		}
		else if (strcmp(elem->defname, "event-types") == 0)
		{
			option_twice(elem, &seen_types);
			option_list(elem, &data->event_types);
		}
		else if (strcmp(elem->defname, "format") == 0)
		{
			const char *v = option_value(elem);

			option_twice(elem, &seen_format);
			if (v != NULL && strcmp(v, "json") == 0)
				data->format = FORMAT_JSON;
			else if (v != NULL && strcmp(v, "cloudevents") == 0)
				data->format = FORMAT_CLOUDEVENTS;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for evstore output plugin option \"format\"",
								v ? v : ""),
						 errhint("Valid formats are \"json\" and \"cloudevents\".")));
		}
		else if (strcmp(elem->defname, "cloudevents-source") == 0)
		{
			const char *v = option_value(elem);

			option_twice(elem, &seen_source);
			if (v == NULL || *v == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("evstore output plugin option \"cloudevents-source\" requires a value"),
						 errhint("Pass a URI reference, e.g. -o cloudevents-source=/shop/orders.")));
			data->source = pstrdup(v);
		}
		else if (strcmp(elem->defname, "include-transaction") == 0)
		{
			option_twice(elem, &seen_txn);
			data->include_transaction = option_bool(elem);
		}
		else if (strcmp(elem->defname, "include-metadata") == 0)
		{
			option_twice(elem, &seen_meta);
			data->include_metadata = option_bool(elem);
		}
		else if (strcmp(elem->defname, "upcast") == 0)
		{
			option_twice(elem, &seen_upcast);
			data->upcast = option_bool(elem);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized evstore output plugin option \"%s\"",
							elem->defname),
					 errhint("Valid options are categories, event-types, format, cloudevents-source, include-transaction, include-metadata and upcast.")));
	}
}
