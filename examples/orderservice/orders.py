"""The Order aggregate and its command handler.

An order lives in the stream "order-<id>".  The handler for every command:

1. loads the aggregate: its snapshot (evstore.load_snapshot) plus the events
   after it (evstore.read_stream from snapshot version + 1);
2. decides: the command against the current state gives new events, or a
   DomainError;
3. appends them with the version it loaded as expected_version;
4. on SQLSTATE ES001 (someone else appended first) goes back to 1: the
   decision is made again on the new state;
5. saves a snapshot every SNAPSHOT_EVERY events, in the same transaction.

Event ids are derived from the request id the *client* generated
(uuid5(request_id, index)), so a request retried after a lost reply appends
nothing twice: evstore recognizes the first id and returns the original
result; a retried request whose decision now fails (e.g. "confirm" on the
order it confirmed) is recognized by its first event id.
"""
import uuid

from . import store

SNAPSHOT_EVERY = 5
MAX_ATTEMPTS = 20


class DomainError(Exception):
    """The command is not allowed in the order's current state."""


def stream_of(order_id):
    return "order-%s" % order_id


# ---------------------------------------------------------------- the model

def initial_state():
    return {"status": "none", "customer": None, "items": {}, "total": 0}


def apply(state, event_type, data):
    """The state after one event (a pure function: also used on snapshots)."""
    s = {**state, "items": dict(state["items"])}
    if event_type == "OrderPlaced":
        s["status"] = "open"
        s["customer"] = data["customer"]
    elif event_type == "ItemAdded":
        item = s["items"].get(data["sku"], {"qty": 0, "price": data["price"]})
        s["items"][data["sku"]] = {"qty": item["qty"] + data["qty"], "price": data["price"]}
        s["total"] = state["total"] + data["qty"] * data["price"]
    elif event_type == "ItemRemoved":
        item = s["items"].pop(data["sku"])
        s["total"] = state["total"] - item["qty"] * item["price"]
    elif event_type == "OrderConfirmed":
        s["status"] = "confirmed"
    elif event_type == "OrderCancelled":
        s["status"] = "cancelled"
    return s


def decide(state, command):
    """[(event_type, data)] for a command, or DomainError."""
    kind = command["type"]
    status = state["status"]
    if kind == "place":
        if status != "none":
            raise DomainError("order already exists")
        return [("OrderPlaced", {"customer": command["customer"]})]
    if status == "none":
        raise DomainError("no such order")
    if kind == "add_item":
        if status != "open":
            raise DomainError("order is %s: items cannot be added" % status)
        if command["qty"] <= 0:
            raise DomainError("quantity must be positive")
        return [("ItemAdded", {"sku": command["sku"], "qty": command["qty"],
                               "price": command["price"]})]
    if kind == "remove_item":
        if status != "open" or command["sku"] not in state["items"]:
            raise DomainError("item %s cannot be removed" % command["sku"])
        return [("ItemRemoved", {"sku": command["sku"]})]
    if kind == "confirm":
        if status != "open" or not state["items"]:
            raise DomainError("only an open order with items can be confirmed")
        return [("OrderConfirmed", {"total": state["total"]})]
    if kind == "cancel":
        if status not in ("open", "confirmed"):
            raise DomainError("order is %s" % status)
        return [("OrderCancelled", {"reason": command.get("reason")})]
    raise DomainError("unknown command %r" % kind)


# ------------------------------------------------------------- persistence

class Loaded:
    """An aggregate as loaded: state, version, and how it was loaded."""

    def __init__(self, state, version, snapshot_version, events_read):
        self.state = state
        self.version = version                  # use as expected_version
        self.snapshot_version = snapshot_version  # None: no snapshot used
        self.events_read = events_read


def load(conn, order_id):
    stream = stream_of(order_id)
    snap = store.load_snapshot(conn, stream)
    if snap:
        version, state = snap
        events = store.read_stream(conn, stream, version + 1)
    else:
        version, state = -1, initial_state()
        events = store.read_stream(conn, stream)
    for e in events:
        state = apply(state, e.event_type, e.data)
        version = e.stream_version
    return Loaded(state, version, snap[0] if snap else None, len(events))


def event_ids(request_id, n):
    return [uuid.uuid5(uuid.UUID(str(request_id)), str(i)) for i in range(n)]


class Result:
    def __init__(self, stream_version, global_position, attempts, duplicate):
        self.stream_version = stream_version
        self.global_position = global_position
        self.attempts = attempts        # 1 + the ES001 retries
        self.duplicate = duplicate      # the request had been handled before

    def __repr__(self):
        return "Result(v%d @%d attempts=%d duplicate=%s)" % (
            self.stream_version, self.global_position, self.attempts, self.duplicate)


class OrderService:
    """Command handler.  One connection per service instance (not shared
    between threads).  after_load(loaded, attempt) is a test hook."""

    def __init__(self, conn, after_load=None):
        self.conn = conn
        self.after_load = after_load

    def handle(self, order_id, command, request_id):
        """Execute a command; request_id (a UUID made by the client) makes
        retries of the same request idempotent."""
        stream = stream_of(order_id)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            with self.conn.transaction():
                loaded = load(self.conn, order_id)
                if self.after_load:
                    self.after_load(loaded, attempt)
                try:
                    decided = decide(loaded.state, command)
                except DomainError:
                    previous = self._handled_before(request_id)
                    if previous:
                        return previous
                    raise
                ids = event_ids(request_id, len(decided))
                events = [(eid, etype, data, {"request_id": str(request_id)})
                          for eid, (etype, data) in zip(ids, decided)]
                try:
                    version, position = store.append_events(
                        self.conn, stream, events, loaded.version)
                except store.WrongExpectedVersion:
                    continue            # reload and decide again
                duplicate = version != loaded.version + len(events)
                if (not duplicate and version // SNAPSHOT_EVERY
                        > loaded.version // SNAPSHOT_EVERY):
                    state = loaded.state
                    for _, etype, data, _ in events:
                        state = apply(state, etype, data)
                    store.save_snapshot(self.conn, stream, version, state)
                return Result(version, position, attempt, duplicate)
        raise store.WrongExpectedVersion(
            "gave up after %d conflicting attempts" % MAX_ATTEMPTS)

    def _handled_before(self, request_id):
        found = store.find_event(self.conn, event_ids(request_id, 1)[0])
        if not found:
            return None
        stream, _, _ = found
        # the request's last event: its ids are consecutive in the stream
        last = self.conn.execute(
            "SELECT stream_version, global_position FROM evstore.events"
            " WHERE stream_id = %s AND metadata ->> 'request_id' = %s"
            " ORDER BY stream_version DESC LIMIT 1",
            (stream, str(request_id))).fetchone()
        return Result(last[0], last[1], 1, True)

    def get(self, order_id):
        with self.conn.transaction():
            return load(self.conn, order_id)
