"""/openapi.json (issue 18): the document the gateway serves is the one
generated at build time, an independent validator (npm
@apidevtools/swagger-parser, installed by the npm.tools fixture) accepts it,
and it describes every RPC with a REST mapping under grpc-gateway's
operationIds, names the one without (ExecSandbox), and documents the
parameters, bodies, streams and errors a frontend needs."""
import json
import os
import re
import subprocess
import unittest

import hstest
from harness.v1 import auth_pb2, checkpoint_pb2, health_pb2, sandbox_pb2
from resthelp import Rest
from test_gateway import Gateway

NODE_MODULES = os.path.join(hstest.BUILD, "tools", "node", "node_modules")
DOC_PATH = os.path.join(hstest.BUILD, "gateway", "openapi.json")


class OpenApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hd = hstest.Harnessd()
        cls.gw = Gateway(cls.hd.target)
        r = Rest(cls.gw.port).request("GET", "/openapi.json")
        cls.reply = r
        cls.doc = r.json()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        cls.hd.close()

    def test_served_document_is_the_generated_one(self):
        self.assertEqual(self.reply.status, 200)
        self.assertTrue(self.reply.header("content-type").startswith("application/json"))
        with open(DOC_PATH) as f:
            self.assertEqual(self.doc, json.load(f))
        etag = self.reply.header("etag")
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        r = Rest(self.gw.port).request("GET", "/openapi.json", headers={"If-None-Match": etag})
        self.assertEqual((r.status, r.body), (304, b""))

    def test_an_independent_validator_accepts_it(self):
        self.assertTrue(os.path.isdir(NODE_MODULES), "npm.tools fixture did not run")
        env = dict(os.environ, NODE_PATH=NODE_MODULES)
        p = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "validate_openapi.cjs"),
                            DOC_PATH], capture_output=True, text=True, env=env, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("valid 3.0.3"), p.stdout)
        # and it is able to fail: a broken $ref is refused
        broken = dict(self.doc)
        broken["paths"] = dict(self.doc["paths"])
        broken["paths"]["/x"] = {"get": {"responses": {"200": {"$ref": "#/components/responses/Nope"}}}}
        path = os.path.join(self.hd.data_dir, "broken.json")
        with open(path, "w") as f:
            json.dump(broken, f)
        p = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "validate_openapi.cjs"), path],
                           capture_output=True, text=True, env=env, timeout=120)
        self.assertNotEqual(p.returncode, 0)

    def operations(self):
        for path, item in self.doc["paths"].items():
            for method, o in item.items():
                yield path, method, o

    def test_every_rpc_has_an_operation(self):
        ids = {o["operationId"] for _, _, o in self.operations()}
        for pb2, svc in ((auth_pb2, "AuthService"), (sandbox_pb2, "SandboxService"),
                         (checkpoint_pb2, "CheckpointService"), (health_pb2, "HealthService")):
            for m in pb2.DESCRIPTOR.services_by_name[svc].methods:
                if m.name == "ExecSandbox":
                    self.assertNotIn("SandboxService_ExecSandbox", ids)
                    continue
                self.assertIn("%s_%s" % (svc, m.name), ids)
        self.assertIn("Health_Watch", ids)
        self.assertIn("/harness.v1.SandboxService/ExecSandbox", self.doc["info"]["description"])
        self.assertEqual(len(ids), len(list(self.operations())))  # unique

    def test_operations_describe_what_a_frontend_needs(self):
        for path, method, o in self.operations():
            if path.startswith("/v1/"):
                self.assertIn("gRPC: `/", o["description"])
                self.assertIn("default", o["responses"])
            for var in re.findall(r"\{(\w+)\}", path):
                self.assertIn((var, "path"), [(p["name"], p["in"]) for p in o.get("parameters", [])])
        ops = {o["operationId"]: o for _, _, o in self.operations()}
        # comments become descriptions
        self.assertIn("heartbeat", ops["HealthService_Heartbeat"]["description"].lower())
        # query parameters by JSON name, enums as schemas, maps as deepObject
        lt = {p["name"]: p for p in ops["HealthService_ListTasks"]["parameters"]}
        self.assertEqual(lt["state"]["schema"], {"$ref": "#/components/schemas/harness.v1.TaskState"})
        self.assertEqual(lt["labelSelector"]["style"], "deepObject")
        self.assertIn("TASK_STATE_STALLED", self.doc["components"]["schemas"]["harness.v1.TaskState"]["enum"])
        # the body of a route with path variables leaves them out
        hb = ops["HealthService_Heartbeat"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        body = self.doc["components"]["schemas"][hb.split("/")[-1]]
        self.assertNotIn("taskId", body["properties"])
        self.assertIn("currentStep", body["properties"])
        # int64 as strings, Timestamps as date-time, Struct as an object
        task = self.doc["components"]["schemas"]["harness.v1.Task"]["properties"]
        self.assertEqual(task["totalSteps"]["type"], "string")
        self.assertEqual(task["lastHeartbeatAt"]["format"], "date-time")
        ck = self.doc["components"]["schemas"]["harness.v1.Checkpoint"]["properties"]
        self.assertEqual(ck["externalState"]["type"], "object")
        # streams: SSE, Last-Event-ID where they resume
        wt = ops["HealthService_WatchTasks"]
        self.assertIn("text/event-stream", wt["responses"]["200"]["content"])
        self.assertIn("Last-Event-ID", [p["name"] for p in wt["parameters"]])
        self.assertNotIn("Last-Event-ID", [p["name"] for p in ops["SandboxService_GetSandboxLogs"].get("parameters", [])])
        # auth: Bearer everywhere but the credential flows
        self.assertEqual(self.doc["security"], [{"bearer": []}])
        for public in ("AuthService_Login", "AuthService_Refresh", "Gateway_CookieLogin", "Health_Check"):
            self.assertEqual(ops[public]["security"], [])
        self.assertNotIn("security", ops["HealthService_GetTask"])
        # the seed's cookie routes are documented too
        self.assertIn("/api/v1/auth/login", self.doc["paths"])


if __name__ == "__main__":
    unittest.main()
