import unittest
import uuid

from orderservice import orders, subscriber
from tests import support
from tests.support import connect, new_order_id, new_request_id

setUpModule = support.setUpModule


class Crash(Exception):
    """Stands for the worker process dying."""


class SubscriberTest(unittest.TestCase):
    def setUp(self):
        # a subscription of its own, starting now: only this test's events
        self.sub = "ledger-test-" + uuid.uuid4().hex[:8]
        with connect(autocommit=True) as conn:
            conn.execute("SELECT evstore.create_subscription(%s, categories => ARRAY['order'],"
                         " start_position => evstore.read_all_horizon())", (self.sub,))
        self.orders = [new_order_id() for _ in range(4)]
        with connect() as conn:
            svc = orders.OrderService(conn)
            for i, oid in enumerate(self.orders):
                svc.handle(oid, {"type": "place", "customer": "c"}, new_request_id())
                svc.handle(oid, {"type": "add_item", "sku": "x", "qty": i + 1, "price": 100},
                           new_request_id())
                svc.handle(oid, {"type": "confirm"}, new_request_id())
            svc.handle(self.orders[0], {"type": "cancel"}, new_request_id())
        # 13 events, 5 of which make a ledger line (4 sales, 1 cancellation)

    def tearDown(self):
        with connect(autocommit=True) as conn:
            conn.execute("SELECT evstore.drop_subscription(%s)", (self.sub,))

    def ledger(self):
        with connect() as conn:
            return conn.execute(
                "SELECT order_id, kind, amount, event_id FROM shop.ledger"
                " WHERE order_id = ANY(%s) ORDER BY global_position",
                (self.orders,)).fetchall()

    def checkpoint(self):
        with connect() as conn:
            return conn.execute(
                "SELECT acked_position, lag FROM evstore.subscriptions WHERE name = %s",
                (self.sub,)).fetchone()

    def assert_ledger_exactly_once(self):
        rows = self.ledger()
        self.assertEqual(len(rows), 5)
        self.assertEqual(len({r[3] for r in rows}), 5)          # no event twice
        self.assertEqual(sorted((r[0], r[1], int(r[2])) for r in rows), sorted(
            [(o, "sale", (i + 1) * 100) for i, o in enumerate(self.orders)]
            + [(self.orders[0], "cancellation", 0)]))
        acked, lag = self.checkpoint()
        self.assertEqual(lag, 0)
        return acked

    def run_worker(self, crash_at=None, phase=None, batch_size=100):
        seen = []

        def hook(event, p):
            if p == phase:
                seen.append(event.global_position)
                if len(seen) == crash_at:
                    raise Crash()

        conn = connect()
        w = subscriber.Worker(conn, consumer="ledger-1", batch_size=batch_size,
                              subscription=self.sub, crash_hook=hook if crash_at else None)
        try:
            w.run(idle_exit=True)
        except Crash:
            pass
        finally:
            conn.close()            # the process is gone: its open transaction rolls back
        return w

    def test_each_event_once(self):
        w = self.run_worker()
        self.assertEqual((w.handled, w.skipped), (13, 0))
        self.assert_ledger_exactly_once()
        # running again finds nothing
        w = self.run_worker()
        self.assertEqual((w.handled, w.skipped), (0, 0))

    def test_restart_after_crash_before_ack(self):
        # dies after 7 events were handled and committed, before the ack
        w = self.run_worker(crash_at=7, phase="committed")
        self.assertEqual(w.handled, 7)
        self.assertEqual(self.checkpoint()[1], 13)  # nothing acknowledged
        # the restarted worker gets all 13 again: 7 are skipped
        w = self.run_worker()
        self.assertEqual((w.handled, w.skipped), (6, 7))
        self.assert_ledger_exactly_once()

    def test_restart_after_crash_inside_handler_transaction(self):
        # dies while handling the 4th event (effect written, not committed)
        w = self.run_worker(crash_at=4, phase="handled")
        self.assertEqual(w.handled, 4)      # counted, but the 4th rolled back
        w = self.run_worker()
        self.assertEqual((w.handled, w.skipped), (10, 3))
        self.assert_ledger_exactly_once()

    def test_small_batches_crash_in_second_batch(self):
        # batches of 5: the first is acknowledged, the crash is in the second
        w = self.run_worker(crash_at=8, phase="committed", batch_size=5)
        self.assertEqual(w.handled, 8)
        self.assertEqual(self.checkpoint()[1], 8)   # 5 acknowledged
        w = self.run_worker(batch_size=5)
        self.assertEqual((w.handled, w.skipped), (5, 3))
        self.assert_ledger_exactly_once()


if __name__ == "__main__":
    unittest.main()
