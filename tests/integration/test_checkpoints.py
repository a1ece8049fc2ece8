"""CheckpointService through grpcio against a real harnessd: byte-exact
restores (content, modes, symlinks), untracked files removed and ignored ones
kept, listing/paging, verify, diff, prune, refusals (bad ids, path traversal,
someone else's task, no token), concurrent creates, kill -9 in the middle
of a large checkpoint, and change tracking (issue 16): changes made inside a
real bwrap sandbox are seen by a tracked checkpoint, changes made while
harnessd is down by the full walk after the restart, both counted in
harness_checkpoint_scans_total. test_checkpoint_tenancy.py has issue 11's attacks
between two plain users, quotas and bounded pushes.

Empty directories are not git's business: a checkpoint records files and
symlinks only, so snapshots here compare files, never directories."""
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import unittest
import urllib.request

import grpc
from google.protobuf import struct_pb2

from harness.v1 import auth_pb2, checkpoint_pb2 as pb, sandbox_pb2
import hstest

ADMIN = ("admin@example.com", "admin-password-1")
BOB = ("bob@example.com", "bob-password-1")


class Api(hstest.ServiceClient):
    """CheckpointService with a token, by short names: api.create(...), api.create.future(...)."""
    NAMES = {"create": "CreateCheckpoint", "restore": "RestoreCheckpoint", "get": "GetCheckpoint",
             "latest": "GetLatestCheckpoint", "list": "ListCheckpoints", "verify": "VerifyConsistency",
             "diff": "DiffCheckpoints", "prune": "PruneCheckpoints"}

    def __init__(self, channel, token):
        super().__init__(channel, pb, "CheckpointService", token, timeout=60 * hstest.SLOW)

    def __getattr__(self, name):
        return super().__getattr__(self.NAMES.get(name, name))


login = hstest.login


def write(root, rel, data, mode=0o644):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    if os.path.lexists(p) and os.path.islink(p):
        os.unlink(p)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chmod(p, mode)


def snapshot(root, skip=()):
    """{relpath: ("file", mode & 0o777, bytes) | ("link", target)} for every
    file and symlink below root; directories are not recorded."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_mode & 0o777, f.read())
    return out


class CheckpointServiceTest(hstest.HarnessTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = Api(cls.channel, login(cls.channel, *ADMIN))
        create_user = hstest.stub(cls.channel, "/harness.v1.AuthService/CreateUser",
                                  auth_pb2.CreateUserRequest, auth_pb2.User)
        create_user(auth_pb2.CreateUserRequest(email=BOB[0], password=BOB[1], name="bob", role="user"),
                    metadata=cls.admin.md, timeout=30)
        cls.bob = Api(cls.channel, login(cls.channel, *BOB))
        cls.wsroot = os.path.join(cls.hd.data_dir, "workspaces")

    def ws(self, task):
        p = os.path.join(self.wsroot, task)
        os.makedirs(p, exist_ok=True)
        return p

    def code_of(self, fn, **fields):
        with self.assertRaises(grpc.RpcError) as cm:
            fn(**fields)
        return cm.exception.code(), cm.exception.details()

    def mk(self, task, step, desc="", **kw):
        r = self.admin.create(task_id=task, step=step, description=desc, **kw)
        self.assertFalse(r.unchanged, "create of step %d reported unchanged" % step)
        return r.checkpoint

    # --- restores -----------------------------------------------------------

    def test_restore_each_checkpoint_byte_exact(self):
        ws = self.ws("rt")
        write(ws, ".gitignore", "*.log\nbuild/\n")
        write(ws, "a.txt", "alpha\n")
        write(ws, "bin/run.sh", "#!/bin/sh\necho hi\n", 0o755)
        write(ws, "sub/deep/x.bin", bytes(range(256)) * 4)
        write(ws, "crlf.txt", b"one\r\ntwo\r\n")
        os.symlink("a.txt", os.path.join(ws, "link"))
        write(ws, "keep.log", "ignored, never touched\n")
        os.makedirs(os.path.join(ws, "empty-dir"))
        state = struct_pb2.Struct()
        state.update({"issue": 42, "nested": {"ok": True, "list": [1, "two", None]}, "pi": 3.5})
        c1 = self.mk("rt", 1, "first", external_state=state)
        self.assertEqual(c1.external_state, state)
        self.assertEqual(c1.workspace, "rt")
        self.assertEqual(len(c1.commit), 40)
        self.assertEqual(c1.parent_checkpoint_id, "")
        s1 = snapshot(ws, skip=("keep.log",))

        write(ws, "a.txt", "alpha changed\n")
        os.unlink(os.path.join(ws, "sub/deep/x.bin"))
        write(ws, "new.txt", "new\n")
        os.chmod(os.path.join(ws, "bin/run.sh"), 0o644)
        os.unlink(os.path.join(ws, "link"))
        os.symlink("new.txt", os.path.join(ws, "link"))
        c2 = self.mk("rt", 2, "second")
        self.assertEqual(c2.parent_checkpoint_id, c1.checkpoint_id)
        s2 = snapshot(ws, skip=("keep.log",))

        write(ws, "bin/run.sh", "#!/bin/sh\necho bye\n", 0o755)
        write(ws, "dir/only/in/three", "3")
        c3 = self.mk("rt", 3, "third")
        s3 = snapshot(ws, skip=("keep.log",))

        for c, snap in ((c1, s1), (c3, s3), (c2, s2), (c1, s1), (c3, s3)):
            write(ws, "untracked.txt", "junk")
            write(ws, "newdir/nested/junk.bin", b"\0\1")
            write(ws, "build/out.o", "ignored dir content")
            r = self.admin.restore(task_id="rt", checkpoint_id=c.checkpoint_id)
            self.assertEqual(r.checkpoint.checkpoint_id, c.checkpoint_id)
            self.assertEqual(r.checkpoint.step, c.step)
            self.assertGreaterEqual(r.files_removed, 2)
            self.assertEqual(snapshot(ws, skip=("keep.log", "build")), snap)
            with open(os.path.join(ws, "keep.log")) as f:
                self.assertEqual(f.read(), "ignored, never touched\n")
            self.assertTrue(os.path.exists(os.path.join(ws, "build/out.o")))
            self.assertFalse(os.path.exists(os.path.join(ws, "untracked.txt")))
            self.assertFalse(os.path.exists(os.path.join(ws, "newdir/nested/junk.bin")))
            self.assertTrue(self.admin.verify(task_id="rt", checkpoint_id=c.checkpoint_id).consistent)
        self.assertFalse(os.path.exists(os.path.join(ws, ".git")))
        # History is not rewritten: all three stay listed, and the next
        # checkpoint is taken on top of the restored one.
        ids = [c.checkpoint_id for c in self.admin.list(task_id="rt").checkpoints]
        self.assertEqual(ids, [c3.checkpoint_id, c2.checkpoint_id, c1.checkpoint_id])
        self.admin.restore(task_id="rt", checkpoint_id=c1.checkpoint_id)
        write(ws, "after-restore", "x")
        c4 = self.mk("rt", 4, "fourth")
        self.assertEqual(c4.parent_checkpoint_id, c1.checkpoint_id)
        self.assertEqual(self.admin.latest(task_id="rt").checkpoint_id, c4.checkpoint_id)

    def test_unchanged_tree_is_recorded_and_request_id_is_idempotent(self):
        # Issue 12: a step that changed no file still records its step,
        # description and external_state; only a request_id dedupes.
        ws = self.ws("same")
        write(ws, "f", "1")
        c1 = self.mk("same", 1)
        state = struct_pb2.Struct()
        state.update({"called": "api.example/charge", "id": 7})
        r = self.admin.create(task_id="same", step=2, description="only an API call",
                              external_state=state)
        self.assertTrue(r.unchanged)
        self.assertFalse(r.replayed)
        self.assertNotEqual(r.checkpoint.checkpoint_id, c1.checkpoint_id)
        self.assertEqual((r.checkpoint.step, r.checkpoint.files_changed), (2, 0))
        self.assertEqual(r.checkpoint.parent_checkpoint_id, c1.checkpoint_id)
        self.assertEqual(r.checkpoint.external_state, state)
        self.assertEqual(self.admin.latest(task_id="same").checkpoint_id, r.checkpoint.checkpoint_id)
        self.assertEqual(len(self.admin.list(task_id="same").checkpoints), 2)
        # A retried request: the same checkpoint back, nothing new.
        first = self.admin.create(task_id="same", step=3, request_id="7d2f-retry-1")
        write(ws, "f", "2")
        again = self.admin.create(task_id="same", step=3, request_id="7d2f-retry-1")
        self.assertTrue(again.replayed)
        self.assertEqual(again.checkpoint.checkpoint_id, first.checkpoint.checkpoint_id)
        self.assertEqual(len(self.admin.list(task_id="same").checkpoints), 3)
        code, msg = self.code_of(self.admin.create, task_id="same", step=3, request_id="a b")
        self.assertEqual((code, "request_id" in msg), (grpc.StatusCode.INVALID_ARGUMENT, True))

    # --- listing ------------------------------------------------------------

    def test_list_order_paging_and_before_step(self):
        ws = self.ws("ls")
        made = []
        for step in (1, 2, 3, 4, 5):
            write(ws, "f", "v%d" % step)
            made.append(self.mk("ls", step, "s%d" % step))
        newest_first = [c.checkpoint_id for c in reversed(made)]
        got, token, pages = [], "", 0
        while True:
            r = self.admin.list(task_id="ls", page_size=2, page_token=token)
            got += [c.checkpoint_id for c in r.checkpoints]
            pages += 1
            token = r.next_page_token
            if not token:
                break
        self.assertEqual(got, newest_first)
        self.assertEqual(pages, 3)
        r = self.admin.list(task_id="ls", before_step=4)
        self.assertEqual([c.step for c in r.checkpoints], [3, 2, 1])
        r = self.admin.list(task_id="ls", before_step=4, page_size=1)
        r2 = self.admin.list(task_id="ls", before_step=4, page_size=1, page_token=r.next_page_token)
        self.assertEqual([r.checkpoints[0].step, r2.checkpoints[0].step], [3, 2])
        self.assertEqual(len(self.admin.list(task_id="ls", page_size=5000).checkpoints), 5)
        got = self.admin.get(task_id="ls", checkpoint_id=made[2].checkpoint_id)
        self.assertEqual((got.step, got.description), (3, "s3"))
        for fields, name in (({"page_size": -1}, "page_size"), ({"before_step": -2}, "before_step"),
                             ({"page_token": "garbage"}, "page_token")):
            code, msg = self.code_of(self.admin.list, task_id="ls", **fields)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(name, msg)
        code, _ = self.code_of(self.admin.latest, task_id="never-checkpointed")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)

    # --- verify / diff / prune ------------------------------------------------

    def test_verify_clean_and_dirty(self):
        ws = self.ws("vf")
        write(ws, ".gitignore", "*.tmp\n")
        write(ws, "keep", "k")
        write(ws, "change", "c")
        write(ws, "remove", "r")
        c = self.mk("vf", 1)
        r = self.admin.verify(task_id="vf")
        self.assertTrue(r.consistent)
        self.assertEqual(r.checkpoint_id, c.checkpoint_id)
        write(ws, "change", "c2")
        os.unlink(os.path.join(ws, "remove"))
        write(ws, "added/new", "n")
        write(ws, "noise.tmp", "ignored")
        r = self.admin.verify(task_id="vf")
        self.assertFalse(r.consistent)
        self.assertEqual((list(r.added), list(r.modified), list(r.deleted)),
                         (["added/new"], ["change"], ["remove"]))
        self.assertFalse(r.truncated)
        os.chmod(os.path.join(ws, "keep"), 0o755)
        self.assertIn("keep", self.admin.verify(task_id="vf", checkpoint_id=c.checkpoint_id).modified)

    def test_diff_between_checkpoints(self):
        ws = self.ws("df")
        write(ws, "text", "a\nb\nc\n")
        write(ws, "gone", "bye\n")
        write(ws, "bin", b"\0\1\2\3")
        c1 = self.mk("df", 1)
        write(ws, "text", "a\nB\nc\nd\n")
        os.unlink(os.path.join(ws, "gone"))
        write(ws, "added", "1\n2\n")
        write(ws, "bin", b"\0\1\2\4")
        c2 = self.mk("df", 2)
        r = self.admin.diff(task_id="df", from_checkpoint_id=c1.checkpoint_id,
                            to_checkpoint_id=c2.checkpoint_id)
        by = {f.path: f for f in r.files}
        self.assertEqual(sorted(by), ["added", "bin", "gone", "text"])
        self.assertEqual([f.path for f in r.files], sorted(by))
        self.assertEqual((by["text"].status, by["text"].additions, by["text"].deletions),
                         (pb.FILE_STATUS_MODIFIED, 2, 1))
        self.assertEqual((by["added"].status, by["added"].additions), (pb.FILE_STATUS_ADDED, 2))
        self.assertEqual((by["gone"].status, by["gone"].deletions), (pb.FILE_STATUS_DELETED, 1))
        self.assertTrue(by["bin"].binary)
        # Defaults: to = latest, from = its parent; the first one diffs against nothing.
        r = self.admin.diff(task_id="df")
        self.assertEqual((r.from_checkpoint_id, r.to_checkpoint_id), (c1.checkpoint_id, c2.checkpoint_id))
        self.assertEqual(len(r.files), 4)
        r = self.admin.diff(task_id="df", to_checkpoint_id=c1.checkpoint_id)
        self.assertEqual(r.from_checkpoint_id, "")
        self.assertEqual(sorted(f.path for f in r.files), ["bin", "gone", "text"])
        code, _ = self.code_of(self.admin.diff, task_id="df", from_checkpoint_id="ckpt-9-abcdefabcdef")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)

    def test_prune(self):
        ws = self.ws("pr")
        made = []
        for step in range(1, 6):
            write(ws, "f", str(step))
            made.append(self.mk("pr", step))
        r = self.admin.prune(task_id="pr", keep_last=2, dry_run=True)
        self.assertEqual((r.pruned_count, r.kept_count), (3, 2))
        self.assertEqual(len(self.admin.list(task_id="pr").checkpoints), 5)
        r = self.admin.prune(task_id="pr", keep_last=2)
        self.assertEqual(list(r.pruned_checkpoint_ids), [c.checkpoint_id for c in reversed(made[:3])])
        self.assertEqual([c.checkpoint_id for c in self.admin.list(task_id="pr").checkpoints],
                         [made[4].checkpoint_id, made[3].checkpoint_id])
        code, _ = self.code_of(self.admin.get, task_id="pr", checkpoint_id=made[0].checkpoint_id)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        code, _ = self.code_of(self.admin.restore, task_id="pr", checkpoint_id=made[0].checkpoint_id)
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.admin.restore(task_id="pr", checkpoint_id=made[3].checkpoint_id)
        with open(os.path.join(ws, "f")) as f:
            self.assertEqual(f.read(), "4")
        code, msg = self.code_of(self.admin.prune, task_id="pr", keep_last=0)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("keep_last", msg)

    # --- refusals -------------------------------------------------------------

    def test_bad_ids_and_path_traversal_are_invalid_argument(self):
        ws = self.ws("tv")
        write(ws, "f", "x")
        c = self.mk("tv", 1)
        outside = tempfile.mkdtemp(prefix="hs-outside-")
        self.addCleanup(shutil.rmtree, outside)
        os.symlink(outside, os.path.join(self.wsroot, "escape-link"))
        os.symlink(outside, os.path.join(ws, "inner-link"))
        for bad in ("../tv", "/etc", "tv/../../x", "a/../../b", "tv/./x", "tv//x", "."):
            code, msg = self.code_of(self.admin.create, task_id="tv", step=2, workspace=bad)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
            self.assertIn("workspace", msg)
            code, msg = self.code_of(self.admin.restore, task_id="tv", checkpoint_id=c.checkpoint_id,
                                     workspace=bad)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
            self.assertIn("workspace", msg)
            code, _ = self.code_of(self.admin.verify, task_id="tv", workspace=bad)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
        # A symbolic link as (or on the way to) a workspace is never followed.
        for bad in ("escape-link", "escape-link/x", "tv/inner-link", "tv/inner-link/x"):
            code, msg = self.code_of(self.admin.create, task_id="tv", step=2, workspace=bad)
            self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, bad)
            self.assertIn("symbolic link", msg)
            code, _ = self.code_of(self.admin.restore, task_id="tv", checkpoint_id=c.checkpoint_id,
                                   workspace=bad)
            self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, bad)
        self.assertEqual(os.listdir(outside), [])
        for bad in ("", "../x", "a/b", ".hidden", "x" * 65, "sp ace", "t.lock"):
            code, msg = self.code_of(self.admin.create, task_id=bad, step=1)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
            self.assertIn("task_id", msg)
            code, _ = self.code_of(self.admin.list, task_id=bad)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
        for bad in ("HEAD", "../../etc/passwd", "ckpt-1-XYZ", "refs/harness/latest", ""):
            code, msg = self.code_of(self.admin.restore, task_id="tv", checkpoint_id=bad)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
            self.assertIn("checkpoint_id", msg)
            code, _ = self.code_of(self.admin.get, task_id="tv", checkpoint_id=bad)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, bad)
        code, msg = self.code_of(self.admin.diff, task_id="tv", from_checkpoint_id="../x")
        self.assertEqual((code, "from_checkpoint_id" in msg), (grpc.StatusCode.INVALID_ARGUMENT, True))
        code, msg = self.code_of(self.admin.diff, task_id="tv", to_checkpoint_id="HEAD~1")
        self.assertEqual((code, "to_checkpoint_id" in msg), (grpc.StatusCode.INVALID_ARGUMENT, True))
        code, msg = self.code_of(self.admin.verify, task_id="tv", checkpoint_id="master")
        self.assertEqual((code, "checkpoint_id" in msg), (grpc.StatusCode.INVALID_ARGUMENT, True))
        code, msg = self.code_of(self.admin.create, task_id="tv", step=-1)
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("step", msg)
        code, msg = self.code_of(self.admin.create, task_id="tv", step=1, description="d" * 5000)
        self.assertEqual((code, "description" in msg), (grpc.StatusCode.INVALID_ARGUMENT, True))
        # A named workspace must exist, and the error says where and what to do.
        code, msg = self.code_of(self.admin.create, task_id="tv", step=1, workspace="tv/missing")
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("<workspace-root>/tv/missing", msg)
        self.assertIn("leave workspace empty", msg)
        write(self.wsroot, "a-file", "not a directory")
        code, msg = self.code_of(self.admin.create, task_id="tv", step=1, workspace="a-file")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION, msg)

    def test_first_checkpoint_creates_the_default_workspace(self):
        # Issue 20: the README's `checkpoint create --task-id t1` on a fresh
        # server; the task's own workspace is made, empty, and recorded.
        self.assertFalse(os.path.exists(os.path.join(self.wsroot, "fresh")))
        r = self.admin.create(task_id="fresh", step=3, description="tests pass")
        self.assertTrue(os.path.isdir(os.path.join(self.wsroot, "fresh")))
        self.assertEqual((r.checkpoint.workspace, r.checkpoint.files_changed), ("fresh", 0))

    def test_other_users_task_is_not_found(self):
        # One rule for every resource: someone else's task answers as a
        # missing one (NOT_FOUND), so existence does not leak either.
        ws = self.ws("mine")
        write(ws, "f", "admin's")
        c = self.mk("mine", 1)
        nf = grpc.StatusCode.NOT_FOUND
        self.assertEqual(self.code_of(self.bob.get, task_id="mine", checkpoint_id=c.checkpoint_id)[0], nf)
        self.assertEqual(self.code_of(self.bob.list, task_id="mine")[0], nf)
        self.assertEqual(self.code_of(self.bob.latest, task_id="mine")[0], nf)
        self.assertEqual(self.code_of(self.bob.verify, task_id="mine")[0], nf)
        self.assertEqual(self.code_of(self.bob.diff, task_id="mine")[0], nf)
        self.assertEqual(self.code_of(self.bob.prune, task_id="mine", keep_last=1)[0], nf)
        self.assertEqual(self.code_of(self.bob.create, task_id="mine", step=2)[0], nf)
        write(ws, "f", "bob was here")
        code, msg = self.code_of(self.bob.restore, task_id="mine", checkpoint_id=c.checkpoint_id)
        self.assertEqual(code, nf)
        self.assertEqual(msg, "task mine not found")
        self.assertEqual(self.code_of(self.bob.latest, task_id="nobody-has-this")[1], msg.replace("mine", "nobody-has-this"))
        with open(os.path.join(ws, "f")) as f:
            self.assertEqual(f.read(), "bob was here")  # nothing restored for bob
        # Bob owns what he names first; the admin may read it, the owner too.
        write(self.ws("bobs"), "f", "bob's")
        r = self.bob.create(task_id="bobs", step=1)
        self.assertTrue(r.checkpoint.created_by)
        self.assertEqual(self.bob.latest(task_id="bobs").checkpoint_id, r.checkpoint.checkpoint_id)
        self.assertEqual(self.admin.latest(task_id="bobs").checkpoint_id, r.checkpoint.checkpoint_id)

    def test_no_token_is_unauthenticated(self):
        anon = Api(self.channel, None)
        code, _ = self.code_of(anon.list, task_id="rt")
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)
        bogus = Api(self.channel, "not.a.token")
        code, _ = self.code_of(bogus.create, task_id="rt", step=1)
        self.assertEqual(code, grpc.StatusCode.UNAUTHENTICATED)

    # --- concurrency ------------------------------------------------------------

    def test_two_concurrent_creates_on_one_task_both_land(self):
        # Two workspaces with different trees, one task: the calls are
        # serialized, so both become commits, the second on top of the first.
        write(self.ws("cc-a"), "f", "from a")
        write(self.ws("cc-b"), "f", "from b")
        futs = [self.admin.create.future(task_id="cc", step=i + 1, workspace=w)
                for i, w in enumerate(("cc-a", "cc-b"))]
        res = [f.result() for f in futs]
        ids = {r.checkpoint.checkpoint_id for r in res}
        self.assertEqual(len(ids), 2)
        self.assertFalse(any(r.unchanged for r in res))
        listed = self.admin.list(task_id="cc").checkpoints
        self.assertEqual({c.checkpoint_id for c in listed}, ids)
        self.assertEqual(listed[0].parent_checkpoint_id, listed[1].checkpoint_id)
        self.assertEqual({c.workspace for c in listed}, {"cc-a", "cc-b"})


class KillDuringCheckpointTest(unittest.TestCase):
    """kill -9 while a large checkpoint is being written, restart on the same
    data dir: the repository is valid and every earlier checkpoint restores.
    Once with change tracking off (a full walk writes loose objects one by
    one: killed once 200 are there), once tracked (the new objects become
    one pack at the end: killed as soon as it is being written, or when the
    create returns, whichever comes first)."""
    FILES = int(os.environ.get("HS_CKPT_KILL_FILES", "4000"))

    def test_kill_9_mid_checkpoint_then_restart(self):
        self.kill_mid(["--checkpoint-watch-workspaces", "0"], tracked=False)

    def test_kill_9_mid_tracked_checkpoint_then_restart(self):
        self.kill_mid([], tracked=True)

    def kill_mid(self, args, tracked):
        tmp = tempfile.TemporaryDirectory(prefix="hs-it-kill-")
        self.addCleanup(tmp.cleanup)
        hd = hstest.Harnessd(data_dir=tmp.name, args=args)
        try:
            api = Api(hd.channel, login(hd.channel, *ADMIN))
            ws = os.path.join(tmp.name, "workspaces", "big")
            write(ws, "a", "1")
            c1 = api.create(task_id="big", step=1).checkpoint
            s1 = snapshot(ws)
            write(ws, "a", "2")
            write(ws, "b", "bee", 0o755)
            c2 = api.create(task_id="big", step=2).checkpoint
            s2 = snapshot(ws)
            for i in range(self.FILES):
                write(ws, "big/d%03d/f%05d" % (i % 97, i), os.urandom(2048))
            objects = os.path.join(tmp.name, "checkpoints", "big.git", "objects")
            count = lambda: sum(len(files) for _, _, files in os.walk(objects))
            packdir = os.path.join(objects, "pack")
            packing = lambda: os.path.isdir(packdir) and any(
                not n.endswith((".pack", ".idx", ".rev")) for n in os.listdir(packdir))
            before = count()
            fut = api.create.future(task_id="big", step=3)
            # Kill once the new checkpoint's objects are being written.
            deadline = time.monotonic() + 60 * hstest.SLOW
            if tracked:
                while not fut.done() and not packing() and time.monotonic() < deadline:
                    time.sleep(0.001)
            else:
                while not fut.done() and count() < before + 200 and time.monotonic() < deadline:
                    time.sleep(0.005)
            killed_mid = not fut.done()
            hd.proc.send_signal(signal.SIGKILL)
            hd.kill()
            hd.channel.close()
        except BaseException:
            hd.kill()
            raise
        if not tracked:
            self.assertTrue(killed_mid,
                            "the checkpoint finished before the kill; raise HS_CKPT_KILL_FILES")

        hd2 = hstest.Harnessd(data_dir=tmp.name, args=args)
        try:
            api = Api(hd2.channel, login(hd2.channel, *ADMIN))
            listed = [c.checkpoint_id for c in api.list(task_id="big").checkpoints]
            self.assertEqual(listed[-2:], [c2.checkpoint_id, c1.checkpoint_id])
            # Acknowledged or not, nothing half-written is visible.
            self.assertIn(len(listed), (2, 3) if tracked else (2,))
            repo = os.path.join(tmp.name, "checkpoints", "big.git")
            if shutil.which("git"):
                fsck = subprocess.run(["git", "--git-dir", repo, "fsck", "--no-dangling"],
                                      capture_output=True, text=True)
                self.assertEqual(fsck.returncode, 0, fsck.stdout + fsck.stderr)
            for c, snap in ((c1, s1), (c2, s2), (c1, s1)):
                api.restore(task_id="big", checkpoint_id=c.checkpoint_id)
                self.assertEqual(snapshot(ws), snap)
            # And the task keeps working: a new checkpoint after the crash.
            write(ws, "after", "crash")
            c4 = api.create(task_id="big", step=4).checkpoint
            self.assertEqual(c4.parent_checkpoint_id, c1.checkpoint_id)
            if shutil.which("git"):
                self.assertEqual(tree_files(repo, c4.commit), as_tree(snapshot(ws)))
            self.assertTrue(api.verify(task_id="big").consistent)
        finally:
            hd2.close()


class HistoryAcrossRestartTest(unittest.TestCase):
    """A long history through gRPC: parents, listing pages and latest stay
    right from harnessd's in-memory catalog and after a restart (rebuilt
    from the repository), including a restored current checkpoint."""
    N = 120

    def test_history_parents_and_pages_survive_restart(self):
        tmp = tempfile.TemporaryDirectory(prefix="hs-it-hist-")
        self.addCleanup(tmp.cleanup)
        ws = os.path.join(tmp.name, "workspaces", "hist")
        ids = []
        hd = hstest.Harnessd(data_dir=tmp.name)
        try:
            api = Api(hd.channel, login(hd.channel, *ADMIN))
            for i in range(1, self.N + 1):
                write(ws, "f", "version %d\n" % i)
                c = api.create(task_id="hist", step=i).checkpoint
                self.assertEqual(c.parent_checkpoint_id, ids[-1] if ids else "")
                ids.append(c.checkpoint_id)
            api.restore(task_id="hist", checkpoint_id=ids[9])
        finally:
            hd.close()

        hd2 = hstest.Harnessd(data_dir=tmp.name)
        try:
            api = Api(hd2.channel, login(hd2.channel, *ADMIN))
            self.assertEqual(api.latest(task_id="hist").checkpoint_id, ids[-1])
            listed, token = [], ""
            while True:
                r = api.list(task_id="hist", page_size=25, page_token=token)
                listed += [c.checkpoint_id for c in r.checkpoints]
                token = r.next_page_token
                if not token:
                    break
            self.assertEqual(listed, ids[::-1])
            # The restore before the restart is still the next parent.
            write(ws, "f", "after restart\n")
            c = api.create(task_id="hist", step=self.N + 1).checkpoint
            self.assertEqual(c.parent_checkpoint_id, ids[9])
            self.assertEqual(api.latest(task_id="hist").checkpoint_id, c.checkpoint_id)
            r = api.prune(task_id="hist", keep_last=3)
            self.assertEqual(len(r.pruned_checkpoint_ids), self.N + 1 - 3)
            self.assertEqual([x.checkpoint_id for x in api.list(task_id="hist").checkpoints],
                             [c.checkpoint_id, ids[-1], ids[-2]])
        finally:
            hd2.close()


def scans(hd):
    """harness_checkpoint_scans_total by (op, mode, reason)."""
    out = {}
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hd.metrics_port, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("harness_checkpoint_scans_total{"):
                labels, value = line[len("harness_checkpoint_scans_total{"):].split("} ")
                kv = dict(x.split("=", 1) for x in labels.split(","))
                out[(kv["op"].strip('"'), kv["mode"].strip('"'), kv["reason"].strip('"'))] = float(value)
    return out


def tree_files(repo, commit):
    """{path: (mode, blob bytes)} of a checkpoint commit, read with the git CLI."""
    ls = subprocess.run(["git", "--git-dir", repo, "ls-tree", "-r", "-z", commit],
                        capture_output=True, check=True).stdout.decode()
    out = {}
    for entry in filter(None, ls.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, _, blob = meta.split()
        data = subprocess.run(["git", "--git-dir", repo, "cat-file", "blob", blob],
                              capture_output=True, check=True).stdout
        out[path] = (mode, data)
    return out


def as_tree(snap):
    """snapshot() in tree_files()'s terms."""
    out = {}
    for path, v in snap.items():
        if v[0] == "link":
            out[path] = ("120000", v[1].encode())
        else:
            out[path] = ("100755" if v[1] & 0o100 else "100644", v[2])
    return out


class ChangeTrackingTest(unittest.TestCase):
    """Issue 16 end to end: what a tracked checkpoint records is what is on
    disk, whoever changed it and whenever."""

    def wait_for(self, pred, what, timeout=30):
        deadline = time.monotonic() + timeout * hstest.SLOW
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        self.fail("timed out waiting for " + what)

    @unittest.skipUnless(shutil.which("bwrap") and shutil.which("git"), "needs bwrap and git")
    def test_changes_made_inside_a_bwrap_sandbox_are_seen(self):
        tmp = tempfile.TemporaryDirectory(prefix="hs-it-trk-")
        self.addCleanup(tmp.cleanup)
        hd = hstest.Harnessd(data_dir=tmp.name, args=["--sandbox-driver", "bwrap"])
        token = login(hd.channel, *ADMIN)
        sandboxes = hstest.ServiceClient(hd.channel, sandbox_pb2, "SandboxService", token,
                                         timeout=30 * hstest.SLOW)
        try:
            api = Api(hd.channel, token)
            ws = os.path.join(tmp.name, "workspaces", "trk")
            write(ws, "keep.txt", "kept")
            write(ws, "gone.txt", "to be removed")
            write(ws, "old/name.txt", "moved")
            write(ws, "tool.sh", "#!/bin/sh\n")
            write(ws, ".gitignore", "*.log\n")
            acct = hstest.SandboxAccount.get()
            if acct:  # the sandbox runs as its own account: the workspace is its
                for dirpath, dirnames, filenames in os.walk(ws):
                    for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
                        os.lchown(n, acct[1], acct[2])
            api.create(task_id="trk", step=1)
            time.sleep(1.1)  # out of the racy second: the next create reads only what changed
            api.create(task_id="trk", step=2)
            before = scans(hd)
            # The agent, inside its sandbox (its own mount namespace, the
            # workspace bind-mounted), changes files of every kind.
            script = ("echo from-sandbox > made.txt && mkdir -p deep/er && echo x > deep/er/f && "
                      "rm gone.txt && mv old new && chmod +x tool.sh && ln -s keep.txt link && "
                      "echo noise > build.log && echo done > marker && exec sleep 1000")
            sb = sandboxes.CreateSandbox(sandbox_id="trk-sb", task_id="trk",
                                         entrypoint=["/bin/sh", "-c", script])
            self.assertEqual(os.path.realpath(sb.workspace), os.path.realpath(ws))
            sandboxes.StartSandbox(sandbox_id="trk-sb")
            try:
                self.wait_for(lambda: os.path.exists(os.path.join(ws, "marker")),
                              "the sandbox's changes")
            except AssertionError:
                with open(sb.log_path, errors="replace") as f:
                    raise AssertionError("sandbox log:\n" + f.read()[-2000:])
            c = api.create(task_id="trk", step=3).checkpoint
            after = scans(hd)
            # Read through the tracker, not by walking the tree ...
            self.assertEqual(after[("create", "tracked", "none")],
                             before.get(("create", "tracked", "none"), 0) + 1)
            # ... and exactly what is on disk (the ignored log aside).
            repo = os.path.join(tmp.name, "checkpoints", "trk.git")
            self.assertEqual(tree_files(repo, c.commit), as_tree(snapshot(ws, skip=("build.log",))))
            names = tree_files(repo, c.commit)
            self.assertIn("made.txt", names)
            self.assertIn("new/name.txt", names)
            self.assertNotIn("gone.txt", names)
            self.assertEqual(names["tool.sh"][0], "100755")
            self.assertEqual(names["link"], ("120000", b"keep.txt"))
            self.assertTrue(api.verify(task_id="trk").consistent)
        finally:
            try:
                sandboxes.DestroySandbox(sandbox_id="trk-sb")
            except grpc.RpcError:
                pass
            finally:
                hd.close()

    @unittest.skipUnless(shutil.which("git"), "needs git")
    def test_changes_while_harnessd_is_down_are_walked_after_the_restart(self):
        tmp = tempfile.TemporaryDirectory(prefix="hs-it-trk-")
        self.addCleanup(tmp.cleanup)
        ws = os.path.join(tmp.name, "workspaces", "down")
        repo = os.path.join(tmp.name, "checkpoints", "down.git")
        for i in range(50):
            write(ws, "d%d/f%d" % (i % 5, i), "v1 %d" % i)
        hd = hstest.Harnessd(data_dir=tmp.name)
        try:
            api = Api(hd.channel, login(hd.channel, *ADMIN))
            api.create(task_id="down", step=1)
        finally:
            hd.close()
        # harnessd is down: nobody watches these.
        write(ws, "d1/f1", "changed while down")
        os.unlink(os.path.join(ws, "d2/f2"))
        os.rename(os.path.join(ws, "d3"), os.path.join(ws, "d3-moved"))
        write(ws, "new/while/down", "hello", 0o755)
        hd2 = hstest.Harnessd(data_dir=tmp.name)
        try:
            api = Api(hd2.channel, login(hd2.channel, *ADMIN))
            self.assertFalse(api.verify(task_id="down").consistent)
            c = api.create(task_id="down", step=2).checkpoint
            self.assertEqual(tree_files(repo, c.commit), as_tree(snapshot(ws)))
            n = scans(hd2)
            # The first read after the restart walked everything, and said why.
            self.assertEqual(n[("verify", "full", "new")], 1)
            self.assertTrue(any(l.get("msg") == "full scan: change tracking not trusted" and
                                l.get("reason") == "new" for l in hd2.lines))
            # From then on only what changes is read.
            write(ws, "d4/f4", "after restart")
            c = api.create(task_id="down", step=3).checkpoint
            self.assertEqual(tree_files(repo, c.commit), as_tree(snapshot(ws)))
            self.assertEqual(scans(hd2)[("create", "tracked", "none")], 2)
        finally:
            hd2.close()


if __name__ == "__main__":
    unittest.main()
