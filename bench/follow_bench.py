"""Issue 19 (see follow_bench.sh): sequential GetSandbox latency through the
Python SDK, p50 and p99 in ms, for a sandbox on node-a:

* cert_direct_a: a client-certificate caller calling node-a;
* cert_followed_via_b: the same caller calling node-b, which does not
  forward it: UNAVAILABLE + harness-node-address, then the SDK's follow
  (the channel to node-a cached after the first call);
* token_direct_a / token_forwarded_via_b: a token caller, forwarded by
  node-b within its per-user bound.

The nodes are integration.follow_nodes' fixture (test_follow_nodes)."""
import argparse
import json
import os
import subprocess
import sys

import test_follow_nodes

CODE = r'''
import json, os, statistics, time
from harness_sdk import Client
N = int(os.environ["CALLS"])
def bench(c, sb):
    c.sandboxes.GetSandbox(sandbox_id=sb, timeout=30)  # warm: channels, follow cache
    ts = []
    for _ in range(N):
        t0 = time.perf_counter()
        c.sandboxes.GetSandbox(sandbox_id=sb, timeout=30)
        ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    c.close()
    return {"p50_ms": round(statistics.median(ts), 2), "p99_ms": round(ts[max(0, int(len(ts) * 0.99) - 1)], 2)}
kw = dict(tls_ca=os.environ["CA"], retries=0)
cert = dict(kw, tls_cert=os.environ["CERT"], tls_key=os.environ["KEY"])
print(json.dumps({
    "cert_direct_a": bench(Client(os.environ["A"], **cert), "sb-agent"),
    "cert_followed_via_b": bench(Client(os.environ["B"], **cert), "sb-agent"),
    "token_direct_a": bench(Client(os.environ["A"], token=os.environ["TOKEN"], **kw), "sb-admin"),
    "token_forwarded_via_b": bench(Client(os.environ["B"], token=os.environ["TOKEN"], **kw), "sb-admin"),
}, indent=1))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    sys.argv = sys.argv[:1]
    t = test_follow_nodes.FollowNodesTest
    t.setUpClass()
    try:
        p = subprocess.run([t.py, "-c", CODE], capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, A=t.a.target, B=t.b.target, CA=t.ca, CERT=t.agent[0],
                                    KEY=t.agent[1], TOKEN=t.admin, CALLS=str(args.calls)))
        sys.stdout.write(p.stdout)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            return 1
    finally:
        t.tearDownClass()
    return 0


if __name__ == "__main__":
    sys.exit(main())
