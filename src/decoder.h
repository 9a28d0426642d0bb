/*-------------------------------------------------------------------------
 *
 * decoder.h
 *	  What the output plugin's files share: the decoding session's state
 *	  (options, the deformed tuple, the transaction being decoded) and the
 *	  columns of evstore.events it prints.
 *
 *	  decoder.c          callbacks, the events relation cache, filtering
 *	  decoder_options.c  parsing of the plugin's options
 *	  decoder_format.c   the JSON and CloudEvents writers
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_DECODER_H
#define EVSTORE_DECODER_H

#include "postgres.h"

#include "access/attnum.h"
#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* The columns of evstore.events we print, in output order. */
typedef enum DecoderColumn
{
	COL_GLOBAL_POSITION,
	COL_STREAM_ID,
	COL_STREAM_VERSION,
	COL_EVENT_ID,
	COL_EVENT_TYPE,
	COL_DATA,
	COL_METADATA,
	COL_RECORDED_AT,
	COL_CATEGORY,
	COL_STREAM_BUCKET,
	NUM_COLUMNS
} DecoderColumn;

typedef struct DecoderColumnInfo
{
	const char *name;
	Oid			type;
} DecoderColumnInfo;

/* name and type of each column, decoder_format.c */
extern const DecoderColumnInfo decoder_columns[NUM_COLUMNS];

typedef enum DecoderFormat
{
	FORMAT_JSON,
	FORMAT_CLOUDEVENTS
} DecoderFormat;

/* A filter list: comma-separated names. */
typedef struct NameFilter
{
	int			n;
	char	  **names;
	int		   *lens;
} NameFilter;

typedef struct DecoderData
{
	MemoryContext cxt;			/* long-lived: options, arrays */
	MemoryContext change_cxt;	/* reset after every change */

	/* options */
	NameFilter	categories;
	NameFilter	event_types;
	DecoderFormat format;
	bool		include_transaction;
	bool		include_metadata;
	char	   *source;			/* cloudevents source, NULL = default */
	bool		upcast;			/* apply declarative upcasters (default) */

	/* cloudevents dataschema of the current change, or NULL */
	char	   *dataschema;

	/* ",\"source\":\"...\"" once computed (cloudevents) */
	char	   *source_json;

	/* deformed tuple; attnum[c] is column c's attribute number */
	AttrNumber	attnum[NUM_COLUMNS];
	Datum	   *values;
	bool	   *nulls;
	int			nalloc;

	/* state of the transaction being decoded */
	bool		sent_begin;
	int64		txn_events;
	char		txn_tail[128];	/* commit fields, preformatted per txn */
	int			skipped_changes;
} DecoderData;

/* value of column c of the deformed tuple, and whether it is null */
#define COLUMN_IS_NULL(c)	(data->nulls[data->attnum[c] - 1])
#define COLUMN_VALUE(c)		(data->values[data->attnum[c] - 1])

/* decoder_options.c */
extern void decoder_parse_options(DecoderData *data, List *options);

/* decoder_format.c */
extern void decoder_append_lsn(StringInfo out, XLogRecPtr lsn);
extern void decoder_append_timestamptz(StringInfo out, TimestampTz ts);
extern struct varlena *decoder_column_varlena(Datum d, DecoderColumn c);
extern void decoder_write_json(StringInfo out, DecoderData *data);
extern void decoder_write_cloudevents(StringInfo out, DecoderData *data);

#endif							/* EVSTORE_DECODER_H */
