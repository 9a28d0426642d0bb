"""A worker consuming the durable subscription "shop-ledger".

The loop: fetch a batch (subscription_fetch, holding the member's lease under
the worker's consumer name), handle each event in a transaction of its own
together with evstore.mark_processed (an event already recorded is skipped),
then acknowledge the batch's last position (subscription_ack).

Delivery is at least once: a worker that dies after handling events but
before acknowledging them gets them again when it (or its replacement under
the same consumer name, or anyone after the lease expired) fetches again.
mark_processed in the handler's transaction makes the effect exactly once.
"""
import time

from . import store

SUBSCRIPTION = "shop-ledger"


def handle(conn, event):
    """The worker's effect: a ledger line per sale and per cancellation."""
    data = event.data
    order_id = event.stream_id.split("-", 1)[1]
    if event.event_type == "OrderConfirmed":
        kind, amount = "sale", data["total"]
    elif event.event_type == "OrderCancelled":
        kind, amount = "cancellation", 0
    else:
        return
    conn.execute(
        "INSERT INTO shop.ledger (event_id, global_position, order_id, kind, amount)"
        " VALUES (%s, %s, %s, %s, %s)",
        (event.event_id, event.global_position, order_id, kind, amount))


class Worker:
    """crash_hook(event, phase) is a test hook: phase "handled" (inside the
    event's transaction, before commit) or "committed" (before the ack)."""

    def __init__(self, conn, consumer="ledger-1", member=0, batch_size=100,
                 crash_hook=None, subscription=SUBSCRIPTION):
        self.conn = conn
        self.subscription = subscription
        self.consumer = consumer
        self.member = member
        self.batch_size = batch_size
        self.crash_hook = crash_hook
        self.handled = 0
        self.skipped = 0

    def fetch(self):
        with self.conn.transaction():
            cur = self.conn.execute(
                "SELECT " + store.Event.COLUMNS +
                " FROM evstore.subscription_fetch(%s, %s, %s, %s)",
                (self.subscription, self.member, self.batch_size, self.consumer))
            return [store.Event(r) for r in cur]

    def run_once(self):
        """Fetch, handle and acknowledge one batch; returns its size."""
        batch = self.fetch()
        for event in batch:
            with self.conn.transaction():
                first_time = self.conn.execute(
                    "SELECT evstore.mark_processed(%s, %s)",
                    (self.subscription, event.event_id)).fetchone()[0]
                if first_time:
                    handle(self.conn, event)
                    self.handled += 1
                else:
                    self.skipped += 1
                if self.crash_hook:
                    self.crash_hook(event, "handled")
            if self.crash_hook:
                self.crash_hook(event, "committed")
        if batch:
            with self.conn.transaction():
                self.conn.execute(
                    "SELECT evstore.subscription_ack(%s, %s, %s, %s)",
                    (self.subscription, self.member, batch[-1].global_position,
                     self.consumer))
        return len(batch)

    def run(self, idle_exit=False, poll=0.5):
        """Run until stopped (or, with idle_exit, until a batch is empty)."""
        while True:
            if self.run_once() == 0:
                if idle_exit:
                    return
                time.sleep(poll)

    def release(self):
        with self.conn.transaction():
            self.conn.execute("SELECT evstore.subscription_release(%s, %s, %s)",
                              (self.subscription, self.member, self.consumer))
