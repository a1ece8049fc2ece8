"""Issue 19: a task recovered on another node gets its workspace back from
--checkpoint-remote. Two harnessd, each with its own data dir, store and
workspace root, share one bare repository as the remote: a checkpoint
created on node 1 is restored on node 2, which never saw it (fetched on
restore). Ownership still holds on node 2, and a remote that cannot be read
or sends a damaged checkpoint answers a clear error before anything in the
workspace is touched."""
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc

from harness.v1 import health_pb2
import hstest
from test_checkpoints import Api, write, snapshot
from test_checkpoint_tenancy import ADMIN, ALICE, BOB, HungRemote, make_users

TASK = "moved"
FILES = {"README": "hello from node 1\n", "src/main.c": "int main(void) { return 0; }\n"}


class Node:
    """One harnessd with alice and bob."""

    def __init__(self, remote_url, args=()):
        self.hd = hstest.Harnessd(args=("--checkpoint-remote", remote_url) + tuple(args))
        admin = hstest.login(self.hd.channel, *ADMIN)
        make_users(self.hd.channel, admin, ALICE, BOB)
        self.alice = Api(self.hd.channel, hstest.login(self.hd.channel, *ALICE))
        self.bob = Api(self.hd.channel, hstest.login(self.hd.channel, *BOB))
        self.tasks_alice = hstest.ServiceClient(self.hd.channel, health_pb2, "HealthService",
                                                hstest.login(self.hd.channel, *ALICE))

    def ws(self, task_id):
        return os.path.join(self.hd.data_dir, "workspaces", task_id)

    def scratch_repos(self):
        # A fetch works in a scratch repository of its own, never in the
        # task's (a timed-out fetch goes on without the task lock).
        return glob.glob(os.path.join(self.hd.data_dir, "checkpoints", ".fetch-*"))

    def fetching_refs(self, task_id):
        return glob.glob(os.path.join(self.hd.data_dir, "checkpoints", task_id + ".git",
                                      "refs", "harness", "fetching", "*"))

    def register(self, task_id):
        # Registering names the task id for alice on this node (with a
        # shared PostgreSQL store the id is alice's on every node anyway).
        self.tasks_alice.RegisterTask(task_id=task_id, total_steps=3, heartbeat_interval_ms=60000,
                                      heartbeat_timeout_ms=120000)

    def close(self):
        self.hd.close()


def code_of(fn, **fields):
    try:
        fn(**fields)
    except grpc.RpcError as e:
        return e.code(), e.details()
    raise AssertionError("the call succeeded")


def blob_path(repo, content):
    data = content.encode()
    oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return os.path.join(repo, "objects", oid[:2], oid[2:])


class FetchOnRestoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="hs-it-remote-")
        cls.remote = os.path.join(cls.tmp.name, "remote.git")
        subprocess.run(["git", "init", "--quiet", "--bare", cls.remote], check=True)
        cls.nodes = []
        try:
            cls.n1 = cls.node("file://" + cls.remote)
            cls.n2 = cls.node("file://" + cls.remote)
            cls.n1.register(TASK)
            for rel, data in FILES.items():
                write(cls.n1.ws(TASK), rel, data)
            r = cls.n1.alice.create(task_id=TASK, step=1)
            assert not r.push_error, r.push_error
            cls.ckpt = r.checkpoint.checkpoint_id
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def node(cls, url, args=()):
        n = Node(url, args)
        cls.nodes.append(n)
        return n

    @classmethod
    def tearDownClass(cls):
        try:
            hstest.close_all(cls.nodes)
        finally:
            cls.tmp.cleanup()

    def test_restore_on_another_node_fetches_the_checkpoint(self):
        self.n2.register(TASK)
        r = self.n2.alice.restore(task_id=TASK, checkpoint_id=self.ckpt)
        self.assertEqual(r.files_restored, len(FILES))
        self.assertEqual(snapshot(self.n2.ws(TASK)), snapshot(self.n1.ws(TASK)))
        # Now it is node 2's too: listed, and a second restore needs no fetch.
        ids = [c.checkpoint_id for c in self.n2.alice.list(task_id=TASK).checkpoints]
        self.assertEqual(ids, [self.ckpt])
        self.assertEqual(self.n2.scratch_repos(), [])
        self.assertEqual(self.n2.fetching_refs(TASK), [])
        write(self.n2.ws(TASK), "README", "changed on node 2\n")
        self.assertEqual(self.n2.alice.restore(task_id=TASK, checkpoint_id=self.ckpt).files_restored, 1)
        # Ownership holds: bob cannot restore alice's task's checkpoint there.
        code, msg = code_of(self.n2.bob.restore, task_id=TASK, checkpoint_id=self.ckpt)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND, msg)
        # A checkpoint id the remote does not have either.
        code, msg = code_of(self.n2.alice.restore, task_id=TASK, checkpoint_id="0" * len(self.ckpt))
        self.assertIn(code, (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), msg)

    def assert_refused_untouched(self, node, task_id, remote_words):
        write(node.ws(task_id), "mine", "node 3's own work\n")
        before = snapshot(node.ws(task_id))
        for _ in range(2):  # the second time too: no ref was left behind
            code, msg = code_of(node.alice.restore, task_id=task_id, checkpoint_id=self.ckpt,
                                workspace=task_id)
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, msg)
            self.assertIn("checkpoint remote", msg)
            self.assertTrue(any(w in msg for w in remote_words), msg)
            self.assertEqual(snapshot(node.ws(task_id)), before)

    def test_unreachable_remote_is_a_clear_error(self):
        n3 = self.node("file://" + os.path.join(self.tmp.name, "no-such.git"))
        n3.register(TASK)
        self.assert_refused_untouched(n3, TASK, ("no-such", "not", "could not", "failed"))

    def test_damaged_remote_leaves_the_workspace_alone(self):
        # A copy of the remote whose blobs are garbage: every object loose,
        # then the checkpoint's files' blobs overwritten.
        bad = os.path.join(self.tmp.name, "damaged.git")
        shutil.copytree(self.remote, bad)
        for pack in glob.glob(os.path.join(bad, "objects", "pack", "*.pack")):
            moved = pack + ".orig"
            os.rename(pack, moved)
            os.unlink(pack[:-len(".pack")] + ".idx")
            with open(moved, "rb") as f:
                subprocess.run(["git", "-C", bad, "unpack-objects", "-q"], stdin=f, check=True)
            os.unlink(moved)
        for data in FILES.values():
            p = blob_path(bad, data)
            self.assertTrue(os.path.exists(p), p)
            os.chmod(p, 0o644)
            with open(p, "wb") as f:
                f.write(b"\x78\x9c garbage, not a zlib stream")
        n3 = self.node("file://" + bad)
        n3.register(TASK)
        self.assert_refused_untouched(n3, TASK, ("incomplete", "fetching", "failed"))

    def test_hung_remote_is_bounded_and_holds_no_lock(self):
        # A remote that accepts and never answers: the restore answers
        # UNAVAILABLE after the push timeout, the task's other calls are not
        # held up by the fetch still hanging in the background.
        remote = HungRemote()
        try:
            n3 = self.node("http://127.0.0.1:%d/r.git" % remote.port,
                           ("--checkpoint-push-timeout-ms", "300"))
            n3.register(TASK)
            write(n3.ws(TASK), "mine", "node 3's own work\n")
            before = snapshot(n3.ws(TASK))
            code, msg = code_of(n3.alice.restore, task_id=TASK, checkpoint_id=self.ckpt,
                                workspace=TASK)
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, msg)
            self.assertIn("did not answer", msg)
            self.assertEqual(list(n3.alice.list(task_id=TASK).checkpoints), [])
            self.assertEqual(snapshot(n3.ws(TASK)), before)
            # The hanging fetch holds only its scratch repository.
            self.assertEqual(len(n3.scratch_repos()), 1)
            self.assertEqual(n3.fetching_refs(TASK), [])
        finally:
            remote.close()  # the hung fetch sees EOF and ends
        deadline = time.monotonic() + 30 * hstest.SLOW
        while n3.scratch_repos() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(n3.scratch_repos(), [], "the ended fetch removes its scratch repository")


if __name__ == "__main__":
    unittest.main()
