"""The task state machine checked against its reference model on a real
harnessd (tests/model/model_driver.py): a fixed seed and a few thousand
random steps, including kill -9 and restarts. scripts/model-soak.sh runs
it long with random seeds."""
import os
import unittest

import hstest
import model_driver

SEED = 20261205
# Sanitized binaries are several times slower: fewer steps, same coverage kinds.
STEPS = int(os.environ.get("HS_MODEL_STEPS", "500" if hstest.SANITIZED else "2000"))


class ModelTest(unittest.TestCase):
    def test_random_steps_agree_with_the_model(self):
        d = model_driver.Driver(SEED, STEPS)
        try:
            n = d.run()
        finally:
            d.close()
        self.assertEqual(n, STEPS)
        # The run exercised what it is for (not just heartbeats).
        for kind in ("kill", "stop_beating", "recover", "checkpoint", "replay"):
            self.assertGreater(d.counts[kind], 0, kind)
        print("\nmodel: %d steps clean, %d tasks, %d events, %s" % (n, len(d.tasks), d.watcher.last_id,
                                                                 dict(d.counts)))


if __name__ == "__main__":
    unittest.main()
