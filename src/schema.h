/*-------------------------------------------------------------------------
 *
 * schema.h
 *	  Schema evolution: the event schema registry (validation on append),
 *	  schema versions and upcasters (current shapes on read).
 *
 *	  schema_registry.c  the backend-local cache of the registry catalogs,
 *	                     the append hook (versions, validation), SQL API
 *	  schema_validate.c  the JSON Schema subset: compile and validate
 *	  upcast.c           declarative and function upcasters, their chains
 *	                     and the readers' API
 *
 * See docs/schema-evolution.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVSTORE_SCHEMA_H
#define EVSTORE_SCHEMA_H

#include "evstore.h"

#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/jsonb.h"

/* an event does not match the schema registered for its type and version */
#define ERRCODE_EVSTORE_SCHEMA_VIOLATION	MAKE_SQLSTATE('E','S','9','0','1')

/* the metadata key that holds an event's schema version */
#define EVSTORE_SCHEMA_VERSION_KEY	"schema_version"

/* validation modes */
typedef enum EvstoreValidation
{
	VALIDATION_OFF = 0,
	VALIDATION_WARN,
	VALIDATION_ENFORCE
} EvstoreValidation;

/* schema_validate.c: a compiled schema (opaque) */
typedef struct SchemaNode SchemaNode;

extern SchemaNode *schema_compile(Jsonb *schema);
/* NULL when valid, else sets *pointer (JSON pointer) and *rule */
extern const char *schema_validate(SchemaNode *node, Jsonb *data,
								   char **pointer, const char **rule);

/* upcast.c: a compiled upcaster step list and chain program (opaque) */
typedef struct UpStep UpStep;
typedef struct UpProgram UpProgram;

extern UpStep *upcast_compile_steps(Jsonb *steps, int *nsteps);

/* one upcaster of the registry */
typedef struct Upcaster
{
	char	   *event_type;
	int			typelen;
	int32		from_version;
	int32		to_version;
	char	   *to_type;		/* NULL: the type stays */
	int			to_typelen;
	UpStep	   *steps;			/* declarative form */
	int			nsteps;
	Oid			func;			/* function form, or InvalidOid */
	Oid			owner;			/* the function runs as this role */
	bool		func_missing;	/* the function was dropped */
	bool		func_takes_row; /* f(evstore.events) rather than f(jsonb) */
	FmgrInfo	flinfo;
	bool		flinfo_ready;
	/* built on first use, in the registry's memory */
	Jsonb	   *stamp;			/* {"schema_version": to_version} */
	UpProgram  *program;		/* declarative: the chain run from here */
} Upcaster;

/* one registered schema */
typedef struct RegSchema
{
	int32		version;
	Jsonb	   *schema;
	SchemaNode *compiled;		/* compiled on first use */
} RegSchema;

/* what the registry knows about one event type */
typedef struct RegType
{
	char	   *name;
	int			len;
	int32		current_version;	/* 0: not known to the registry */
	int			mode;			/* EvstoreValidation, or -1: the setting */
	RegSchema  *schemas;		/* by version */
	int			nschemas;
	Upcaster  **ups;			/* by from_version */
	int			nups;
} RegType;

/* the cache of the registry catalogs */
typedef struct Registry
{
	bool		valid;
	bool		historic;		/* read with a decoding snapshot */
	MemoryContext cxt;
	RegType    *types;			/* sorted by name */
	int			ntypes;
	int			nupcasters;
	int			nschemas;
} Registry;

/* schema_registry.c */
extern void evstore_schema_init(void);
extern Registry *evstore_registry(void);
extern RegType *registry_find_type(Registry *r, const char *name, int len);
extern RegSchema *registry_find_schema(RegType *t, int32 version);
extern SchemaNode *registry_compiled(Registry *r, RegSchema *s);
extern void evstore_registry_reset_historic(void);
extern int32 evstore_event_schema_version(Jsonb *metadata);
extern void evstore_schema_prepare_batch(EvstoreNewEvent *evs, int n);
extern char *evstore_dataschema_uri(const char *type, int len, int32 version);

/* upcast.c */
typedef enum EvstoreUpcastMode
{
	UPCAST_READ,				/* readers: honours evstore.upcast */
	UPCAST_PROJECTION,			/* projections: always current shapes */
	UPCAST_DECODER				/* output plugin: declarative only */
} EvstoreUpcastMode;

typedef struct EvstoreUpcaster EvstoreUpcaster;

extern bool evstore_upcast_enabled;
extern void evstore_upcast_init(void);
extern EvstoreUpcaster *evstore_upcaster_begin(TupleDesc events_desc,
											   EvstoreUpcastMode mode);
extern TupleTableSlot *evstore_upcaster_slot(EvstoreUpcaster *u, TupleTableSlot *in);
extern bool evstore_upcaster_datums(EvstoreUpcaster *u, Datum *type, Datum *data,
									Datum *metadata, bool *metadata_null,
									int32 *version);
extern void evstore_upcaster_end(EvstoreUpcaster *u);

#endif							/* EVSTORE_SCHEMA_H */
