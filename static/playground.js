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

readCallback();
if (tokens() && !window.location.search) enable("step-verify", "step-api", "step-refresh", "step-revoke");
