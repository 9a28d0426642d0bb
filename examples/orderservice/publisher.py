"""Publish the order events from the transaction log (no polling, no dual write).

Tails a logical replication slot using the evstore output plugin over the
streaming replication protocol (psycopg2's LogicalReplicationConnection; the
plugin option include-transaction=true adds begin/commit records).  For each
transaction it "publishes" the events, one JSON line each, to a file (or
stdout) and makes them durable (flush + fsync); only then does it confirm the
commit record's LSN to the server (send_feedback(flush_lsn=...)).  So the
slot's confirmed_flush_lsn never passes an event that is not published.

After a crash the server resends everything after the confirmed position:
events that were published but not confirmed come again.  The publisher
deduplicates them on global_position (positions already in the output file
are skipped), so the output holds each committed event once.
"""
import json
import os
import select
import sys
import time

import psycopg2
import psycopg2.extras

SLOT = "shop_publisher"
OPTIONS = {"include-transaction": "true", "categories": "order"}


def ensure_slot(dsn, slot=SLOT):
    """Create the slot if it does not exist (the feed starts at creation)."""
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            if cur.fetchone() is None:
                cur.execute("SELECT pg_create_logical_replication_slot(%s, 'evstore')", (slot,))
    finally:
        conn.close()


def lsn_to_int(lsn):
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class Publisher:
    """before_confirm(commit_record, lines) is a test hook, called after a
    transaction's events are published and before its LSN is confirmed."""

    def __init__(self, dsn, out_path=None, slot=SLOT, before_confirm=None):
        self.dsn = dsn
        self.out_path = out_path        # None: stdout
        self.slot = slot
        self.before_confirm = before_confirm
        self.published = set()          # global positions in the output
        self.pending = []               # events of the open transaction
        self.confirmed = 0
        self.transactions = 0
        self.duplicates = 0             # events received again, not republished
        if out_path and os.path.exists(out_path):
            with open(out_path) as f:
                for line in f:
                    self.published.add(json.loads(line)["global_position"])

    def _publish(self, lines):
        if self.out_path is None:
            for line in lines:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            return
        with open(self.out_path, "a") as f:
            for line in lines:
                f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _on_message(self, msg):
        record = json.loads(msg.payload)
        kind = record.get("kind")
        if kind == "begin":
            self.pending = []
        elif kind is None:              # an event
            if record["global_position"] not in self.published:
                self.pending.append(record)
            else:
                self.duplicates += 1
        elif kind == "commit":
            lines = [json.dumps(e, sort_keys=True) for e in self.pending]
            if lines:
                self._publish(lines)
            self.published.update(e["global_position"] for e in self.pending)
            self.pending = []
            if self.before_confirm:
                self.before_confirm(record, lines)
            # confirm_lsn is the end of the commit record (= msg.data_start)
            confirm = lsn_to_int(record["confirm_lsn"])
            msg.cursor.send_feedback(flush_lsn=confirm, reply=True, force=True)
            self.confirmed = confirm
            self.transactions += 1

    def run(self, idle_timeout=None, max_transactions=None):
        """Stream until idle_timeout seconds pass without a message (None:
        forever) or max_transactions commits were handled."""
        conn = psycopg2.connect(
            self.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            cur = conn.cursor()
            cur.start_replication(slot_name=self.slot, decode=True, options=OPTIONS)
            last = time.monotonic()
            while True:
                msg = cur.read_message()
                if msg is not None:
                    self._on_message(msg)
                    last = time.monotonic()
                    if max_transactions and self.transactions >= max_transactions:
                        return
                    continue
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    return
                select.select([cur], [], [], 0.2)
        finally:
            conn.close()
