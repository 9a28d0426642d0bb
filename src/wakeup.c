/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  The optional wake-up of consumers after appends: a LISTEN/NOTIFY
 *	  notification on evstore.notify_channel, queued by every append that
 *	  wrote events (from the core's evstore_append_done_hook).
 *
 *-------------------------------------------------------------------------
 */
#include "evstore.h"
#include "wakeup.h"

#include "commands/async.h"
#include "utils/guc.h"

/* GUC: channel to NOTIFY on after appends; empty = off */
static char *notify_channel = NULL;

static bool
check_notify_channel(char **newval, void **extra, GucSource source)
{
	if (*newval && strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("A channel name must be shorter than %d bytes.", NAMEDATALEN);
		return false;
	}
	return true;
}

static evstore_append_done_hook_type prev_append_done_hook = NULL;

static void wakeup_append_done(const char *stream_id, int sidlen);

void
evstore_wakeup_init(void)
{
	prev_append_done_hook = evstore_append_done_hook;
	evstore_append_done_hook = wakeup_append_done;

	DefineCustomStringVariable("evstore.notify_channel",
							   "Channel to NOTIFY when a transaction appends events; empty for none.",
							   "The payload is the category of the stream. NOTIFY serializes the commits of notifying transactions.",
							   &notify_channel,
							   "",
							   PGC_SUSET, 0,
							   check_notify_channel, NULL, NULL);
}

/*
 * End of an append: queue a notification (sent at commit, one per category
 * and transaction since PostgreSQL folds identical notifications).
 */
static void
wakeup_append_done(const char *stream_id, int sidlen)
{
	char	   *category;

	if (prev_append_done_hook)
		prev_append_done_hook(stream_id, sidlen);

	if (notify_channel == NULL || notify_channel[0] == '\0')
		return;
	category = pnstrdup(stream_id, evstore_category_len(stream_id, sidlen));
	Async_Notify(notify_channel, category);
	pfree(category);
}
