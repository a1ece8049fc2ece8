"use strict";
// Harness agent SDK for Node.js (TypeScript types in index.d.ts).
const { Client, HarnessError } = require("./lib/client");
const { Agent, Cancelled, Fenced } = require("./lib/agent");
const { toStruct, fromStruct } = require("./lib/struct");

module.exports = { Client, HarnessError, Agent, Cancelled, Fenced, toStruct, fromStruct };
