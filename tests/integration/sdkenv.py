"""The SDKs installed as a user installs them, into the build dir:
`pip install ./clients/python` into a venv that sees Debian's
python3-grpcio/python3-protobuf (no PyPI: --no-index), and
`npm install ./clients/typescript` from the npm registry (node_modules kept
in the build dir between runs). Each installs from a copy of the source so
nothing is written into the source tree."""
import fcntl
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


def python_sdk():
    """The venv's python with harness_sdk installed from clients/python."""
    venv = os.path.join(SDK_DIR, "pyvenv")
    with _locked("python"):
        py = os.path.join(venv, "bin", "python")
        if not os.path.exists(py):
            subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv], check=True)
        with tempfile.TemporaryDirectory(prefix="hs-pysdk-") as tmp:
            src = os.path.join(tmp, "python")
            shutil.copytree(os.path.join(hstest.SOURCE, "clients", "python"), src,
                            ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
            env = dict(os.environ, HARNESS_PROTO_DIR=os.path.join(hstest.SOURCE, "proto"),
                       PIP_DISABLE_PIP_VERSION_CHECK="1")
            pip = os.path.join(venv, "bin", "pip")
            subprocess.run([pip, "uninstall", "-q", "-y", "harness-sdk"], check=False, env=env,
                           capture_output=True)
            # dependencies (grpcio, protobuf) must be satisfied by Debian's packages
            subprocess.run([pip, "install", "-q", "--no-index", src], check=True, env=env)
    return py
