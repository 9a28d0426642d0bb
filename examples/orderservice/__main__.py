"""Command line of the order service.

  python3 -m orderservice setup
  python3 -m orderservice place ORDER CUSTOMER
  python3 -m orderservice add-item ORDER SKU QTY PRICE_CENTS [--request-id UUID]
  python3 -m orderservice confirm ORDER | cancel ORDER | show ORDER
  python3 -m orderservice worker [--once]
  python3 -m orderservice publish [--out FILE]

The database comes from $EVSTORE_DSN (a libpq connection string).
"""
import argparse
import json
import os
import uuid

from . import orders, publisher, store, subscriber


def main(argv=None):
    p = argparse.ArgumentParser(prog="orderservice")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup")
    c = sub.add_parser("place"); c.add_argument("order"); c.add_argument("customer")
    c = sub.add_parser("add-item")
    for a in ("order", "sku"):
        c.add_argument(a)
    c.add_argument("qty", type=int); c.add_argument("price", type=int, help="in cents")
    for name in ("confirm", "cancel", "show"):
        sub.add_parser(name).add_argument("order")
    for c in sub.choices.values():
        c.add_argument("--request-id", default=None,
                       help="the client's id of this request (retry with the same id)")
    w = sub.add_parser("worker"); w.add_argument("--once", action="store_true")
    w.add_argument("--consumer", default="ledger-1")
    pb = sub.add_parser("publish"); pb.add_argument("--out", default=None)
    args = p.parse_args(argv)
    dsn = os.environ.get("EVSTORE_DSN", store.DEFAULT_DSN)

    if args.cmd == "setup":
        with open(os.path.join(os.path.dirname(__file__), "schema.sql")) as f, \
                store.connect(dsn, autocommit=True) as conn:
            conn.execute(f.read())
        publisher.ensure_slot(dsn)
        print("schema, subscription 'shop-ledger' and slot '%s' ready" % publisher.SLOT)
        return
    if args.cmd == "worker":
        with store.connect(dsn) as conn:
            w = subscriber.Worker(conn, consumer=args.consumer)
            try:
                w.run(idle_exit=args.once)
            except KeyboardInterrupt:
                pass
            finally:
                w.release()
                print("handled %d, skipped %d" % (w.handled, w.skipped))
        return
    if args.cmd == "publish":
        try:
            publisher.Publisher(dsn, out_path=args.out).run()
        except KeyboardInterrupt:
            pass                        # everything written is confirmed or resent
        return

    with store.connect(dsn) as conn:
        service = orders.OrderService(conn)
        if args.cmd == "show":
            loaded = service.get(args.order)
            print(json.dumps({"version": loaded.version, **loaded.state}, indent=2))
            return
        command = {"place": {"type": "place", "customer": getattr(args, "customer", None)},
                   "add-item": {"type": "add_item", "sku": getattr(args, "sku", None),
                                "qty": getattr(args, "qty", None),
                                "price": getattr(args, "price", None)},
                   "confirm": {"type": "confirm"},
                   "cancel": {"type": "cancel"}}[args.cmd]
        request_id = args.request_id or str(uuid.uuid4())
        try:
            result = service.handle(args.order, command, request_id)
        except orders.DomainError as e:
            raise SystemExit("rejected: %s" % e)
        print("request %s: %r" % (request_id, result))


if __name__ == "__main__":
    main()
