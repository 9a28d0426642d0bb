"""Shared test set-up: a database named by $EVSTORE_DSN (scripts/test.sh
starts a throwaway server for the suite "examples")."""
import os
import unittest
import uuid

import psycopg

from orderservice import store

DSN = os.environ.get("EVSTORE_DSN")
SCHEMA = os.path.join(os.path.dirname(__file__), "..", "orderservice", "schema.sql")


def setUpModule():
    if not DSN:
        raise unittest.SkipTest("set EVSTORE_DSN to a database the tests may use")
    with open(SCHEMA) as f, psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f.read())


def connect(**kwargs):
    return store.connect(DSN, **kwargs)


def new_order_id():
    return uuid.uuid4().hex[:12]


def new_request_id():
    return str(uuid.uuid4())
