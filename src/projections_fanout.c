/*-------------------------------------------------------------------------
 *
 * projections_fanout.c
 *	  Distributed mode (docs/distributed.md): creating or dropping a
 *	  projection on the coordinator does the same on every worker.
 *
 * Appends run on the worker that owns the stream, and each node reads its
 * own evstore.projections_catalog, so a projection must exist on every
 * worker.  After the coordinator's own change, the same call (with the
 * caller's search_path, which the projection records) is sent to every
 * worker with run_command_on_workers; a failure on any worker is an ERROR
 * that rolls back the coordinator's change.  The workers' calls commit on
 * their own, so after such an error some workers may have the change: the
 * message says so, and repeating the drop (if_exists => true) or the
 * creation after a drop makes the nodes agree again.
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "projections.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

/* The call in fcinfo as SQL: SELECT evstore.funcname(literal::type, ...) */
static char *
call_as_sql(FunctionCallInfo fcinfo, const char *funcname)
{
	Oid		   *argtypes;
	int			nargs;
	StringInfoData buf;

	(void) get_func_signature(fcinfo->flinfo->fn_oid, &argtypes, &nargs);
	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT pg_catalog.set_config('search_path', %s, false); SELECT evstore.%s(",
					 quote_literal_cstr(GetConfigOption("search_path", false, false)),
					 funcname);
	for (int i = 0; i < nargs && i < PG_NARGS(); i++)
	{
		Oid			type = argtypes[i];
		char	   *lit;

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		if (PG_ARGISNULL(i))
			lit = NULL;
		else if (type == REGPROCEDUREOID)
			lit = format_procedure_qualified(PG_GETARG_OID(i));
		else if (type == REGCLASSOID)
			lit = quote_qualified_identifier(get_namespace_name(get_rel_namespace(PG_GETARG_OID(i))),
											 get_rel_name(PG_GETARG_OID(i)));
		else
		{
			Oid			out;
			bool		isvarlena;

			getTypeOutputInfo(type, &out, &isvarlena);
			lit = OidOutputFunctionCall(out, PG_GETARG_DATUM(i));
		}
		appendStringInfo(&buf, "%s::%s", lit ? quote_literal_cstr(lit) : "NULL",
						 format_type_be_qualified(type));
	}
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * On the coordinator of a distributed store, run the projection call in
 * fcinfo (evstore.funcname) on every worker too.
 */
void
proj_fanout(FunctionCallInfo fcinfo, const char *funcname)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	StringInfoData failed;

	if (!evstore_is_distributed_coordinator())
		return;
	args[0] = CStringGetTextDatum(call_as_sql(fcinfo, funcname));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "evstore: SPI_connect failed");
	if (SPI_execute_with_args("SELECT nodename || ':' || nodeport || ': ' || result"
							  " FROM pg_catalog.run_command_on_workers($1) WHERE NOT success",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "evstore: run_command_on_workers failed");
	initStringInfo(&failed);
	for (uint64 i = 0; i < SPI_processed; i++)
		appendStringInfo(&failed, "%s%s", i > 0 ? "; " : "",
						 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	SPI_finish();
	if (failed.len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("evstore.%s() failed on a worker", funcname),
				 errdetail("%s.", failed.data),
				 errhint("The other workers kept the change; make the nodes agree with evstore.drop_projection(name, if_exists => true) on the coordinator, then create the projection again.")));
}
