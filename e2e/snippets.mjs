// snippets.mjs writes the ```ts and ```tsx code blocks of ../README.md and ../docs/frontend.md
// into snippets/ (not committed), where `npm run check` type-checks them with
// tsconfig.snippets.json: strict, as a Next.js app's tsconfig sets it.
//
// A block whose first line names a file (`// lib/auth.ts (server)`) is that file of the app,
// so `@/lib/auth` imports it. The other blocks of one Markdown file, in order, are one module
// named after it (snippets/README.md.ts), as a reader reads them: a later block may use what
// an earlier one defined. What the text says comes from elsewhere is declared in snippets.d.ts.
// Each block keeps its Markdown line numbers, and tsc's errors are shown at the Markdown file's.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const out = path.join(here, "snippets");
const sources = ["README.md", "docs/frontend.md"];

fs.rmSync(out, { recursive: true, force: true });
const files = new Map(); // path under snippets/ → its text
const from = new Map(); // path under snippets/ → the Markdown file it came from
let blocks = 0;
for (const source of sources) {
  const lines = fs.readFileSync(path.join(here, "..", source), "utf8").split("\n");
  const unnamed = path.basename(source);
  for (let i = 0; i < lines.length; i++) {
    const lang = /^```(ts|tsx)\s*$/.exec(lines[i])?.[1];
    if (!lang) continue;
    const end = lines.indexOf("```", i + 1);
    if (end < 0) throw new Error(`${source}:${i + 1}: a code block that never ends`);
    const body = lines.slice(i + 1, end);
    const named = /^\/\/ ([\w@.\-\[\]\/]+\.tsx?)\b/.exec(body[0])?.[1];
    const file = named ?? `${unnamed}.${lang}`;
    if (named && files.has(file)) throw new Error(`${source}:${i + 2}: ${file} is shown twice`);
    const before = files.get(file) ?? "";
    // Blank lines up to the block's first line, so line N of the file is line N of the source.
    const pad = Math.max(0, i + 1 - before.split("\n").length + 1);
    files.set(file, before + "\n".repeat(pad) + body.join("\n") + "\n");
    from.set(file, source);
    blocks++;
    i = end;
  }
}
for (const [file, text] of files) {
  fs.mkdirSync(path.dirname(path.join(out, file)), { recursive: true });
  fs.writeFileSync(path.join(out, file), text);
}
if (blocks === 0) throw new Error(`no ts or tsx block in ${sources.join(", ")}`);

const args = ["--noEmit", "--pretty", "false", "-p", "tsconfig.snippets.json"];
const tsc = spawnSync(path.join(here, "node_modules/.bin/tsc"), args, { cwd: here, encoding: "utf8" });
if (tsc.error) throw tsc.error;
const report = (tsc.stdout + tsc.stderr).replace(/^snippets\/(.+?)\((\d+),(\d+)\)/gm, (m, file, line, col) =>
  from.has(file) ? `${from.get(file)}:${line}:${col} (${file})` : m);
process.stdout.write(report);
if (tsc.status !== 0) {
  console.log(`the docs' TypeScript does not compile (tsc exit ${tsc.status})`);
  process.exit(1);
}
console.log(`${blocks} TypeScript blocks of ${sources.join(", ")} compile under strict`);
