"use strict";
// The harness.v1 services loaded with @grpc/proto-loader from the .proto
// files (the stubs are made from them when the package is loaded, so they
// cannot drift). Where the files are: $HARNESS_PROTO_DIR, the package's
// own proto/ (an installed copy; see scripts/sync-protos.js), or the
// repository's proto/ beside it. google/api/*.proto ship in third_party/.
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const FILES = ["harness/v1/auth.proto", "harness/v1/sandbox.proto", "harness/v1/checkpoint.proto",
  "harness/v1/health.proto"];

function protoDir() {
  const pkg = path.join(__dirname, "..");
  const cands = [process.env.HARNESS_PROTO_DIR, path.join(pkg, "proto"),
    path.join(fs.realpathSync(pkg), "..", "..", "proto")].filter(Boolean);
  for (const d of cands) {
    if (fs.existsSync(path.join(d, "harness", "v1", "health.proto"))) return d;
  }
  throw new Error("harness-sdk: harness/v1/*.proto not found (looked in " + cands.join(", ") +
    "); set HARNESS_PROTO_DIR to the repository's proto/ directory");
}

let cached = null;

function load() {
  if (cached) return cached;
  const def = protoLoader.loadSync(FILES, {
    includeDirs: [protoDir(), path.join(__dirname, "..", "third_party")],
    keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def).harness.v1;
  cached = { def, pkg };
  return cached;
}

module.exports = { load };
