import json
import os
import subprocess
import sys
import unittest
import uuid

from tests import support
from tests.support import connect, new_order_id

setUpModule = support.setUpModule
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def cli(*args):
    env = dict(os.environ, EVSTORE_DSN=support.DSN, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "orderservice", *args], cwd=HERE, env=env,
                          capture_output=True, text=True, timeout=120)


class CliTest(unittest.TestCase):
    def test_the_readme_session(self):
        r = cli("setup")
        self.assertEqual(r.returncode, 0, r.stderr)
        try:
            oid = new_order_id()
            rid = str(uuid.uuid4())
            self.assertEqual(cli("place", oid, "kim").returncode, 0)
            first = cli("add-item", oid, "tea", "2", "450", "--request-id", rid)
            again = cli("add-item", oid, "tea", "2", "450", "--request-id", rid)
            self.assertIn("Result(v1 ", first.stdout)
            self.assertIn("duplicate=False", first.stdout)
            self.assertIn("Result(v1 ", again.stdout)
            self.assertIn("duplicate=True", again.stdout)
            self.assertEqual(cli("confirm", oid).returncode, 0)
            refused = cli("confirm", oid)
            self.assertNotEqual(refused.returncode, 0)
            self.assertIn("rejected: only an open order", refused.stderr)
            shown = json.loads(cli("show", oid).stdout)
            self.assertEqual((shown["version"], shown["status"], shown["total"]),
                             (2, "confirmed", 900))
            self.assertEqual(cli("worker", "--once").returncode, 0)
            with connect() as conn:
                rows = conn.execute("SELECT kind, amount FROM shop.ledger WHERE order_id = %s",
                                    (oid,)).fetchall()
            self.assertEqual([(k, int(a)) for k, a in rows], [("sale", 900)])
        finally:
            with connect(autocommit=True) as conn:
                conn.execute("SELECT pg_drop_replication_slot('shop_publisher')")


if __name__ == "__main__":
    unittest.main()
