#!/usr/bin/env node
// Copies ../../proto/harness/v1/*.proto into ./proto when the package sits
// in the Harness repository, so an installed copy (npm install
// --install-links, npm pack) carries the .proto files it loads. Run by
// npm's `prepare`; without the repository around it does nothing.
"use strict";
const fs = require("fs");
const path = require("path");

const src = path.join(__dirname, "..", "..", "..", "proto", "harness", "v1");
const dst = path.join(__dirname, "..", "proto", "harness", "v1");
if (fs.existsSync(src)) {
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    if (f.endsWith(".proto")) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  }
}
