"use strict";
// google.protobuf.Struct <-> plain JSON values (proto-loader gives Struct
// as {fields: {k: {numberValue: 1, kind: "numberValue"}}}).

function toValue(v) {
  if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  if (typeof v === "object") return { structValue: toStruct(v) };
  throw new TypeError("cannot put a " + typeof v + " in a google.protobuf.Struct");
}

function toStruct(obj) {
  const fields = {};
  for (const [k, v] of Object.entries(obj || {})) fields[k] = toValue(v);
  return { fields };
}

function fromValue(v) {
  if (!v) return null;
  const kind = v.kind || Object.keys(v).find((k) => k.endsWith("Value"));
  switch (kind) {
    case "numberValue": return v.numberValue;
    case "stringValue": return v.stringValue;
    case "boolValue": return v.boolValue;
    case "structValue": return fromStruct(v.structValue);
    case "listValue": return ((v.listValue && v.listValue.values) || []).map(fromValue);
    default: return null;
  }
}

function fromStruct(s) {
  const out = {};
  for (const [k, v] of Object.entries((s && s.fields) || {})) out[k] = fromValue(v);
  return out;
}

module.exports = { toStruct, fromStruct };
