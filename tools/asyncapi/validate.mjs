// Validates an AsyncAPI document with the AsyncAPI parser (the spec's JSON Schema, the
// schemas of every payload, and the parser's own rules): prints every diagnostic and
// exits 1 on any error, 2 on bad usage. tests/server/test_asyncapi.py runs it on the
// committed asyncapi.json; `npm ci` here first (scripts/setup.sh does it).
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const [file] = process.argv.slice(2);
if (!file) {
  console.error("usage: node validate.mjs ASYNCAPI.json");
  process.exit(2);
}
const source = resolve(file);
let text;
try {
  text = await readFile(source, "utf8");
} catch (err) {
  console.error(`${file}: ${err.message}`);
  process.exit(2);
}

const names = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "info",
  [DiagnosticSeverity.Hint]: "hint",
};
const { document, diagnostics } = await new Parser().parse(text, { source });
for (const d of diagnostics) {
  const where = d.path.length ? d.path.join(".") : "(document)";
  console.error(`${names[d.severity] ?? d.severity} ${d.code} at ${where}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (document === undefined || errors.length > 0) {
  console.error(`${file}: not a valid AsyncAPI document (${errors.length} errors)`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}`);
