#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance), pinned, runnable on Node 20.
#
#   tests/mcp_conformance/run.sh list
#   tests/mcp_conformance/run.sh server --url http://127.0.0.1:PORT/mcp --scenario server-stateless
#   tests/mcp_conformance/run.sh server --url URL --scenario tools-list --force
#
# It installs the suite once into a cache folder (CT_CONFORMANCE_DIR, default ~/.cache/mcp-conformance),
# then runs its CLI with your arguments. The suite's server runner sends no Authorization header:
# tests/test_mcp_conformance.py puts a loopback proxy that adds a real bearer token in front of /mcp.
#
# Node 20: the suite imports fs.globSync, which arrived in Node 22. This script rewrites that one
# import to take globSync from the `glob` package instead (a pinned dependency installed beside it).
# Nothing else is changed.
set -euo pipefail
VERSION="0.2.0-alpha.12"
DIR="${CT_CONFORMANCE_DIR:-$HOME/.cache/mcp-conformance}/$VERSION"
CLI="$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -f "$DIR/.ready" ]; then
  mkdir -p "$DIR"
  (cd "$DIR" && [ -f package.json ] || echo '{"name":"mcp-conformance-runner","private":true}' > package.json)
  (cd "$DIR" && npm install --no-audit --no-fund --silent "@modelcontextprotocol/conformance@$VERSION" "glob@10" >/dev/null)
  if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
    node - "$CLI" <<'JS'
const fs = require("fs");
const file = process.argv[2];
const src = fs.readFileSync(file, "utf8");
const from = 'import{existsSync as i,globSync as a,mkdtempSync as o,';
const to = 'import{globSync as a}from"glob";import{existsSync as i,mkdtempSync as o,';
if (src.includes(from)) fs.writeFileSync(file, src.replace(from, to));
else if (!src.includes(to)) { console.error("conformance: the globSync import changed; update run.sh"); process.exit(1); }
JS
  fi
  touch "$DIR/.ready"
fi
exec node "$CLI" "$@"
