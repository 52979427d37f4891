// The playground: a public OAuth client (PKCE, RFC 7636) that shows every step it takes.
"use strict";

const root = document.getElementById("playground");
const config = root.dataset;
const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

function decodeSegment(segment) {
  const padded = segment.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((segment.length + 3) % 4);
  return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0))));
}

function show(id, ...parts) {
  $(id).textContent = parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p, null, 2))).join("\n\n");
}

async function post(path, fields, headers = {}) {
  const body = new URLSearchParams(fields);
  const response = await fetch(path, {
    method: "POST", body, headers: { "Content-Type": "application/x-www-form-urlencoded", ...headers },
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { response, json, request: `POST ${path}\n${body.toString()}` };
}

function describe(result) {
  return `→ ${result.response.status} ${result.response.statusText}`;
}

function tokens() {
  return JSON.parse(store.getItem("playground.tokens") || "null");
}

function enable(...ids) {
  ids.forEach((id) => { $(id).disabled = false; });
}

// 1. Build the authorization URL with PKCE and state, then go to /idp.
$("step-authorize").addEventListener("click", async () => {
  const verifier = randomString();
  const state = randomString();
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  store.setItem("playground.verifier", verifier);
  store.setItem("playground.state", state);
  const url = new URL(`${config.base}/idp`);
  url.search = new URLSearchParams({
    response_type: "code", client_id: config.clientId, redirect_uri: config.redirectUri,
    scope: config.scope, state, code_challenge: challenge, code_challenge_method: "S256",
    nonce: randomString(), prompt: "consent",
  }).toString();
  show("out-authorize", "code_verifier (kept in this tab): " + verifier,
    "code_challenge = BASE64URL(SHA-256(code_verifier)): " + challenge, "GET " + url.toString());
  window.location.assign(url.toString());
});

// Back from /idp: check state and iss (RFC 9207) before using the code.
function readCallback() {
  const params = new URLSearchParams(window.location.search);
  if (!window.location.pathname.endsWith("/callback") || ![...params.keys()].length) return;
  const received = Object.fromEntries(params);
  const checks = [
    `state matches: ${received.state === store.getItem("playground.state")}`,
    `iss is this server: ${received.iss === config.base}`,
  ];
  show("out-authorize", "The authorization server sent the browser back with:", received, checks.join("\n"));
  if (received.code && received.state === store.getItem("playground.state") && received.iss === config.base) {
    store.setItem("playground.code", received.code);
    enable("step-token");
  }
}

// 2. Exchange the code, proving possession of the verifier.
$("step-token").addEventListener("click", async () => {
  const result = await post("/oauth/token", {
    grant_type: "authorization_code", code: store.getItem("playground.code"),
    redirect_uri: config.redirectUri, client_id: config.clientId,
    code_verifier: store.getItem("playground.verifier"),
  });
  show("out-token", result.request, describe(result), result.json);
  if (result.response.ok) {
    store.setItem("playground.tokens", JSON.stringify(result.json));
    enable("step-verify", "step-api", "step-refresh", "step-revoke");
  }
});

// 3. Decode each JWT and verify its RS256 signature with the published key.
async function verify(token, keys) {
  const [header, payload, signature] = token.split(".");
  const head = decodeSegment(header);
  const jwk = keys.find((k) => k.kid === head.kid);
  if (!jwk) return { header: head, claims: decodeSegment(payload), signature: "no key with this kid in the JWKS" };
  const key = await crypto.subtle.importKey(
    "jwk", { kty: jwk.kty, n: jwk.n, e: jwk.e, alg: "RS256", ext: true },
    { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, false, ["verify"]);
  const padded = signature.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((signature.length + 3) % 4);
  const valid = await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key,
    Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)), new TextEncoder().encode(`${header}.${payload}`));
  return { header: head, claims: decodeSegment(payload), signature: valid ? "valid" : "INVALID" };
}

$("step-verify").addEventListener("click", async () => {
  const jwks = await (await fetch("/.well-known/jwks.json")).json();
  const current = tokens();
  const parts = ["GET /.well-known/jwks.json", jwks, "access_token:", await verify(current.access_token, jwks.keys)];
  if (current.id_token) parts.push("id_token:", await verify(current.id_token, jwks.keys));
  show("out-verify", ...parts);
});

// 4. Call the API with the access token.
async function callApi() {
  const response = await fetch("/api/todos?limit=5", { headers: { Authorization: `Bearer ${tokens().access_token}` } });
  const challenge = response.headers.get("WWW-Authenticate");
  return [`GET /api/todos?limit=5\nAuthorization: Bearer …`, `→ ${response.status}`,
    challenge ? `WWW-Authenticate: ${challenge}` : "", await response.json()];
}

$("step-api").addEventListener("click", async () => show("out-api", ...(await callApi())));

// 5. Refresh (a public client's refresh token rotates), then revoke and call the API again.
$("step-refresh").addEventListener("click", async () => {
  const result = await post("/oauth/token", {
    grant_type: "refresh_token", refresh_token: tokens().refresh_token, client_id: config.clientId,
  });
  if (result.response.ok) store.setItem("playground.tokens", JSON.stringify(result.json));
  show("out-refresh", result.request, describe(result), result.json);
});

$("step-revoke").addEventListener("click", async () => {
  const result = await post("/oauth/revoke", { token: tokens().refresh_token, client_id: config.clientId });
  show("out-refresh", result.request, describe(result), result.json,
    "Calling the API again with the access token:", ...(await callApi()));
});


// 6. MCP: a token for the MCP endpoint, tools/list and tools/call, and the todos view (MCP Apps)
// rendered as a host renders it: in a sandboxed frame, speaking JSON-RPC over postMessage.
const MCP_VERSION = "2026-07-28";
let rpcId = 0;

function mcpToken() {
  return JSON.parse(store.getItem("playground.mcp") || "null");
}

$("step-mcp-token").addEventListener("click", async () => {
  const verifier = randomString();
  const state = randomString();
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  store.setItem("playground.mcp.verifier", verifier);
  store.setItem("playground.mcp.state", state);
  const url = new URL(`${config.base}/idp`);
  url.search = new URLSearchParams({
    response_type: "code", client_id: config.clientId, redirect_uri: config.redirectUri,
    scope: "todos:read todos:write", state, code_challenge: challenge, code_challenge_method: "S256",
    resource: `${config.base}/mcp`,
  }).toString();
  window.location.assign(url.toString());
});

// Back from /idp with a code for /mcp: exchange it at once, for that resource.
async function readMcpCallback() {
  const params = new URLSearchParams(window.location.search);
  const state = store.getItem("playground.mcp.state");
  if (!state || params.get("state") !== state) return false;
  store.removeItem("playground.mcp.state");
  const result = await post("/oauth/token", {
    grant_type: "authorization_code", code: params.get("code"), redirect_uri: config.redirectUri,
    client_id: config.clientId, code_verifier: store.getItem("playground.mcp.verifier"),
    resource: `${config.base}/mcp`,
  });
  show("out-mcp", result.request, describe(result), result.json);
  if (result.response.ok) {
    store.setItem("playground.mcp", JSON.stringify(result.json));
    enable("step-mcp-tools", "step-mcp-list");
  }
  return true;
}

async function mcp(method, params = {}) {
  const body = {
    jsonrpc: "2.0", id: ++rpcId, method,
    params: { ...params, _meta: {
      "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
      "io.modelcontextprotocol/clientCapabilities": {
        extensions: { "io.modelcontextprotocol/ui": { mimeTypes: ["text/html;profile=mcp-app"] } },
      },
      "io.modelcontextprotocol/clientInfo": { name: "connected-todos-playground", version: "1" },
    } },
  };
  const headers = {
    "Content-Type": "application/json", Accept: "application/json, text/event-stream",
    Authorization: `Bearer ${mcpToken().access_token}`, "MCP-Protocol-Version": MCP_VERSION, "Mcp-Method": method,
  };
  if (method === "tools/call") headers["Mcp-Name"] = params.name;
  if (method === "resources/read") headers["Mcp-Name"] = params.uri;
  const response = await fetch("/mcp", { method: "POST", headers, body: JSON.stringify(body) });
  const json = await response.json();
  return { response, json, request: `POST /mcp\nMcp-Method: ${method}\n${JSON.stringify(body, null, 2)}` };
}

$("step-mcp-tools").addEventListener("click", async () => {
  const result = await mcp("tools/list");
  show("out-mcp", result.request, describe(result), result.json);
});

$("step-mcp-list").addEventListener("click", async () => {
  const call = await mcp("tools/call", { name: "list_todos", arguments: {} });
  show("out-mcp", call.request, describe(call), call.json);
  const uri = call.json.result && (await mcp("tools/list")).json.result.tools
    .find((tool) => tool.name === "list_todos")._meta.ui.resourceUri;
  if (!uri) return;
  const read = await mcp("resources/read", { uri });
  renderView(read.json.result.contents[0].text, call.json.result);
});

// The host's side of MCP Apps (SEP-1865): ui/initialize, the tool input and result, and the view's
// tools/call, which goes to /mcp with this page's token.
function renderView(html, toolResult) {
  const frame = document.createElement("iframe");
  frame.title = "The todos view, as ChatGPT or Claude shows it";
  frame.setAttribute("sandbox", "allow-scripts"); // an opaque origin: no access to this page
  frame.className = "mcp-view";
  $("mcp-view").replaceChildren(frame);
  const view = frame.contentWindow;
  const send = (message) => view.postMessage({ jsonrpc: "2.0", ...message }, "*");
  window.addEventListener("message", async (event) => {
    if (event.source !== view || !event.data || event.data.jsonrpc !== "2.0") return;
    const { id, method, params } = event.data;
    if (method === "ui/initialize") {
      const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
      send({ id, result: {
        protocolVersion: "2026-01-26", hostInfo: { name: "Connected Todos playground", version: "1" },
        hostCapabilities: { serverTools: {} },
        hostContext: { theme: dark ? "dark" : "light", displayMode: "inline", platform: "web" },
      } });
    } else if (method === "ui/notifications/initialized") {
      send({ method: "ui/notifications/tool-input", params: { arguments: {} } });
      send({ method: "ui/notifications/tool-result", params: toolResult });
    } else if (method === "ui/notifications/size-changed" && params.height) {
      frame.style.height = `${Math.min(params.height + 4, 800)}px`;
    } else if (method === "tools/call") {
      const call = await mcp("tools/call", params);
      show("out-mcp", "The view called a tool through this page:", call.request, describe(call), call.json);
      send(call.json.error ? { id, error: call.json.error } : { id, result: call.json.result });
    } else if (id !== undefined && method) {
      send({ id, error: { code: -32601, message: "Method not found" } });
    }
  });
  frame.srcdoc = html; // after the listener: the view's first message is ui/initialize
}

readMcpCallback().then((handled) => {
  if (!handled) readCallback();
  if (tokens() && !window.location.search) enable("step-verify", "step-api", "step-refresh", "step-revoke");
  if (mcpToken()) enable("step-mcp-tools", "step-mcp-list");
});
