#!/usr/bin/env bash
# Rebuilds every vendored front-end file from the npm packages pinned in package.json, in a
# temporary folder (nothing of npm's is left in the source tree), then prints their sha256 sums.
# Needs Node 20+ and npm. Run from anywhere: bash src/flowstage/web/static/vendor/build.sh
set -euo pipefail
vendor="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$vendor/../../../../.." && pwd)"
axe_dir="$root/tests/browser/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cp "$vendor/package.json" "$vendor/editor.src.js" "$work/"
cd "$work"
npm install --no-audit --no-fund --loglevel=error >&2
npm ls --all >/dev/null  # fails on a missing or mismatched package
npm run --silent build:editor

nm=node_modules
cp "$work/editor.js" "$vendor/editor.js"
cp "$nm/htmx.org/dist/htmx.min.js" "$vendor/htmx.min.js"
cp "$nm/htmx-ext-sse/dist/sse.js" "$vendor/htmx-ext-sse.js"
cp "$nm/cytoscape/dist/cytoscape.min.js" "$vendor/cytoscape.min.js"
mkdir -p "$vendor/LICENSES" "$axe_dir"
cp "$nm/htmx.org/LICENSE" "$vendor/LICENSES/htmx.org.txt"
cp "$nm/htmx-ext-sse/LICENSE" "$vendor/LICENSES/htmx-ext-sse.txt"
cp "$nm/cytoscape/LICENSE" "$vendor/LICENSES/cytoscape.txt"
cp "$nm/axe-core/axe.min.js" "$axe_dir/axe.min.js"
cp "$nm/axe-core/LICENSE" "$axe_dir/axe-core.LICENSE.txt"
cp "$nm/axe-core/LICENSE-3RD-PARTY.txt" "$axe_dir/axe-core.LICENSE-3RD-PARTY.txt"

# the licenses of every package esbuild put into editor.js, one text per distinct license file
node - "$vendor/LICENSES/codemirror.txt" <<'JS'
const fs = require("fs");
const meta = JSON.parse(fs.readFileSync("editor.meta.json", "utf8"));
const names = new Set();
for (const input of Object.keys(meta.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) names.add(m[1]);
}
const groups = new Map();
for (const name of [...names].sort()) {
  const pkg = JSON.parse(fs.readFileSync(`node_modules/${name}/package.json`, "utf8"));
  const text = fs.readFileSync(`node_modules/${name}/LICENSE`, "utf8").trim();
  if (!groups.has(text)) groups.set(text, []);
  groups.get(text).push(`${name} ${pkg.version} (${pkg.license})`);
}
let out = "editor.js is built from editor.src.js and bundles these npm packages, under these licenses.\n";
for (const [text, pkgs] of groups) out += `\n${"=".repeat(72)}\n${pkgs.join("\n")}\n${"-".repeat(72)}\n${text}\n`;
fs.writeFileSync(process.argv[2], out);
JS

cd "$root"
sha256sum src/flowstage/web/static/vendor/*.js src/flowstage/web/static/vendor/LICENSES/* tests/browser/vendor/*
