"""harness-sdk: the Python agent SDK for Harness.

Installs from the repository with Debian's python3-grpcio and
python3-protobuf (no PyPI):

    pip install ./clients/python

The protobuf modules are generated at build time from ../../proto with
protoc (Debian's protobuf-compiler) into harness_sdk/_gen; their imports
are rewritten to stay inside the package, so nothing claims the top-level
`google.api` or `harness` names. The gRPC stubs are built at import time
from the generated service descriptors (no grpc_tools needed).

Environment: HARNESS_PROTO_DIR (default ../../proto), HARNESS_GOOGLEAPIS_DIR
(google/api/annotations.proto; default Debian's grpc-gateway copy),
PROTOC (default protoc)."""
import glob
import os
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.abspath(os.environ.get("HARNESS_PROTO_DIR", os.path.join(HERE, "..", "..", "proto")))
GOOGLEAPIS_CANDIDATES = [
    os.environ.get("HARNESS_GOOGLEAPIS_DIR", ""),
    "/usr/share/gocode/src/github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis",
    "/usr/include",
]
PROTOS = ["harness/v1/auth.proto", "harness/v1/sandbox.proto", "harness/v1/checkpoint.proto",
          "harness/v1/health.proto", "google/api/http.proto", "google/api/annotations.proto"]


def googleapis_dir():
    for d in GOOGLEAPIS_CANDIDATES:
        if d and os.path.exists(os.path.join(d, "google", "api", "annotations.proto")):
            return d
    raise SystemExit("harness-sdk: google/api/annotations.proto not found; install Debian's "
                     "golang-github-grpc-ecosystem-grpc-gateway-dev or set HARNESS_GOOGLEAPIS_DIR")


def generate(out_pkg_dir):
    """protoc --python_out into out_pkg_dir/_gen, imports made package-relative."""
    gen = os.path.join(out_pkg_dir, "_gen")
    shutil.rmtree(gen, ignore_errors=True)
    os.makedirs(gen)
    protoc = os.environ.get("PROTOC", "protoc")
    cmd = [protoc, "-I" + PROTO_DIR, "-I" + googleapis_dir(), "-I/usr/include", "--python_out=" + gen] + PROTOS
    subprocess.run(cmd, check=True)
    for path in glob.glob(os.path.join(gen, "**", "*_pb2.py"), recursive=True):
        with open(path) as f:
            src = f.read()
        src = re.sub(r"^from (harness\.v1|google\.api) import", r"from harness_sdk._gen.\1 import", src,
                     flags=re.M)
        with open(path, "w") as f:
            f.write(src)
    for root, _dirs, _files in os.walk(gen):
        open(os.path.join(root, "__init__.py"), "a").close()


class BuildPy(build_py):
    def run(self):
        super().run()
        generate(os.path.join(self.build_lib, "harness_sdk"))


setup(
    name="harness-sdk",
    version="0.1.0",
    description="Agent SDK for the Harness control plane: heartbeats with fencing, resume, checkpoints",
    packages=["harness_sdk"],
    package_dir={"harness_sdk": "harness_sdk"},
    python_requires=">=3.9",
    install_requires=["grpcio", "protobuf"],
    cmdclass={"build_py": BuildPy},
)
