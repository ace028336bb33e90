// Compiles libshare's contracts with the pinned solc-js.
//
// Reads a solc standard-JSON input on stdin and writes the standard-JSON output to
// stdout, nothing else (the solc CLI prints a banner line before its JSON). Imports of
// npm packages ("@openzeppelin/...") are resolved from contracts/node_modules, so the
// source unit names in the metadata stay relative and the output is machine-independent.
// Run by scripts/compile_contracts.py.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const root = __dirname;

function findImports(unitName) {
  const normalized = path.posix.normalize(unitName);
  if (path.posix.isAbsolute(normalized) || normalized.startsWith("..")) {
    return { error: `refusing import outside the contracts tree: ${unitName}` };
  }
  const base = normalized.startsWith("@") ? path.join(root, "node_modules") : root;
  try {
    return { contents: fs.readFileSync(path.join(base, normalized), "utf8") };
  } catch (err) {
    return { error: `cannot read ${unitName}: ${err.message}` };
  }
}

const input = fs.readFileSync(0, "utf8");
const output = solc.compile(input, { import: findImports });
process.stdout.write(output);
