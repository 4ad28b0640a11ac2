// Shared by the JavaScript tests: a real gateway started through tests/js/gateway_server.py,
// caller JWTs, a fetch that counts requests, and a small local HTTP server for failure answers.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const HELPER = fileURLToPath(new URL("./gateway_server.py", import.meta.url));
export const CLIENT_MODULE = new URL("../../gateway/http/static/embed-client.js", import.meta.url);
export const PYTHON = process.env.GATEWAY_PYTHON || "python3";

/** Start a gateway (migrated database, demo mappings); resolves to {url, jwtSecret, stop()}. */
export async function startGateway({ ttl = 3600, buffer = 300, dev = false } = {}) {
  const args = [HELPER, "--ttl", String(ttl), "--buffer", String(buffer)];
  if (dev) args.push("--dev");
  const child = spawn(PYTHON, args, { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, "exit");
  const timeout = new Promise((_, reject) => {
    const timer = setTimeout(() => reject(new Error("the gateway did not start in 90 s")), 90_000);
    timer.unref();
  });
  const first = new Promise((resolve, reject) => {
    lines.once("line", resolve);
    exited.then(([code]) => reject(new Error(`gateway_server.py exited with ${code}`)));
  });
  let info;
  try {
    info = JSON.parse(await Promise.race([first, timeout]));
  } catch (err) {
    child.kill("SIGTERM");
    throw err;
  }
  return {
    url: info.url,
    jwtSecret: info.jwt_secret,
    signingSecret: info.signing_secret,
    ttl: info.ttl,
    buffer: info.buffer,
    endpoint: `${info.url}/api/v1/dashboards/iframe-token`,
    async stop() {
      // Closing its stdin tells the helper to stop the gateway and drop what it created.
      child.stdin.end();
      const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** An HS256 caller JWT signed with `secret`; `claims` override the defaults. */
export function makeJwt(secret, claims = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "HS256", typ: "JWT" };
  const payload = {
    sub: "user-1",
    organization_id: "org-123",
    iat: now,
    exp: now + 600,
    ...claims,
  };
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const signingInput = `${part(header)}.${part(payload)}`;
  const signature = createHmac("sha256", secret).update(signingInput).digest("base64url");
  return `${signingInput}.${signature}`;
}

/** A fetch that records every request it sends (`.calls`) and then really sends it. */
export function countingFetch() {
  const calls = [];
  const fetchImpl = (url, init) => {
    calls.push({ url: String(url), body: init?.body ? JSON.parse(init.body) : null });
    return fetch(url, init);
  };
  fetchImpl.calls = calls;
  return fetchImpl;
}

/** Decode a v1 embed token's claims. */
export function claimsOf(token) {
  return JSON.parse(Buffer.from(token, "base64url").toString());
}

/**
 * A local HTTP server whose answers are scripted: `respond(req, res, n)` handles the n-th
 * request (from 1); `proxy(req, res, target)` passes one through to the real gateway.
 */
export async function scriptedServer(respond) {
  let count = 0;
  const server = createServer((req, res) => {
    count += 1;
    respond(req, res, count);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/api/v1/dashboards/iframe-token`,
    get count() {
      return count;
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Pass a request through to `target` (the real token endpoint) and relay its answer;
 * `{date: false}` drops the Date header, as a cross-origin response hides it from scripts.
 */
export async function proxy(req, res, target, { date = true } = {}) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const upstream = await fetch(target, {
    method: req.method,
    headers: { Authorization: req.headers.authorization, "Content-Type": req.headers["content-type"] },
    body: Buffer.concat(chunks),
  });
  const headers = {};
  for (const name of ["content-type", "cache-control", "date", "x-request-id", "retry-after"]) {
    const value = upstream.headers.get(name);
    if (value !== null) headers[name] = value;
  }
  if (!date) {
    delete headers.date;
    res.sendDate = false;
  }
  res.writeHead(upstream.status, headers);
  res.end(Buffer.from(await upstream.arrayBuffer()));
}

/** Answer with the contract's JSON error. */
export function errorAnswer(res, status, code, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers });
  res.end(JSON.stringify({ error: { code, message: `scripted ${code}` }, request_id: "scripted" }));
}
