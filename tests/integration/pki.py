"""Certificates for TLS tests, made with the openssl CLI in a temporary
directory: CAs, server certificates (SANs localhost, 127.0.0.1 and a test
name) and client certificates; and a directory laid out the way kubelet
writes a Secret volume (files behind a symlinked ..data directory, updated
by swapping that link), to rotate certificates the way cert-manager does."""
import os
import subprocess
import tempfile

SERVER_NAME = "harnessd.test"


def _run(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


class PKI:
    def __init__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="hs-pki-")
        self.dir = self._tmp.name
        self._serial = 1

    def close(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        """A self-signed CA: (cert path, key path)."""
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
             "-subj", "/CN=" + name, cwd=self.dir)
        return self.path(name + ".crt"), self.path(name + ".key")

    def cert(self, ca, name, cn, sans=(), client=False):
        """A certificate for cn signed by ca (the name given to ca()):
        (cert path, key path). Server certificates get DNS:localhost,
        IP:127.0.0.1 and DNS:harnessd.test unless sans is given."""
        if not sans and not client:
            sans = ("DNS:localhost", "IP:127.0.0.1", "DNS:" + SERVER_NAME)
        ext = name + ".ext"
        with open(self.path(ext), "w") as f:
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
            f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=self.dir)
        self._serial += 1
        _run("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-set_serial", str(self._serial), "-out", name + ".crt", "-days", "2",
             "-extfile", ext, cwd=self.dir)
        return self.path(name + ".crt"), self.path(name + ".key")

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()


class SecretVolume:
    """A directory like a Kubernetes Secret volume: tls.crt, tls.key and
    ca.crt are links into ..data, itself a link to a timestamped directory;
    update() writes a new one and swaps ..data atomically."""

    def __init__(self, root):
        self.root = root
        self._n = 0
        os.makedirs(root, exist_ok=True)

    def update(self, files):
        """files: {name: bytes}."""
        self._n += 1
        ts = os.path.join(self.root, "..2030_01_01_00_00_%02d.%d" % (self._n, os.getpid()))
        os.mkdir(ts)
        for name, data in files.items():
            with open(os.path.join(ts, name), "wb") as f:
                f.write(data)
        tmp = os.path.join(self.root, "..data_tmp")
        os.symlink(os.path.basename(ts), tmp)
        os.rename(tmp, os.path.join(self.root, "..data"))
        for name in files:
            link = os.path.join(self.root, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)

    def path(self, name):
        return os.path.join(self.root, name)
