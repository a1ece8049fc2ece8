"""The web console in a real headless browser (issue 18): Debian's chromium
driven by chromedriver (python3-selenium), against the REAL gateway and
harnessd. Sign in with the cookie flow, see a task appear live when an
agent registers it over gRPC, watch it go STALLED and RECOVERED, restore a
checkpoint from the UI (the workspace really changes), diff two
checkpoints, act on a sandbox; and no Content-Security-Policy violation on
the way (the console has no inline code)."""
import os
import shutil
import threading
import time
import unittest

import hstest
from harness.v1 import checkpoint_pb2 as C
from harness.v1 import health_pb2 as H
from harness.v1 import sandbox_pb2 as S
from test_gateway import Gateway

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN = ("admin@example.com", "admin-password-1")


def browser(profile_dir):
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run",
              "--disable-dev-shm-usage", "--window-size=1300,900", "--user-data-dir=" + profile_dir):
        o.add_argument(a)
    o.binary_location = CHROMIUM
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


class Agent:
    """An agent heartbeating over gRPC from a thread while `beating`."""

    def __init__(self, health, task_id, interval):
        self.health, self.task_id, self.interval = health, task_id, interval
        self.beating = True
        self.resumed = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        step, gen = 0, 0
        while not self._stop:
            if self.beating:
                step += 1
                try:
                    r = self.health.Heartbeat(task_id=self.task_id, current_step=step,
                                              recovery_generation=gen)
                    if r.instruction == H.INSTRUCTION_RESUME_FROM_CHECKPOINT:
                        # fenced resume: acknowledge the generation on the next beat
                        self.resumed.append(r.checkpoint_id)
                        step, gen = r.resume_step, r.recovery_generation
                except Exception:
                    pass
            time.sleep(self.interval)

    def stop(self):
        self._stop = True
        self._t.join(10)


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for f in (CHROMIUM, CHROMEDRIVER):
            if not os.access(f, os.X_OK):
                raise AssertionError("%s missing: scripts/deps.sh installs chromium and "
                                     "chromium-driver" % f)
        cls.hd = hstest.Harnessd()
        cls.gw = Gateway(cls.hd.target, args=["--gateway-secret-file",
                                              os.path.join(cls.hd.data_dir, "gateway.key")])
        cls.base = "http://127.0.0.1:%d" % cls.gw.port
        tok = hstest.login(cls.hd.channel, *ADMIN)
        cls.health = hstest.ServiceClient(cls.hd.channel, H, "HealthService", tok)
        cls.ckpt = hstest.ServiceClient(cls.hd.channel, C, "CheckpointService", tok)
        cls.sandbox = hstest.ServiceClient(cls.hd.channel, S, "SandboxService", tok)
        cls.profile = os.path.join(cls.hd.data_dir, "chromium-profile")
        cls.d = browser(cls.profile)
        # Live tables re-render as events arrive: an element found a moment
        # ago may be stale by the time the condition reads it; poll again.
        cls.wait = WebDriverWait(cls.d, 30 * hstest.SLOW, poll_frequency=0.1,
                                 ignored_exceptions=[StaleElementReferenceException])

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.quit()
        finally:
            shutil.rmtree(cls.profile, ignore_errors=True)
            cls.gw.stop()
            cls.hd.close()

    def shot(self, name):
        self.d.save_screenshot(os.path.join(hstest.BUILD, "console-%s.png" % name))

    def text(self, css):
        """The text of the first element matching css, or "" (the table is
        re-rendered under us: a stale element reads as not there yet)."""
        try:
            els = self.d.find_elements(By.CSS_SELECTOR, css)
            return els[0].text if els else ""
        except StaleElementReferenceException:
            return ""

    def until_text(self, css, pred, what):
        try:
            return self.wait.until(lambda d: (lambda t: t if pred(t) else False)(self.text(css)))
        except Exception:
            self.shot("failure")
            raise AssertionError("%s: %r is %r" % (what, css, self.text(css)))

    def click(self, css):
        # A live table re-renders rows as events arrive: find and click again
        # when the element found went stale in between.
        def clicked(d):
            try:
                d.find_element(By.CSS_SELECTOR, css).click()
                return True
            except StaleElementReferenceException:
                return False
        self.wait.until(lambda d: d.find_element(By.CSS_SELECTOR, css).is_displayed())
        self.wait.until(clicked)

    def confirm(self):
        self.wait.until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
        self.d.find_element(By.ID, "confirm-ok").click()

    def test_1_sign_in_with_the_cookie_flow(self):
        self.d.get(self.base + "/")
        self.wait.until(lambda d: d.find_element(By.ID, "email").is_displayed())
        # a wrong password is refused in the page
        self.d.find_element(By.ID, "email").send_keys(ADMIN[0])
        self.d.find_element(By.ID, "password").send_keys("wrong-password")
        self.d.find_element(By.ID, "login-submit").click()
        self.until_text("#login-error", lambda t: t != "", "login error")
        self.d.find_element(By.ID, "password").clear()
        self.d.find_element(By.ID, "password").send_keys(ADMIN[1])
        self.d.find_element(By.ID, "login-submit").click()
        self.until_text("#who", lambda t: ADMIN[0] in t, "signed-in user")
        self.until_text("#tasks-live", lambda t: t == "live", "task stream")
        # the refresh token is an HttpOnly cookie the page cannot read
        self.assertEqual(self.d.execute_script("return document.cookie"), "")
        cookies = {c["name"]: c for c in self.d.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}
        self.assertTrue(cookies["refreshToken"]["httpOnly"])
        self.assertEqual(cookies["refreshToken"]["path"], "/api/v1/auth")
        self.assertEqual(cookies["refreshToken"]["sameSite"], "Strict")
        self.assertNotIn("accessToken", str(cookies))
        self.assertEqual(self.d.execute_script("return window.localStorage.length"), 0)
        # a reload keeps the session (refresh cookie -> new access token)
        self.d.refresh()
        self.until_text("#tasks-live", lambda t: t == "live", "task stream after reload")

    def test_2_task_appears_live_stalls_and_recovers(self):
        # WatchTasks cannot replay the server's very first event (after_event_id
        # 0 means "live only", and replay starts after the id given): let it
        # be another task's, so the task page below shows ui-task's whole story.
        self.health.RegisterTask(task_id="ui-warm-up")
        tid = "ui-task"
        ws = os.path.join(self.hd.data_dir, "workspaces", tid)
        os.makedirs(ws, exist_ok=True)
        with open(os.path.join(ws, "notes.txt"), "w") as f:
            f.write("step one\n")
        self.health.RegisterTask(task_id=tid, total_steps=10, heartbeat_interval_ms=200,
                                 heartbeat_timeout_ms=1500,
                                 recovery_policy=H.RecoveryPolicy(initial_backoff_ms=3000))
        row = "tr[data-task='%s']" % tid
        self.until_text(row + " td.state", lambda t: t == "RUNNING", "new task row")
        agent = Agent(self.health, tid, 0.2)
        try:
            self.ckpt.CreateCheckpoint(task_id=tid, step=1, description="one")
            with open(os.path.join(ws, "notes.txt"), "w") as f:
                f.write("step two\n")
            self.ckpt.CreateCheckpoint(task_id=tid, step=2, description="two")
            with open(os.path.join(ws, "notes.txt"), "w") as f:
                f.write("step three (lost)\n")
            self.until_text(row + " td.step", lambda t: t.endswith("/ 10") and t != "0 / 10", "steps")
            agent.beating = False  # the agent hangs
            self.until_text(row + " td.state", lambda t: t == "STALLED", "stalled task")
            self.until_text(row + " td.event", lambda t: t == "TIMEOUT", "timeout event")
            self.shot("stalled")
            self.until_text(row + " td.state", lambda t: t == "RECOVERING", "recovering task")
            agent.beating = True  # the restarted agent heartbeats: told to resume
            self.until_text(row + " td.event", lambda t: t == "RECOVERED", "recovered event")
            self.until_text(row + " td.state", lambda t: t == "RUNNING", "running again")
            self.until_text(row + " td.recoveries", lambda t: t.startswith("1"), "recoveries")
            self.shot("recovered")
            self.assertTrue(agent.resumed)
            with open(os.path.join(ws, "notes.txt")) as f:
                self.assertEqual(f.read(), "step two\n")  # recovery restored the latest
            # the task page: its events, in order, from the stream
            self.click(row + " a")
            self.until_text("#task-title", lambda t: t == tid, "task page")
            self.until_text("#task-events", lambda t: "RECOVERED" in t, "events")
            types = [li.get_attribute("data-type") for li in
                     self.d.find_elements(By.CSS_SELECTOR, "#task-events li")][::-1]
            for want in ("REGISTERED", "TIMEOUT", "RECOVERY_STARTED", "RECOVERED"):
                self.assertIn(want, types)
            self.assertLess(types.index("TIMEOUT"), types.index("RECOVERY_STARTED"))
            self.assertLess(types.index("RECOVERY_STARTED"), types.index("RECOVERED"))
        finally:
            agent.stop()

    def test_3_diff_and_restore_a_checkpoint_from_the_ui(self):
        tid = "ui-task"
        ws = os.path.join(self.hd.data_dir, "workspaces", tid)
        self.d.get(self.base + "/#/tasks/" + tid)
        self.until_text("#checkpoints tbody", lambda t: "one" in t and "two" in t, "checkpoints")
        ck1 = self.ckpt.ListCheckpoints(task_id=tid).checkpoints[-1]
        self.assertEqual(ck1.step, 1)
        # diff: the latest against the one before it
        self.click("#diff-go")
        self.until_text("#diff-out", lambda t: "MODIFIED notes.txt" in t, "diff")
        # restore step 1, with confirmation; cancelling changes nothing
        self.click("tr[data-checkpoint='%s'] button.restore" % ck1.checkpoint_id)
        self.wait.until(lambda d: d.find_element(By.ID, "confirm").get_attribute("open") is not None)
        self.assertIn(ck1.checkpoint_id, self.text("#confirm-text"))
        self.d.find_element(By.ID, "confirm-cancel").click()
        time.sleep(0.3)
        with open(os.path.join(ws, "notes.txt")) as f:
            self.assertEqual(f.read(), "step two\n")
        self.click("tr[data-checkpoint='%s'] button.restore" % ck1.checkpoint_id)
        self.confirm()
        self.until_text("#flash", lambda t: t.startswith("Restored " + ck1.checkpoint_id), "restore result")
        with open(os.path.join(ws, "notes.txt")) as f:
            self.assertEqual(f.read(), "step one\n")
        self.shot("restored")

    def test_4_sandboxes_with_their_actions(self):
        self.sandbox.CreateSandbox(sandbox_id="ui-sb", driver="bwrap",
                                   entrypoint=["/bin/sh", "-c", "exec sleep 60"])
        self.d.get(self.base + "/#/sandboxes")
        row = "tr[data-sandbox='ui-sb']"
        self.until_text(row + " td.state", lambda t: t == "CREATED", "sandbox row")
        self.click(row + " td.actions button")  # Start
        self.until_text(row + " td.state", lambda t: t == "RUNNING", "started sandbox")
        self.click(row + " td.actions button")  # Pause
        self.until_text(row + " td.state", lambda t: t == "PAUSED", "paused sandbox")
        self.click(row + " td.actions button.danger")
        self.confirm()
        self.until_text("#flash", lambda t: t == "ui-sb destroyed", "destroy result")
        self.assertEqual(self.sandbox.GetSandbox(sandbox_id="ui-sb").state, S.SANDBOX_STATE_DESTROYED)

    def test_5_no_policy_violations_and_sign_out(self):
        logs = self.d.get_log("browser")
        bad = [l for l in logs if "Content Security Policy" in l["message"] or
               ("SEVERE" == l["level"] and "/console/" in l["message"])]
        self.assertEqual(bad, [])
        self.click("#logout")
        self.wait.until(lambda d: d.find_element(By.ID, "login-view").is_displayed())
        self.d.refresh()  # the cookie is gone: the sign-in form again
        self.wait.until(lambda d: d.find_element(By.ID, "login-view").is_displayed())


if __name__ == "__main__":
    unittest.main()
