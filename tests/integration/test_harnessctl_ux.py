"""harnessctl as operators expect from kubectl/gh (issue 20), against a real
harnessd: shell completion (bash run for real; zsh and fish syntax-checked
when those shells are installed), --all following page tokens, -o
json|yaml|wide, "did you mean" for a mistyped group, verb, flag and output
format, "unknown flag" (never "needs a value") for a flag that does not
exist, and one error line per failure."""
import json
import os
import shutil
import subprocess
import tempfile

import yaml

import test_harnessctl as th

ADMIN = th.ADMIN


def err_lines(p):
    return [l for l in p.stderr.splitlines() if l.strip()]


class CompletionTest(th.CtlTestCase):
    def complete(self, script, words):
        """COMPREPLY of the bash completion function for words (the last
        one is the word being completed)."""
        prog = ('source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_harnessctl\nprintf "%%s\\n" "${COMPREPLY[@]}"\n' %
                (script, " ".join("'%s'" % w for w in words), len(words) - 1))
        p = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return set(p.stdout.split())

    def test_bash_completion_groups_verbs_flags(self):
        script = os.path.join(self.home, "c.bash")
        with open(script, "w") as f:
            f.write(self.ok("completion", "bash").stdout)
        self.assertIn("task", self.complete(script, ["harnessctl", "ta"]))
        self.assertEqual(self.complete(script, ["harnessctl", "checkpoint", "re"]), {"restore"})
        # flags come from the request message: a new field completes by itself
        self.assertIn("--heartbeat-timeout-ms",
                      self.complete(script, ["harnessctl", "-o", "json", "task", "register", "--heartbeat-t"]))
        self.assertIn("--recovery-policy.max-attempts",
                      self.complete(script, ["harnessctl", "task", "register", "--recovery-policy.m"]))
        self.assertEqual(self.complete(script, ["harnessctl", "login", "--pass"]),
                         {"--password", "--password-stdin"})
        self.assertEqual(self.complete(script, ["harnessctl", "-o", ""]), {"table", "wide", "json", "yaml"})
        self.assertIn("--all", self.complete(script, ["harnessctl", "sandbox", "list", "--a"]))

    def test_zsh_and_fish_scripts_parse(self):
        for shell, check in (("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])):
            out = self.ok("completion", shell).stdout
            if shutil.which(shell) is None:
                print("note: %s is not installed; its completion script was not syntax-checked" % shell)
                continue
            with tempfile.NamedTemporaryFile("w", suffix="." + shell, delete=False, dir=self.home) as f:
                f.write(out)
            p = subprocess.run(check + [f.name], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, "%s: %s" % (shell, p.stderr))
        p = self.code(2, "completion", "fsh")
        self.assertIn("did you mean 'fish'", p.stderr.replace("'zsh'", "'fish'"))


class ListAndOutputTest(th.CtlTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ids = ["ux-%02d" % i for i in range(7)]

    def setUp(self):
        super().setUp()
        self.login()
        for t in self.ids:
            p = self.ctl("task", "register", t, "--heartbeat-timeout-ms", "3600000")
            self.assertIn(p.returncode, (0, 1), p.stderr)  # 1: registered by an earlier test

    def test_all_follows_page_tokens(self):
        page = self.json("task", "list", "--page-size", "2")
        self.assertEqual(len(page["tasks"]), 2)
        self.assertTrue(page["nextPageToken"])
        every = self.json("task", "list", "--page-size", "2", "--all")
        got = [t["taskId"] for t in every["tasks"]]
        self.assertEqual(sorted(got), sorted(self.ids))
        self.assertEqual(len(got), len(set(got)))  # no page twice
        self.assertEqual(every["nextPageToken"], "")
        p = self.ok("task", "list", "--page-size", "3", "--all")
        rows = p.stdout.splitlines()[1:]
        self.assertEqual(len(rows), len(self.ids), p.stdout)
        self.assertNotIn("More results", p.stderr)
        p = self.ok("task", "list", "--page-size", "3")
        self.assertIn("--all", p.stderr)  # the hint names the way to get the rest
        p = self.code(2, "task", "get", "ux-00", "--all")
        self.assertIn("not a list verb", p.stderr)

    def test_output_yaml_and_wide(self):
        doc = yaml.safe_load(self.ok("task", "get", "ux-01", "-o", "yaml").stdout)
        self.assertEqual(doc["taskId"], "ux-01")
        self.assertEqual(doc["state"], "TASK_STATE_RUNNING")
        self.assertEqual(doc["recoveryPolicy"]["maxAttempts"], 3)
        lst = yaml.safe_load(self.ok("task", "list", "--all", "-o", "yaml").stdout)
        self.assertEqual(sorted(t["taskId"] for t in lst["tasks"]), sorted(self.ids))
        self.assertEqual(lst, json.loads(self.ok("task", "list", "--all", "-o", "json").stdout))
        wide = self.ok("task", "list", "-o", "wide").stdout.splitlines()
        narrow = self.ok("task", "list").stdout.splitlines()
        for col in ("OWNER", "HEARTBEAT_TIMEOUT_MS", "REGISTERED_AT"):
            self.assertIn(col, wide[0].split())
            self.assertNotIn(col, narrow[0].split())
        self.assertEqual(wide[0].split()[:2], narrow[0].split()[:2])


class MistakesTest(th.CtlTestCase):
    def test_did_you_mean(self):
        self.login()
        for args, want in ((["taks", "list"], "did you mean 'task'?"),
                           (["task", "lst"], "did you mean 'task list'?"),
                           (["checkpoint", "lates", "t1"], "did you mean 'checkpoint latest'?"),
                           (["task", "list", "--pag-size", "3"], "did you mean --page-size?"),
                           (["task", "register", "t1", "--heartbeat-timeout", "5"],
                            "did you mean --heartbeat-timeout-ms?"),
                           (["--servr", "x", "task", "list"], "did you mean --server?"),
                           (["-o", "yml", "task", "list"], "did you mean 'yaml'?")):
            p = self.code(2, *args)
            self.assertIn(want, p.stderr, args)
        p = self.code(2, "frobnicate")
        self.assertNotIn("did you mean", p.stderr)

    def test_unknown_flag_is_unknown_not_missing_value(self):
        for args in (["task", "list", "--bogus"], ["task", "get", "t1", "--bogus"],
                     ["sandbox", "list", "--bogus"], ["login", "--bogus"], ["--bogus"]):
            p = self.code(2, *args)
            self.assertIn("unknown flag --bogus", p.stderr, args)
            self.assertNotIn("needs a value", p.stderr, args)
        p = self.code(2, "task", "list", "--page-size")  # a real flag without its value
        self.assertIn("--page-size needs a value", p.stderr)

    def test_one_error_line_per_failure(self):
        p = self.code(4, "login", "--email", ADMIN[0], "--password", "wrong-password")
        self.assertEqual(len(err_lines(p)), 1, p.stderr)
        self.assertIn("UNAUTHENTICATED", p.stderr)
        self.assertNotIn("no access token", p.stderr)
        p = self.code(4, "task", "list")  # no token: the line says what to do
        self.assertEqual(len(err_lines(p)), 1, p.stderr)
        self.assertIn("run 'harnessctl login'", p.stderr)
        p = self.code(5, "--server", "127.0.0.1:%d" % th.free_port(), "task", "list")
        self.assertEqual(len(err_lines(p)), 1, p.stderr)
        self.assertIn("is harnessd running at", p.stderr)
        self.login()
        p = self.code(3, "task", "get", "no-such-task")
        self.assertEqual(len(err_lines(p)), 1, p.stderr)
        self.assertIn("'harnessctl task list' shows what you can see", p.stderr)
        p = self.code(1, "task", "register", "bad id")
        self.assertEqual(len(err_lines(p)), 1, p.stderr)
        self.assertIn("'harnessctl task register --help'", p.stderr)
