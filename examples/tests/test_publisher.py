import json
import os
import tempfile
import time
import unittest
import uuid

import psycopg2

from orderservice import orders, publisher
from tests import support
from tests.support import connect, new_order_id, new_request_id

setUpModule = support.setUpModule


class Crash(Exception):
    pass


class PublisherTest(unittest.TestCase):
    def setUp(self):
        self.slot = "pub_test_" + uuid.uuid4().hex[:8]
        publisher.ensure_slot(support.DSN, self.slot)
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "published.jsonl")
        self.slot_start = self.confirmed_flush()

    def tearDown(self):
        self.wait_slot_inactive()
        with connect(autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        self.tmp.cleanup()

    # --- helpers
    def confirmed_flush(self):
        with connect() as conn:
            lsn = conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
                               " WHERE slot_name = %s", (self.slot,)).fetchone()[0]
        return publisher.lsn_to_int(lsn)

    def wait_slot_inactive(self):
        """After the publisher disconnects, its walsender exits (and has then
        processed every feedback message); wait for that, not for a time."""
        with connect(autocommit=True) as conn:
            for _ in range(600):
                if not conn.execute("SELECT active FROM pg_replication_slots"
                                    " WHERE slot_name = %s", (self.slot,)).fetchone()[0]:
                    return
                time.sleep(0.05)
        self.fail("slot still active")

    def make_events(self):
        """Three committed transactions and one rolled back; returns the
        committed events' (global_position, stream_id, stream_version)."""
        oid = new_order_id()
        with connect() as conn:
            svc = orders.OrderService(conn)
            svc.handle(oid, {"type": "place", "customer": "c"}, new_request_id())
            svc.handle(oid, {"type": "add_item", "sku": "a", "qty": 1, "price": 5},
                       new_request_id())
            with conn.transaction():    # two events in one transaction
                conn.execute("SELECT evstore.append_events(%s, %s)",
                             (orders.stream_of(oid), json.dumps([
                                 {"type": "ItemAdded", "data": {"sku": "b", "qty": 1, "price": 7}},
                                 {"type": "OrderConfirmed", "data": {"total": 12}}])))
            conn.execute("SELECT evstore.append_event(%s, 'OrderCancelled', '{}')",
                         (orders.stream_of(oid),))
            conn.rollback()             # never committed: never published
            # an event of another category: filtered out by the plugin
            conn.execute("SELECT evstore.append_event('audit-1', 'Noted', '{}')")
            conn.commit()
            rows = conn.execute("SELECT global_position, stream_id, stream_version"
                                " FROM evstore.events WHERE stream_id = %s"
                                " ORDER BY global_position",
                                (orders.stream_of(oid),)).fetchall()
        return [tuple(r) for r in rows]

    def published(self):
        with open(self.out) as f:
            return [json.loads(line) for line in f]

    # --- tests
    def test_each_committed_event_once_in_order_confirmed_after_publishing(self):
        expected = self.make_events()
        self.assertEqual(len(expected), 4)
        checks = []

        def before_confirm(commit, lines):
            # the transaction's events are in the file (fsynced) ...
            on_file = [e["global_position"] for e in self.published()]
            positions = [json.loads(l)["global_position"] for l in lines]
            # ... and the slot has not been told yet
            checks.append((set(positions) <= set(on_file), self.confirmed_flush(),
                           publisher.lsn_to_int(commit["confirm_lsn"])))

        p = publisher.Publisher(support.DSN, self.out, slot=self.slot,
                                before_confirm=before_confirm)
        p.run(idle_timeout=120, max_transactions=3)
        self.wait_slot_inactive()
        self.assertEqual(p.duplicates, 0)

        got = [(e["global_position"], e["stream_id"], e["stream_version"])
               for e in self.published()]
        self.assertEqual(got, expected)                 # each once, in order
        self.assertNotIn("OrderCancelled", [e["event_type"] for e in self.published()])
        self.assertEqual(len(checks), 3)
        for on_file, confirmed_before, confirm_lsn in checks:
            self.assertTrue(on_file)
            # (the slot may still lag behind earlier confirmations: feedback
            # is processed asynchronously; it is never ahead of this one)
            self.assertLess(confirmed_before, confirm_lsn)
            self.assertGreaterEqual(confirmed_before, self.slot_start)
        # after the run the slot is at the last commit's confirm_lsn
        self.assertEqual(self.confirmed_flush(), checks[-1][2])

    def test_crash_before_confirm_republishes_nothing_twice(self):
        expected = self.make_events()
        state = {"n": 0}

        def crash_on_second(commit, lines):
            state["n"] += 1
            if state["n"] == 2:
                raise Crash()           # published, not confirmed

        p = publisher.Publisher(support.DSN, self.out, slot=self.slot,
                                before_confirm=crash_on_second)
        with self.assertRaises(Crash):
            p.run(idle_timeout=120)
        self.wait_slot_inactive()
        self.assertEqual(len(self.published()), 2)      # transactions 1 and 2
        confirmed = self.confirmed_flush()

        # restart: the server resends transaction 2; it is not published again
        p = publisher.Publisher(support.DSN, self.out, slot=self.slot)
        p.run(idle_timeout=120, max_transactions=2)
        self.wait_slot_inactive()
        self.assertEqual(p.duplicates, 1)               # transaction 2 came again
        got = [(e["global_position"], e["stream_id"], e["stream_version"])
               for e in self.published()]
        self.assertEqual(got, expected)
        self.assertGreater(self.confirmed_flush(), confirmed)


if __name__ == "__main__":
    unittest.main()
