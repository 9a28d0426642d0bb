"""The evstore calls the order service needs, over psycopg 3.

Every function takes an open psycopg.Connection and runs in the caller's
transaction (psycopg 3 opens one on the first statement unless the
connection is in autocommit mode).
"""
import json
import os

import psycopg
from psycopg.types.json import Jsonb

# evstore's SQLSTATEs (docs/reference.md)
WRONG_EXPECTED_VERSION = "ES001"
TOMBSTONED = "ES002"
EVENT_ID_ELSEWHERE = "ES003"

DEFAULT_DSN = os.environ.get("EVSTORE_DSN", "dbname=postgres")


def connect(dsn=None, **kwargs):
    return psycopg.connect(dsn or DEFAULT_DSN, **kwargs)


class WrongExpectedVersion(Exception):
    """SQLSTATE ES001: another writer appended to the stream first."""


class Event:
    """One stored event (a row of evstore.events)."""

    __slots__ = ("global_position", "stream_id", "stream_version", "event_id",
                 "event_type", "data", "metadata")

    COLUMNS = ("global_position, stream_id, stream_version, event_id, "
               "event_type, data, metadata")

    def __init__(self, row):
        (self.global_position, self.stream_id, self.stream_version,
         self.event_id, self.event_type, self.data, self.metadata) = row

    def __repr__(self):
        return "Event(%s v%d %s @%d)" % (self.stream_id, self.stream_version,
                                         self.event_type, self.global_position)


def append_events(conn, stream_id, events, expected_version):
    """Append [(event_id, type, data, metadata)] atomically.

    Returns (stream_version, global_position) of the last event; raises
    WrongExpectedVersion on ES001.  Retrying with the same event ids returns
    the original result (evstore's idempotent append).
    """
    batch = [{"id": str(eid), "type": etype, "data": data, "metadata": meta}
             for eid, etype, data, meta in events]
    try:
        with conn.transaction():    # a savepoint when a transaction is open
            row = conn.execute(
                "SELECT stream_version, global_position"
                " FROM evstore.append_events(%s, %s, %s)",
                (stream_id, Jsonb(batch), expected_version)).fetchone()
    except psycopg.Error as e:
        if e.sqlstate == WRONG_EXPECTED_VERSION:
            raise WrongExpectedVersion(str(e)) from e
        raise
    return row[0], row[1]


def read_stream(conn, stream_id, from_version=None):
    cur = conn.execute(
        "SELECT " + Event.COLUMNS + " FROM evstore.read_stream(%s, %s)",
        (stream_id, from_version))
    return [Event(r) for r in cur]


def load_snapshot(conn, stream_id):
    """(stream_version, state) of the stream's snapshot, or None."""
    return conn.execute(
        "SELECT stream_version, state FROM evstore.load_snapshot(%s)",
        (stream_id,)).fetchone()


def save_snapshot(conn, stream_id, stream_version, state):
    return conn.execute("SELECT evstore.save_snapshot(%s, %s, %s)",
                        (stream_id, stream_version, Jsonb(state))).fetchone()[0]


def find_event(conn, event_id):
    """(stream_id, stream_version, global_position) of a stored event id."""
    return conn.execute(
        "SELECT stream_id, stream_version, global_position"
        " FROM evstore.events WHERE event_id = %s", (event_id,)).fetchone()


def dumps(value):
    return json.dumps(value, sort_keys=True)
