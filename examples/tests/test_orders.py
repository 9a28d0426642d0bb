import threading
import unittest

from orderservice import orders, store
from tests import support
from tests.support import connect, new_order_id, new_request_id

setUpModule = support.setUpModule


def place_with_items(service, order_id, n_items):
    service.handle(order_id, {"type": "place", "customer": "c-1"}, new_request_id())
    for i in range(n_items):
        service.handle(order_id, {"type": "add_item", "sku": "sku-%d" % i, "qty": 1,
                                  "price": 100 + i}, new_request_id())


class CommandHandlerTest(unittest.TestCase):
    def setUp(self):
        self.conn = connect()
        self.service = orders.OrderService(self.conn)

    def tearDown(self):
        self.conn.close()

    def test_place_add_confirm(self):
        oid = new_order_id()
        r = self.service.handle(oid, {"type": "place", "customer": "kim"}, new_request_id())
        self.assertEqual((r.stream_version, r.attempts, r.duplicate), (0, 1, False))
        self.service.handle(oid, {"type": "add_item", "sku": "a", "qty": 2, "price": 250},
                            new_request_id())
        r = self.service.handle(oid, {"type": "confirm"}, new_request_id())
        self.assertEqual(r.stream_version, 2)
        loaded = self.service.get(oid)
        self.assertEqual(loaded.state["status"], "confirmed")
        self.assertEqual(loaded.state["total"], 500)
        self.assertEqual(loaded.version, 2)
        with self.assertRaises(orders.DomainError):
            self.service.handle(oid, {"type": "add_item", "sku": "b", "qty": 1, "price": 1},
                                new_request_id())
        self.assertEqual(store.read_stream(self.conn, orders.stream_of(oid))[-1].event_type,
                         "OrderConfirmed")
        self.conn.commit()

    def test_retried_request_does_not_duplicate(self):
        oid = new_order_id()
        self.service.handle(oid, {"type": "place", "customer": "kim"}, new_request_id())
        add = {"type": "add_item", "sku": "a", "qty": 1, "price": 300}
        rid = new_request_id()
        first = self.service.handle(oid, add, rid)
        again = self.service.handle(oid, add, rid)      # the reply was lost: retry
        self.assertFalse(first.duplicate)
        self.assertTrue(again.duplicate)
        self.assertEqual((again.stream_version, again.global_position),
                         (first.stream_version, first.global_position))
        # a retried confirm: the decision now fails, the request is recognized
        crid = new_request_id()
        c1 = self.service.handle(oid, {"type": "confirm"}, crid)
        c2 = self.service.handle(oid, {"type": "confirm"}, crid)
        self.assertEqual((c2.stream_version, c2.global_position, c2.duplicate),
                         (c1.stream_version, c1.global_position, True))
        # ... while a new confirm request is refused by the domain
        with self.assertRaises(orders.DomainError):
            self.service.handle(oid, {"type": "confirm"}, new_request_id())
        events = store.read_stream(self.conn, orders.stream_of(oid))
        self.assertEqual([e.event_type for e in events],
                         ["OrderPlaced", "ItemAdded", "OrderConfirmed"])
        self.assertEqual(self.service.get(oid).state["total"], 300)
        self.conn.commit()

    def test_snapshot_plus_later_events(self):
        oid = new_order_id()
        place_with_items(self.service, oid, 7)          # versions 0..7
        stream = orders.stream_of(oid)
        snap = store.load_snapshot(self.conn, stream)
        self.assertIsNotNone(snap)
        self.assertEqual(snap[0], 5)                    # saved every 5 events
        loaded = orders.load(self.conn, oid)
        self.assertEqual(loaded.snapshot_version, 5)
        self.assertEqual(loaded.events_read, 2)         # only versions 6 and 7
        self.assertEqual(loaded.version, 7)
        # the same state as a full replay of the events
        state = orders.initial_state()
        for e in store.read_stream(self.conn, stream):
            state = orders.apply(state, e.event_type, e.data)
        self.assertEqual(loaded.state, state)
        self.assertEqual(len(state["items"]), 7)
        self.conn.commit()


class ConcurrencyTest(unittest.TestCase):
    def test_two_handlers_same_order_both_succeed_via_retry(self):
        """Both handlers load version 0 before either appends (a barrier after
        loading); one wins, the other gets ES001, reloads and succeeds."""
        oid = new_order_id()
        with connect() as conn:
            orders.OrderService(conn).handle(oid, {"type": "place", "customer": "k"},
                                             new_request_id())
        barrier = threading.Barrier(2)
        loaded_versions, results, errors = [], [], []

        def after_load(loaded, attempt):
            loaded_versions.append((attempt, loaded.version))
            if attempt == 1:
                barrier.wait(timeout=60)

        def run(sku):
            try:
                with connect() as conn:
                    svc = orders.OrderService(conn, after_load=after_load)
                    results.append(svc.handle(oid, {"type": "add_item", "sku": sku,
                                                    "qty": 1, "price": 10}, new_request_id()))
            except Exception as e:      # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(s,)) for s in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(r.attempts for r in results), [1, 2])
        self.assertEqual(sorted(r.stream_version for r in results), [1, 2])
        self.assertIn((1, 0), loaded_versions)
        self.assertIn((2, 1), loaded_versions)          # the retry saw the winner
        with connect() as conn:
            loaded = orders.load(conn, oid)
            self.assertEqual(loaded.version, 2)
            self.assertEqual(sorted(loaded.state["items"]), ["a", "b"])
            self.assertEqual(loaded.state["total"], 20)

    def test_many_concurrent_handlers(self):
        oid = new_order_id()
        with connect() as conn:
            orders.OrderService(conn).handle(oid, {"type": "place", "customer": "k"},
                                             new_request_id())
        n, per = 6, 5
        results, errors = [], []

        def run(t):
            try:
                with connect() as conn:
                    svc = orders.OrderService(conn)
                    for i in range(per):
                        results.append(svc.handle(
                            oid, {"type": "add_item", "sku": "t%d-%d" % (t, i), "qty": 1,
                                  "price": 1}, new_request_id()))
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=(t,)) for t in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sorted(r.stream_version for r in results), list(range(1, n * per + 1)))
        with connect() as conn:
            loaded = orders.load(conn, oid)
            self.assertEqual(loaded.version, n * per)
            self.assertEqual(loaded.state["total"], n * per)
            self.assertEqual(len(loaded.state["items"]), n * per)
            versions = [e.stream_version for e in store.read_stream(conn, orders.stream_of(oid))]
            self.assertEqual(versions, list(range(n * per + 1)))


if __name__ == "__main__":
    unittest.main()
