// Builds the dashboard into server/static/ops: hashed, bundled assets (Leaflet and our
// code, no CDN) and index.html pointing at them. `npm run build` (scripts/setup.sh runs it).
import { build } from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "..", "server", "static", "ops");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await build({
  entryPoints: [join(here, "src", "main.js")],
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "iife",
  target: ["es2020"],
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  loader: { ".png": "file", ".svg": "file" },
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((n) => n.startsWith("main-") && n.endsWith(".js"));
const css = outputs.find((n) => n.startsWith("main-") && n.endsWith(".css"));
if (!js || !css) throw new Error(`build produced no main js/css: ${outputs.join(", ")}`);
const page = readFileSync(join(here, "src", "index.html"), "utf8")
  .replace("%MAIN_JS%", `/ops/assets/${js}`)
  .replace("%MAIN_CSS%", `/ops/assets/${css}`);
writeFileSync(join(out, "index.html"), page);
console.log(`[ops] built ${outputs.length} assets into server/static/ops`);
