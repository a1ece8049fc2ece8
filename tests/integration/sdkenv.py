"""The SDKs installed as a user installs them, into the build dir:
`pip install ./clients/python` into a venv that sees Debian's
python3-grpcio/python3-protobuf (no PyPI: --no-index), and
`npm install ./clients/typescript` from the npm registry (node_modules kept
in the build dir between runs). Each installs from a copy of the source so
nothing is written into the source tree."""
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile

import hstest

SDK_DIR = os.path.join(hstest.BUILD, "sdk")


def _locked(name):
    os.makedirs(SDK_DIR, exist_ok=True)
    f = open(os.path.join(SDK_DIR, name + ".lock"), "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def _digest(*dirs):
    """A hash of the files under dirs (what an install is made from)."""
    h = hashlib.sha256()
    skip = ("node_modules", "build", "__pycache__", "proto")
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            # generated or installed things inside a package are not its source
            subdirs[:] = sorted(x for x in subdirs if root == d and d.endswith("proto") or
                                (x not in skip and not x.endswith(".egg-info")))
            for name in sorted(files):
                path = os.path.join(root, name)
                h.update(path[len(d):].encode())
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def _fresh(stamp, digest):
    try:
        with open(stamp) as f:
            return f.read() == digest
    except OSError:
        return False


def _stamp(stamp, digest):
    with open(stamp, "w") as f:
        f.write(digest)


def python_sdk():
    """The venv's python with harness_sdk installed from clients/python."""
    venv = os.path.join(SDK_DIR, "pyvenv")
    with _locked("python"):
        py = os.path.join(venv, "bin", "python")
        digest = _digest(os.path.join(hstest.SOURCE, "clients", "python"), os.path.join(hstest.SOURCE, "proto"))
        stamp = os.path.join(venv, "harness-sdk.installed")
        if os.path.exists(py) and _fresh(stamp, digest):
            return py  # installed from these very sources: never reinstalled under a running agent
        if not os.path.exists(py):
            subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True)
        with tempfile.TemporaryDirectory(prefix="hs-pysdk-") as tmp:
            src = os.path.join(tmp, "python")
            shutil.copytree(os.path.join(hstest.SOURCE, "clients", "python"), src,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            env = dict(os.environ, HARNESS_PROTO_DIR=os.path.abspath(os.path.join(hstest.SOURCE, "proto")),
                       PIP_DISABLE_PIP_VERSION_CHECK="1")
            pip = os.path.join(venv, "bin", "pip")
            subprocess.run([pip, "uninstall", "-q", "-y", "harness-sdk"], check=False, env=env,
                           capture_output=True)
            # dependencies (grpcio, protobuf) must be satisfied by Debian's packages
            subprocess.run([pip, "install", "-q", "--no-index", src], check=True, env=env)
        _stamp(stamp, digest)
    return py


def node_sdk():
    """(node, the installed example agent): `npm install ./clients/typescript`
    into <build>/sdk/ts/app (node_modules kept between runs) from a copy
    of the package beside a copy of proto/, as in the repository."""
    root = os.path.join(SDK_DIR, "ts")
    src = os.path.join(root, "src")
    app = os.path.join(root, "app")
    node = shutil.which("node")
    example = os.path.join(app, "node_modules", "harness-sdk", "examples", "counter-agent.js")
    with _locked("node"):
        digest = _digest(os.path.join(hstest.SOURCE, "clients", "typescript"), os.path.join(hstest.SOURCE, "proto"))
        stamp = os.path.join(root, "harness-sdk.installed")
        if os.path.exists(example) and _fresh(stamp, digest):
            return node, example
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(os.path.join(hstest.SOURCE, "clients", "typescript"),
                        os.path.join(src, "clients", "typescript"),
                        ignore=shutil.ignore_patterns("node_modules", "proto", "*.tgz"))
        shutil.copytree(os.path.join(hstest.SOURCE, "proto"), os.path.join(src, "proto"))
        os.makedirs(app, exist_ok=True)
        # npm keeps an installed package whose version did not change, even
        # when its files did: drop the old copy so the new sources go in.
        shutil.rmtree(os.path.join(app, "node_modules", "harness-sdk"), ignore_errors=True)
        if not os.path.exists(os.path.join(app, "package.json")):
            with open(os.path.join(app, "package.json"), "w") as f:
                f.write('{"private": true}\n')
        # typescript and @types/node: tsc checks examples/quickstart.ts against index.d.ts
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
                        "--install-links", os.path.join(src, "clients", "typescript"), "typescript@5",
                        "@types/node@20"],
                       cwd=app, check=True, stdout=subprocess.DEVNULL)
        _stamp(stamp, digest)
    return node, example
