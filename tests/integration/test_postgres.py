"""The PostgreSQL store under harnessd (issue 19, part 1), against a private
PostgreSQL 15 in a temp dir (tests/pg/pgtest.sh; fsync on, the defaults):

* PostgreSQL crashes under load (pg_ctl stop -m immediate) and comes back:
  meanwhile calls fail UNAVAILABLE (never another code, nothing hangs),
  afterwards harnessd recovers by itself, and every write it acknowledged
  (registrations with their events, heartbeats) is in the database;
* several harnessd starting at once on an empty database apply each
  migration once and all serve.

The task, auth and checkpoint flows on PostgreSQL are
integration.postgres.flows (the existing tests with HS_TEST_STORE_PG)."""
import os
import tempfile
import threading
import time
import unittest
import urllib.request

import grpc

from harness.v1 import health_pb2

import hstest

H = health_pb2
S = hstest.SLOW
ENV = {"HARNESS_JWT_SECRET": "integration-test-secret-0123456789abcdef"}


class Client(hstest.ServiceClient):
    def __init__(self, channel, token):
        super().__init__(channel, H, "HealthService", token, timeout=20 * S)


def login(channel):
    return hstest.login(channel, "admin@example.com", "admin-password-1", timeout=20)


class Load:
    """Threads that each own a task and heartbeat it with a growing step,
    and one that keeps registering new tasks; every result is recorded."""

    def __init__(self, client, n_beaters=4):
        self.c = client
        self.stop = threading.Event()
        self.mu = threading.Lock()
        self.acked_step = {}      # task -> highest step acknowledged
        self.acked_reg = []       # tasks whose RegisterTask answered OK
        self.codes = {}           # status code name -> count (failures)
        self.oks_after = 0        # OKs since mark()
        self.threads = [threading.Thread(target=self._beat, args=("pg-load-%d" % i,), daemon=True)
                        for i in range(n_beaters)]
        self.threads.append(threading.Thread(target=self._register, daemon=True))

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60 * S)

    def mark(self):
        with self.mu:
            self.oks_after = 0

    def _record(self, fn):
        try:
            r = fn()
        except grpc.RpcError as e:
            with self.mu:
                name = e.code().name
                self.codes[name] = self.codes.get(name, 0) + 1
            time.sleep(0.02)
            return None
        with self.mu:
            self.oks_after += 1
        return r

    def _beat(self, tid):
        while not self.stop.is_set():
            if self._record(lambda: self.c.RegisterTask(task_id=tid, heartbeat_interval_ms=1000,
                                                        heartbeat_timeout_ms=int(600000 * S))):
                break
        step = 0
        while not self.stop.is_set():
            step += 1
            if self._record(lambda: self.c.Heartbeat(task_id=tid, current_step=step)) is not None:
                with self.mu:
                    self.acked_step[tid] = step

    def _register(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            tid = "pg-reg-%d" % n
            if self._record(lambda: self.c.RegisterTask(task_id=tid, heartbeat_interval_ms=1000,
                                                        heartbeat_timeout_ms=int(600000 * S))):
                with self.mu:
                    self.acked_reg.append(tid)


class PostgresOutageTest(unittest.TestCase):
    def setUp(self):
        self.pg = hstest.PgServer()
        self.addCleanup(self.pg.close)
        self.data = tempfile.TemporaryDirectory(prefix="hs-it-")
        self.addCleanup(self.data.cleanup)

    def wait_oks(self, load, n, timeout):
        deadline = time.monotonic() + timeout * S
        while time.monotonic() < deadline:
            with load.mu:
                if load.oks_after >= n:
                    return
            time.sleep(0.05)
        self.fail("fewer than %d calls succeeded within %ds; failures %s" % (n, timeout, load.codes))

    def test_crash_under_load_fails_unavailable_and_loses_nothing_acknowledged(self):
        dsn = hstest.pg_create_database(self.pg.dsn, "outage")
        hd = hstest.Harnessd(data_dir=self.data.name, args=["--store", dsn], env=ENV)
        self.addCleanup(hd.close)
        client = Client(hd.channel, login(hd.channel))
        load = Load(client)
        load.start()
        self.addCleanup(load.finish)
        self.wait_oks(load, 50, 30)

        self.pg.down()
        load.mark()
        time.sleep(1.5)
        # at least one call has failed by now, however loaded the machine
        deadline = time.monotonic() + 30 * hstest.SLOW
        while True:
            with load.mu:
                during = load.codes.get("UNAVAILABLE", 0)
                oks_down = load.oks_after
            if during > 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.pg.up()
        load.mark()
        # It recovers by itself: calls succeed again without a restart.
        self.wait_oks(load, 50, 60)
        load.finish()

        # Calls failed while the database was down, and only as UNAVAILABLE.
        self.assertGreater(during, 0)
        self.assertEqual(oks_down, 0, "calls succeeded while PostgreSQL was down")
        self.assertEqual(set(load.codes), {"UNAVAILABLE"}, load.codes)

        # The outage shows on the metrics endpoint.
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hd.metrics_port,
                                    timeout=10) as r:
            metrics = r.read().decode()
        self.assertIn('harness_store_info{backend="postgres"} 1', metrics)
        unavailable = [l for l in metrics.splitlines()
                       if l.startswith("harness_store_unavailable_total ")]
        self.assertEqual(len(unavailable), 1, metrics)
        self.assertGreater(float(unavailable[0].split()[1]), 0)

        # Nothing acknowledged is lost: the database (after crash recovery)
        # holds every acknowledged registration, its REGISTERED event and at
        # least the last acknowledged step of every task.
        rows = dict((r[0], int(r[1])) for r in self.pg.query(
            "SELECT task_id, current_step FROM tasks", dsn))
        events = set(r[0] for r in self.pg.query(
            "SELECT DISTINCT task_id FROM task_events WHERE type = %d" % H.TASK_EVENT_TYPE_REGISTERED,
            dsn))
        self.assertGreater(len(load.acked_reg), 0)
        for tid in load.acked_reg:
            self.assertIn(tid, rows)
            self.assertIn(tid, events)
        self.assertEqual(len(load.acked_step), 4)
        for tid, step in load.acked_step.items():
            self.assertGreaterEqual(rows[tid], step, tid)
        # Event ids are one increasing sequence without duplicates.
        ids = [int(r[0]) for r in self.pg.query("SELECT event_id FROM task_events ORDER BY 1", dsn)]
        self.assertEqual(len(ids), len(set(ids)))

        # A restarted harnessd reads the same state back.
        hd.close()
        hd2 = hstest.Harnessd(data_dir=self.data.name, args=["--store", dsn], env=ENV)
        self.addCleanup(hd2.close)
        c2 = Client(hd2.channel, login(hd2.channel))
        for tid, step in load.acked_step.items():
            self.assertGreaterEqual(c2.GetTask(task_id=tid).current_step, step)
        self.assertEqual(c2.GetTask(task_id=load.acked_reg[-1]).task_id, load.acked_reg[-1])

    def test_nodes_starting_together_migrate_once(self):
        dsn = hstest.pg_create_database(self.pg.dsn, "together")
        nodes, errors = [], []

        def start(i):
            try:
                d = os.path.join(self.data.name, "n%d" % i)
                os.mkdir(d)
                nodes.append(hstest.Harnessd(data_dir=d, env=ENV,
                                             args=["--store", dsn, "--node-id", "n%d" % i]))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in nodes:
            self.addCleanup(n.close)
        self.assertEqual(errors, [])
        self.assertEqual(len(nodes), 3)
        versions = self.pg.query("SELECT version FROM harness_schema", dsn)
        self.assertEqual(len(versions), 1)
        self.assertGreaterEqual(int(versions[0][0]), 7)  # nodes and task leases
        # One store: a task registered on one node is there for the others.
        a = Client(nodes[0].channel, login(nodes[0].channel))
        a.RegisterTask(task_id="shared-1", heartbeat_interval_ms=1000, heartbeat_timeout_ms=600000)
        b = Client(nodes[1].channel, login(nodes[1].channel))
        with self.assertRaises(grpc.RpcError) as cm:
            b.RegisterTask(task_id="shared-1", heartbeat_interval_ms=1000,
                           heartbeat_timeout_ms=600000)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)


if __name__ == "__main__":
    unittest.main()
