// End-to-end: the API built from this repository against a real Better Auth
// server (one per signing algorithm), tokens obtained the way a frontend gets
// them, a real headless Chromium for CORS, and every response the suite
// receives validated against ../openapi.json. Each user's task lifecycle goes
// through the typed client (client.mjs, lifecycle.mjs) that `npm run check`
// type-checks against types generated from ../openapi.json. Reminders reach a
// push service in miniature (the body decrypted by http_ece, web-push's code)
// and, over an event stream, a page's Notification. An MCP client (the official
// SDK) signs in through Better Auth's OAuth provider and uses /mcp's tools while
// a page of the same user follows them on its event stream.
//
//   npm run check && node run.mjs      (needs Go, PostgreSQL at TEST_DATABASE_URL, /usr/bin/chromium)
import { betterAuth } from "better-auth";
import { jwt } from "better-auth/plugins";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { createAuthClient } from "better-auth/client";
import { jwtClient } from "better-auth/client/plugins";
import { oauthProvider } from "@better-auth/oauth-provider";
import { Client as MCPClient } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { SignJWT, decodeProtectedHeader, importJWK, jwtVerify } from "jose";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { chromium } from "playwright-core";
import ece from "http_ece";
import pg from "pg";
import http from "node:http";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { randomBytes, createECDH } from "node:crypto";
import { assert, lifecycle } from "./lifecycle.mjs";

const PG_URL = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test?sslmode=disable";
const ALLOWED = "http://localhost:3000"; // the API's CORS_ORIGINS
const REFUSED = "http://localhost:3001";
const ALGS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"];
const ROTATION_SECONDS = 3; // the EdDSA instance rotates its key this often

// ---------------------------------------------------------------- checks
const results = [];
async function check(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`ok    ${name}`);
  } catch (err) {
    results.push(false);
    console.log(`FAIL  ${name}: ${err.message}`);
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// until polls cond every 100 ms until it holds or ms pass, and says whether it held.
async function until(cond, ms) {
  for (const end = Date.now() + ms; !(await cond()); await sleep(100)) if (Date.now() > end) return false;
  return true;
}

// ---------------------------------------------------------------- the document
const doc = JSON.parse(readFileSync(new URL("../openapi.json", import.meta.url)));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "openapi.json");
const routes = Object.keys(doc.paths).map((p) => ({
  path: p,
  re: new RegExp("^" + p.replace(/\{[^}]+\}/g, "[^/]+") + "$"),
}));
const esc = (s) => s.replaceAll("~", "~0").replaceAll("/", "~1");
const validators = new Map();
let validated = 0;

// conform fails unless the response (status, headers, JSON body) is what the document says.
function conform(method, url, status, headers, body) {
  const path = new URL(url).pathname.replace(/(.)\/$/, "$1");
  const route = routes.find((r) => r.re.test(path));
  assert(route, `${method} ${path}: no such path in openapi.json`);
  const op = doc.paths[route.path][method.toLowerCase()];
  assert(op, `${method} ${route.path}: no such operation in openapi.json`);
  let pointer = `/paths/${esc(route.path)}/${method.toLowerCase()}/responses/${status}`;
  let resp = op.responses[String(status)];
  assert(resp, `${method} ${route.path} answered ${status}, which openapi.json does not list`);
  if (resp.$ref) {
    pointer = resp.$ref.slice(1);
    resp = pointer.split("/").slice(1).reduce((o, k) => o[k.replaceAll("~1", "/").replaceAll("~0", "~")], doc);
  }
  for (const [name, h] of Object.entries(resp.headers ?? {})) {
    const header = h.$ref ? doc.components.headers[h.$ref.split("/").pop()] : h;
    assert(!header.required || headers.get(name) !== null, `${method} ${route.path} ${status}: header ${name} missing`);
  }
  const json = resp.content?.["application/json"];
  if (!json) {
    assert(body === "" || !resp.content, `${method} ${route.path} ${status}: a body where none is documented`);
    return;
  }
  const key = `${pointer}/content/application~1json/schema`;
  if (!validators.has(key)) validators.set(key, ajv.compile({ $ref: `openapi.json#${key}` }));
  const validate = validators.get(key);
  const value = JSON.parse(body);
  assert(validate(value), `${method} ${route.path} ${status}: body ${body.slice(0, 200)} does not match openapi.json: ${ajv.errorsText(validate.errors)}`);
  validated++;
}

// api calls the API and holds the answer to openapi.json.
async function api(base, method, path, token, body, headers = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  const res = await fetch(base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  conform(method, base + path, res.status, res.headers, text);
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

// ---------------------------------------------------------------- processes
const cleanup = [];
async function createDatabase(name) {
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  cleanup.push(async () => {
    const a = new pg.Client({ connectionString: PG_URL });
    await a.connect();
    await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await a.end();
  });
  const u = new URL(PG_URL);
  u.pathname = "/" + name;
  return u.toString();
}

function listen(server, port = 0, host) {
  return new Promise((resolve) => server.listen(port, host, () => resolve(server.address().port)));
}

// startBetterAuth runs a real Better Auth server signing with alg, on its own database.
// With basePath, its baseURL carries Better Auth's base path (http://host:port/api/auth),
// a form Better Auth accepts and the API must read as Better Auth does; plugins are added
// to its jwt plugin.
async function startBetterAuth(alg, dbURL, secret, basePath = "", plugins = []) {
  const server = http.createServer();
  const port = await listen(server, 0, "127.0.0.1");
  const baseURL = `http://127.0.0.1:${port}${basePath}`;
  const pool = new pg.Pool({ connectionString: dbURL, max: 4 });
  const keyPairConfig = { EdDSA: { alg, crv: "Ed25519" }, RS256: { alg, modulusLength: 2048 }, PS256: { alg, modulusLength: 2048 } }[alg] ?? { alg };
  const auth = betterAuth({
    baseURL,
    secret,
    database: pool,
    emailAndPassword: { enabled: true },
    trustedOrigins: [ALLOWED],
    plugins: [jwt({ jwks: { keyPairConfig, ...(alg === "EdDSA" ? { rotationInterval: ROTATION_SECONDS } : {}) } }), ...plugins],
    telemetry: { enabled: false },
  });
  const { runMigrations } = await getMigrations(auth.options);
  await runMigrations();
  server.on("request", toNodeHandler(auth));
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    // pool.end() resolves before its connections have closed, and the DROP DATABASE ... WITH (FORCE)
    // right after can still terminate one: without a listener that error would crash the run.
    pool.on("error", () => {});
    await pool.end();
  });
  // A browser sends Origin; Better Auth refuses a state-changing request without one.
  const client = createAuthClient({ baseURL, plugins: [jwtClient()], fetchOptions: { headers: { origin: ALLOWED } } });
  return { auth, baseURL, client };
}

// startAPI runs the binary with BETTER_AUTH_URL pointing at Better Auth, and returns its base URL;
// startLogs keeps, by base URL, what it logged up to listening.
const startLogs = new Map();
function startAPI(bin, env) {
  const child = spawn(bin, [], {
    env: { PATH: process.env.PATH, PORT: "0", CORS_ORIGINS: ALLOWED, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  cleanup.push(async () => {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (d) => {
      buf += d;
      const m = buf.match(/"msg":"listening","addr":"[^"]*:(\d+)"/);
      if (m) {
        startLogs.set(`http://127.0.0.1:${m[1]}`, buf);
        resolve(`http://127.0.0.1:${m[1]}`);
      }
    });
    child.once("exit", (code) => reject(new Error(`API exited with ${code}: ${stderr}`)));
    setTimeout(() => reject(new Error("API did not start within 20 s")), 20000);
  });
}

// signUp makes a user through Better Auth's own client and returns its id and session cookie.
async function signUp(client, name) {
  let cookie;
  const email = `${name}-${randomBytes(4).toString("hex")}@example.com`;
  const { data, error } = await client.signUp.email(
    { email, password: "correct-horse-battery-staple", name },
    { onSuccess: (ctx) => (cookie = ctx.response.headers.get("set-cookie")) },
  );
  assert(!error && data?.user?.id && cookie, `sign-up failed: ${JSON.stringify(error)}`);
  return { id: data.user.id, email, name, cookie: cookie.split(";")[0] };
}

// jwtOf gets a user's JWT the way a frontend does: authClient.token().
async function jwtOf(client, user) {
  const { data, error } = await client.token({ fetchOptions: { headers: { cookie: user.cookie } } });
  assert(!error && data?.token, `authClient.token() failed: ${JSON.stringify(error)}`);
  return data.token;
}

// jwtFromSession gets it the other way: the set-auth-jwt header of get-session.
async function jwtFromSession(client, user) {
  let token;
  await client.getSession({
    fetchOptions: { headers: { cookie: user.cookie }, onSuccess: (ctx) => (token = ctx.response.headers.get("set-auth-jwt")) },
  });
  assert(token, "get-session sent no set-auth-jwt header");
  return token;
}

// startPushService runs a push service in miniature on 127.0.0.1: it keeps each request
// (method, path, headers, body) and answers 201 with a Location, as one does (RFC 8030 §5).
async function startPushService() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201, { Location: `/message/${received.length}` }).end();
    });
  });
  const origin = `http://127.0.0.1:${await listen(server, 0, "127.0.0.1")}`;
  cleanup.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return { origin, received };
}

// remindSoon creates a task whose one reminder is 2 s ahead. A moment already past at the insert
// never fires (no next_reminder_at): on a machine too busy for 2 s, it tries further ahead.
async function remindSoon(base, user, token, body) {
  for (const lead of [2000, 5000, 15000]) {
    const at = new Date(Date.now() + lead).toISOString();
    const r = await api(base, "POST", `/api/${user.id}/tasks`, token, { ...body, reminders: [{ at }] });
    assert(r.status === 201, `create with a reminder: ${r.status} ${JSON.stringify(r.body)}`);
    if (r.body.next_reminder_at) return { task: r.body, at };
  }
  throw new Error("a reminder 15 s ahead was past by the time its task was inserted");
}

function tamper(token) {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url"));
  claims.sub = "someone-else";
  return [h, Buffer.from(JSON.stringify(claims)).toString("base64url"), s].join(".");
}

// ---------------------------------------------------------------- the suite
async function main() {
  const bin = new URL("./.bin/tasks", import.meta.url).pathname;
  execFileSync("go", ["build", "-o", bin, "."], { cwd: new URL("..", import.meta.url).pathname, stdio: "inherit", env: { ...process.env, CGO_ENABLED: "0" } });
  const run = `e2e_${process.pid}`;
  const secret = randomBytes(32).toString("base64");

  // One Better Auth server and one API per algorithm, started together.
  const stacks = Object.fromEntries(
    await Promise.all(
      ALGS.map(async (alg) => {
        const db = await createDatabase(`${run}_${alg.toLowerCase()}`);
        // Two of the five give BETTER_AUTH_URL with Better Auth's base path, as Better Auth accepts it.
        const ba = await startBetterAuth(alg, db, secret, alg === "ES256" || alg === "PS256" ? "/api/auth" : "");
        // Five stacks share the machine's PostgreSQL (100 connections): small pools.
        const apiDB = new URL(db);
        apiDB.searchParams.set("pool_max_conns", "4");
        const base = await startAPI(bin, { DATABASE_URL: apiDB.toString(), BETTER_AUTH_URL: ba.baseURL, BETTER_AUTH_SECRET: secret });
        return [alg, { ...ba, base, db: apiDB.toString() }];
      }),
    ),
  );
  const main = stacks.EdDSA;
  console.log(`Better Auth ${main.baseURL}, API ${main.base}; ${ALGS.length} stacks up`);

  const a = await signUp(main.client, "alice");
  const b = await signUp(main.client, "bob");
  const ta = await jwtOf(main.client, a);
  const tb = await jwtFromSession(main.client, b);
  let taskA;

  await check("health and readiness", async () => {
    assert((await api(main.base, "GET", "/healthz")).status === 200, "healthz");
    assert((await api(main.base, "GET", "/readyz")).status === 200, "readyz");
  });
  await check("token from authClient.token(): the whole lifecycle for A", async () => {
    taskA = await lifecycle(main.base, a, ta, conform);
  });
  await check("token from get-session's set-auth-jwt: the whole lifecycle for B", async () => {
    await lifecycle(main.base, b, tb, conform);
  });
  await check("isolation: B cannot read or change A's task; A's path with B's token is 403", async () => {
    const mine = `/api/${b.id}/tasks/${taskA.id}`;
    for (const [method, suffix, body] of [["GET", ""], ["PATCH", "", { title: "hijack" }], ["DELETE", ""], ["PATCH", "/complete"]]) {
      const r = await api(main.base, method, mine + suffix, tb, body);
      assert(r.status === 404, `${method} A's task under B's path: ${r.status}`);
      const f = await api(main.base, method, `/api/${a.id}/tasks/${taskA.id}${suffix}`, tb, body);
      assert(f.status === 403, `${method} A's path with B's token: ${f.status}`);
    }
    const list = await api(main.base, "GET", `/api/${b.id}/tasks`, tb);
    assert(!list.body.some((t) => t.id === taskA.id), "B's list shows A's task");
    const still = await api(main.base, "GET", `/api/${a.id}/tasks/${taskA.id}`, ta);
    assert(still.status === 200 && still.body.title === taskA.title, "A's task changed");
  });
  await check("no token, a garbage token: 401 with WWW-Authenticate", async () => {
    for (const tok of [undefined, "not-a-jwt"]) {
      const r = await api(main.base, "GET", `/api/${a.id}/tasks`, tok);
      assert(r.status === 401 && r.headers.get("www-authenticate") === 'Bearer error="invalid_token"', `${r.status}`);
    }
  });

  for (const alg of ALGS) {
    const s = stacks[alg];
    const form = s.baseURL.endsWith("/api/auth") ? " (BETTER_AUTH_URL with its base path)" : "";
    await check(`${alg}${form}: Better Auth's token accepted; expired, tampered, other audience refused`, async () => {
      const u = await signUp(s.client, `user-${alg.toLowerCase()}`);
      const token = await jwtOf(s.client, u);
      assert(decodeProtectedHeader(token).alg === alg, `Better Auth signed with ${decodeProtectedHeader(token).alg}`);
      const path = `/api/${u.id}/tasks`;
      const ok = await api(s.base, "GET", path, token);
      assert(ok.status === 200, `valid token: ${ok.status}`);
      const now = Math.floor(Date.now() / 1000);
      const expired = (await s.auth.api.signJWT({ body: { payload: { sub: u.id, iat: now - 3600, exp: now - 120 } } })).token;
      const otherAud = (await s.auth.api.signJWT({ body: { payload: { sub: u.id, aud: "https://other-service.example" } } })).token;
      for (const [what, tok] of [["expired", expired], ["tampered", tamper(token)], ["another audience", otherAud]]) {
        const r = await api(s.base, "GET", path, tok);
        assert(r.status === 401, `${what}: ${r.status}`);
      }
    });
  }

  await check("key rotation: a new kid from Better Auth is accepted without restarting the API", async () => {
    const old = await jwtOf(main.client, a);
    const oldKid = decodeProtectedHeader(old).kid;
    assert((await api(main.base, "GET", `/api/${a.id}/tasks`, old)).status === 200, "old key");
    await new Promise((r) => setTimeout(r, (ROTATION_SECONDS + 1) * 1000));
    const fresh = await jwtOf(main.client, a);
    const newKid = decodeProtectedHeader(fresh).kid;
    assert(newKid !== oldKid, `Better Auth did not rotate (kid ${newKid})`);
    assert((await api(main.base, "GET", `/api/${a.id}/tasks`, fresh)).status === 200, "new key");
    assert((await api(main.base, "GET", `/api/${a.id}/tasks`, old)).status === 200, "old key after rotation");
  });

  await check("HS256 minted as a Next.js route does (jose SignJWT, BETTER_AUTH_SECRET) is accepted", async () => {
    const token = await new SignJWT({ email: a.email, name: a.name })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(a.id)
      .setIssuedAt()
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(secret));
    const r = await api(main.base, "GET", `/api/${a.id}/tasks`, token);
    assert(r.status === 200 && r.body.length >= 1, `${r.status}`);
  });

  await check("Web Push: a reminder reaches a push service, which an independent implementation decrypts", async () => {
    const keys = Object.fromEntries(execFileSync(bin, ["vapid-keys"], { encoding: "utf8" }).trim().split("\n").map((l) => l.split("=")));
    const db = new URL(await createDatabase(`${run}_push`));
    db.searchParams.set("pool_max_conns", "4");
    const subject = "mailto:e2e@example.com";
    const base = await startAPI(bin, { DATABASE_URL: db.toString(), BETTER_AUTH_URL: main.baseURL, BETTER_AUTH_SECRET: secret,
      VAPID_PRIVATE_KEY: keys.VAPID_PRIVATE_KEY, VAPID_SUBJECT: subject, WEB_PUSH_ALLOW_PRIVATE: "1" });
    assert((await api(base, "GET", "/api/vapid-public-key")).body.public_key === keys.VAPID_PUBLIC_KEY, "GET /api/vapid-public-key is not vapid-keys' public key");
    // The subscriber, as a browser makes one (RFC 8291 §2): a P-256 pair and 16 random bytes.
    const push = await startPushService();
    const browserKey = createECDH("prime256v1");
    browserKey.generateKeys();
    const authSecret = randomBytes(16);
    const endpoint = `${push.origin}/push/${randomBytes(8).toString("hex")}`;
    const u = await signUp(main.client, "pushed");
    const token = await jwtOf(main.client, u);
    const sub = await api(base, "POST", `/api/${u.id}/push-subscriptions`, token, { endpoint, expirationTime: null,
      keys: { p256dh: browserKey.getPublicKey().toString("base64url"), auth: authSecret.toString("base64url") } });
    assert(sub.status === 201, `subscribe: ${sub.status} ${JSON.stringify(sub.body)}`);
    const { task, at } = await remindSoon(base, u, token, { title: "Call the dentist", due_date: "2027-03-01" });
    assert(await until(() => push.received.length > 0, 30000), "no push within 30 s of the reminder");
    await sleep(3000); // time for a second push, which must not come
    assert(push.received.length === 1, `${push.received.length} pushes, want 1`);
    const [got] = push.received;
    const h = got.headers;
    assert(got.method === "POST" && got.path === new URL(endpoint).pathname, `${got.method} ${got.path}`);
    assert(h["content-encoding"] === "aes128gcm" && h.urgency === "high" && /^[1-9][0-9]*$/.test(h.ttl) && /^[A-Za-z0-9_-]{1,32}$/.test(h.topic ?? ""),
      `headers ${JSON.stringify(h)}`);
    // VAPID (RFC 8292): an ES256 JWT for the push service's origin, checked with the key k= names.
    const vapid = /^vapid t=([\w.-]+), *k=([\w-]+)$/.exec(h.authorization ?? "");
    assert(vapid && vapid[2] === keys.VAPID_PUBLIC_KEY, `Authorization ${h.authorization}`);
    const point = Buffer.from(vapid[2], "base64url");
    const key = await importJWK({ kty: "EC", crv: "P-256", x: point.subarray(1, 33).toString("base64url"), y: point.subarray(33).toString("base64url") }, "ES256");
    const { payload: claims } = await jwtVerify(vapid[1], key, { algorithms: ["ES256"], audience: push.origin });
    const now = Date.now() / 1000;
    assert(claims.sub === subject && claims.exp > now && claims.exp <= now + 24 * 3600, `VAPID claims ${JSON.stringify(claims)}`);
    // RFC 8291's aes128gcm, decrypted by http_ece (web-push's) with the subscriber's private key and auth secret.
    const payload = JSON.parse(ece.decrypt(got.body, { version: "aes128gcm", privateKey: browserKey, authSecret }).toString("utf8"));
    const want = { type: "reminder", task: { id: task.id, title: "Call the dentist", due_date: "2027-03-01" }, at: payload.at };
    assert(JSON.stringify(payload) === JSON.stringify(want) && Date.parse(payload.at) === Date.parse(at), `payload ${JSON.stringify(payload)}, reminder at ${at}`);
  });

  // A second replica of the main API, on the same database, for the live stream across replicas;
  // and, with E2E_PGBOUNCER (host:port of a transaction-mode PgBouncer, as CI runs), a third one
  // through it with no DATABASE_DIRECT_URL, whose streams fall back to polling.
  const replicas = [["replica 2", await startAPI(bin, { DATABASE_URL: main.db, BETTER_AUTH_URL: main.baseURL, BETTER_AUTH_SECRET: secret })]];
  if (process.env.E2E_PGBOUNCER) {
    const pooled = new URL(main.db);
    pooled.host = process.env.E2E_PGBOUNCER;
    const base = await startAPI(bin, { DATABASE_URL: pooled.toString(), BETTER_AUTH_URL: main.baseURL, BETTER_AUTH_SECRET: secret });
    await check("a replica behind PgBouncer without DATABASE_DIRECT_URL says at start that its live updates poll", async () => {
      assert(/"msg":"live updates poll [^"]*DATABASE_URL reaches a transaction-mode pooler/.test(startLogs.get(base)), startLogs.get(base));
    });
    replicas.push(["replica 3 (PgBouncer, polling)", base]);
  } else {
    console.log("SKIP  a replica behind PgBouncer: set E2E_PGBOUNCER=host:port (CI does)");
  }
  const mcp = await startMCP(bin, run, secret);
  await browser(main.base, replicas, a, ta, mcp);

  const passed = results.filter(Boolean).length;
  console.log(`\n${validated} responses validated against openapi.json`);
  return [passed, results.length - passed];
}

// browser opens a page from the allowed origin and one from another origin in
// headless Chromium; each calls the API with fetch and a Bearer token.
async function browser(base, replicas, user, token, mcp) {
  const html = (name) => readFileSync(new URL(`./${name}.html`, import.meta.url));
  const page = html("page");
  const pages = { "/sync": html("sync"), "/notify": html("notify") };
  const serve = (req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end(pages[new URL(req.url, ALLOWED).pathname] ?? page);
  };
  const servers = [http.createServer(serve), http.createServer(serve)];
  await listen(servers[0], 3000);
  await listen(servers[1], 3001);
  cleanup.push(async () => servers.forEach((s) => s.close()));
  const b = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  cleanup.push(() => b.close());
  const run = async (origin) => {
    const p = await b.newPage();
    await p.goto(`${origin}/#` + new URLSearchParams({ api: base, user: user.id, token }));
    await p.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const result = await p.evaluate(() => window.result);
    await p.close();
    return result;
  };
  await check("Chromium, allowed origin: create, list, toggle, delete through fetch", async () => {
    const r = await run(ALLOWED);
    assert(!r.error, `the page's fetch failed: ${r.error}`);
    for (const step of r.steps) conform(step.method, base + step.path, step.status, new Headers(step.headers), step.body);
    assert(r.steps.map((s) => s.status).join(",") === "201,200,200,204", `statuses ${r.steps.map((s) => s.status)}`);
    assert(r.steps[1].headers["x-total-count"], "X-Total-Count not exposed to the page");
  });
  await check("Chromium, two pages of one user as two devices: one writes, the other follows /changes to the same list", async () => {
    const open = async (role) => {
      const p = await b.newPage();
      await p.goto(`${ALLOWED}/sync#` + new URLSearchParams({ api: base, user: user.id, token, role }));
      return p;
    };
    const reader = await open("reader");
    await reader.waitForFunction(() => window.synced || window.result !== undefined, null, { timeout: 15000 });
    const writer = await open("writer");
    await writer.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const wrote = await writer.evaluate(() => window.result);
    await reader.evaluate(() => (window.stopSync = true));
    await reader.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const read = await reader.evaluate(() => window.result);
    await Promise.all([writer.close(), reader.close()]);
    assert(!wrote.error && !read.error, `a page failed: ${wrote.error || read.error}`);
    for (const step of [...wrote.steps, ...read.steps]) conform(step.method, base + step.path, step.status, new Headers(step.headers), step.body);
    const statuses = wrote.steps.map((s) => s.status).join(",");
    assert(statuses === "201,201,201,201,201,201,200,200,200,204,422,204", `the writer's statuses: ${statuses}`);
    assert(wrote.steps[8].headers["idempotent-replayed"] === "true", "the retried toggle was not a replay");
    const pulls = read.steps.filter((s) => s.status === 200).length;
    const byID = (ts) => JSON.stringify([...ts].sort((x, y) => x.id - y.id));
    const list = (await api(base, "GET", `/api/${user.id}/tasks`, token)).body;
    assert(byID(read.tasks) === byID(list), `the reader holds ${byID(read.tasks)}\nthe list is ${byID(list)}\nafter ${read.steps.map((s) => `${s.status} ${s.path} ${s.body.slice(0, 80)}`).join("\n")}`);
    assert(list.some((t) => t.title === "edited on the laptop" && t.due_date === "2027-02-01") && list.some((t) => t.completed_at), "the writes are not in the list");
    console.log(`        the reader pulled ${read.steps.length} times (${pulls} pages, ${read.steps.length - pulls} answered 304)`);
  });
  for (const [name, replica] of replicas) await check(`Chromium, two replicas: a page's writes through replica 1 reach the other page's event stream on ${name}, which is cut once and resumes`, async () => {
    const open = async (role, api) => {
      const p = await b.newPage();
      await p.goto(`${ALLOWED}/sync#` + new URLSearchParams({ api, user: user.id, token, role }));
      return p;
    };
    const live = await open("live", replica);
    await live.waitForFunction(() => window.synced || window.result !== undefined, null, { timeout: 15000 });
    const writer = await open("writer", base);
    await writer.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const wrote = await writer.evaluate(() => window.result);
    const list = (await api(base, "GET", `/api/${user.id}/tasks`, token)).body;
    const byID = (ts) => JSON.stringify([...ts].sort((x, y) => x.id - y.id));
    // The stream carries every write: the page comes to hold the list, then stops.
    await live.waitForFunction((want) => window.result !== undefined || window.copy?.() === want, byID(list), { timeout: 15000 });
    await live.evaluate(() => (window.stopSync = true));
    await live.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const got = await live.evaluate(() => window.result);
    await Promise.all([writer.close(), live.close()]);
    assert(!wrote.error && !got.error, `a page failed: ${wrote.error || got.error}`);
    for (const step of wrote.steps) conform(step.method, base + step.path, step.status, new Headers(step.headers), step.body);
    assert(got.cut && got.steps.length >= 2 && got.steps.every((s) => s.status === 200), `the stream was not cut and resumed: ${JSON.stringify(got.steps)}`);
    assert(byID(got.tasks) === byID(list), `the live page holds ${byID(got.tasks)}\nthe list is ${byID(list)}`);
    const lags = Object.entries(wrote.wrote).map(([id, at]) => (got.seen[id] ? `${got.seen[id] - at}` : "never (deleted first)"));
    console.log(`        created through replica 1, on ${name}'s stream after (ms): ${lags.join(", ")}`);
  });
  await check("Chromium, two pages of one user: one nests a task and reorders three with the move route; the other's event stream draws the same tree", async () => {
    const open = async (role) => {
      const p = await b.newPage();
      await p.goto(`${ALLOWED}/sync#` + new URLSearchParams({ api: base, user: user.id, token, role }));
      return p;
    };
    const live = await open("live");
    await live.waitForFunction(() => window.synced || window.result !== undefined, null, { timeout: 15000 });
    const writer = await open("tree");
    await writer.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const wrote = await writer.evaluate(() => window.result);
    const list = (await api(base, "GET", `/api/${user.id}/tasks?sort=position`, token)).body;
    const byID = (ts) => JSON.stringify([...ts].sort((x, y) => x.id - y.id));
    await live.waitForFunction((want) => window.result !== undefined || window.copy?.() === want, byID(list), { timeout: 15000 });
    await live.evaluate(() => (window.stopSync = true));
    await live.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const got = await live.evaluate(() => window.result);
    await Promise.all([writer.close(), live.close()]);
    assert(!wrote.error && !got.error, `a page failed: ${wrote.error || got.error}`);
    for (const step of wrote.steps) conform(step.method, base + step.path, step.status, new Headers(step.headers), step.body);
    const statuses = wrote.steps.map((s) => s.status).join(",");
    assert(statuses === "201,201,201,201,200,200,200,200,200", `the tree page's statuses: ${statuses}`);
    const tree = draw(list);
    assert(got.tree === tree, `the live page draws\n${got.tree}\nthe database's list\n${tree}`);
    const mine = tree.split("\n").filter((l) => l.trim().startsWith("tree "));
    assert(mine.join("|") === "tree C|tree A|  tree nested|tree B", `the moved tasks stand as ${mine.join("|")}`);
  });
  await check("Chromium, notification permission granted: a reminder over the event stream shows one Notification", async () => {
    const context = await b.newContext();
    try {
      await context.grantPermissions(["notifications"], { origin: ALLOWED });
      const p = await context.newPage();
      // Count what the page constructs, and whether Chromium then fired show or error.
      await p.addInitScript(() => {
        const Real = window.Notification;
        window.made = [];
        window.Notification = class extends Real {
          constructor(title, options) {
            super(title, options);
            const n = { title, tag: options?.tag, event: null };
            window.made.push(n);
            this.addEventListener("show", () => (n.event ??= "show"));
            this.addEventListener("error", () => (n.event ??= "error"));
          }
        };
      });
      await p.goto(`${ALLOWED}/notify#` + new URLSearchParams({ api: base, user: user.id, token }));
      await p.waitForFunction(() => window.synced || window.error, null, { timeout: 15000 });
      const start = await p.evaluate(() => ({ permission: window.permission, error: window.error }));
      assert(!start.error && start.permission === "granted", `the page: ${JSON.stringify(start)}`);
      const { task, at } = await remindSoon(base, user, token, { title: "Water the plants" });
      const mine = (made) => made.filter((n) => n.tag?.startsWith(`reminder-${task.id}-`));
      assert(await until(async () => mine(await p.evaluate(() => window.made)).length > 0 || (await p.evaluate(() => window.error)), 30000),
        "no Notification within 30 s of the reminder");
      await sleep(3000); // time for a second one, which must not come
      const { made, error } = await p.evaluate(() => ({ made: window.made, error: window.error }));
      assert(!error, `the page's stream failed: ${error}`);
      assert(made.length === 1 && mine(made).length === 1, `Notifications made: ${JSON.stringify(made)}`);
      assert(made[0].title === "Water the plants" && Date.parse(made[0].tag.slice(`reminder-${task.id}-`.length)) === Date.parse(at), JSON.stringify(made[0]));
      console.log(`        Chromium fired ${made[0].event ?? "neither show nor error"} for it`);
    } finally {
      await context.close();
    }
  });
  await check("Chromium, origin not in CORS_ORIGINS: the browser blocks the call", async () => {
    const before = (await api(base, "GET", `/api/${user.id}/tasks`, token)).body.length;
    const r = await run(REFUSED);
    assert(r.error && r.steps.length === 0, `the page's fetch was not blocked: ${JSON.stringify(r)}`);
    const after = (await api(base, "GET", `/api/${user.id}/tasks`, token)).body.length;
    assert(after === before, "a blocked page still created a task");
  });
  await mcpChecks(b, mcp);
}

// ---------------------------------------------------------------- MCP
// startMCP runs an API with MCP_URL (its /mcp, on a port chosen first) and a Better Auth whose
// OAuth provider plugin issues access tokens for that resource to MCP clients it registers as they ask.
async function startMCP(bin, run, secret) {
  const free = http.createServer();
  const port = await listen(free, 0, "127.0.0.1");
  await new Promise((r) => free.close(r));
  const url = `http://127.0.0.1:${port}/mcp`;
  const db = await createDatabase(`${run}_mcp`);
  const ba = await startBetterAuth("ES256", db, secret, "", [oauthProvider({ loginPage: "/sign-in", consentPage: "/consent", resources: [url],
    clientRegistrationDefaultResources: [url], allowDynamicClientRegistration: true, allowUnauthenticatedClientRegistration: true })]);
  const apiDB = new URL(db);
  apiDB.searchParams.set("pool_max_conns", "4");
  const base = await startAPI(bin, { PORT: String(port), DATABASE_URL: apiDB.toString(), BETTER_AUTH_URL: ba.baseURL, BETTER_AUTH_SECRET: secret, MCP_URL: url });
  return { ...ba, base, url };
}

// OAuthClient is an MCP client's OAuth side as the SDK asks for one (OAuthClientProvider): a native app
// registered dynamically with a loopback redirect, as Claude Code is, which keeps what it is given.
class OAuthClient {
  redirectUrl = "http://127.0.0.1:33418/callback";
  clientMetadata = { application_type: "native", client_name: "tasks e2e agent", redirect_uris: [this.redirectUrl],
    grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], token_endpoint_auth_method: "none" };
  clientInformation() { return this.client; }
  saveClientInformation(client) { this.client = client; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  redirectToAuthorization(url) { this.authorization = url; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
}

// signInMCP runs the OAuth flow of an MCP client with Better Auth: the SDK finds Better Auth from /mcp's 401
// and metadata, registers, and sends the user to authorize; the user, signed in (by cookie), consents; the SDK
// exchanges the code with its PKCE verifier for an access token. It returns the client's OAuth side.
async function signInMCP(mcp, user) {
  const provider = new OAuthClient();
  let refused;
  try {
    await new MCPClient({ name: "tasks-e2e", version: "1" }).connect(new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider }));
  } catch (err) {
    refused = err;
  }
  assert(refused instanceof UnauthorizedError && provider.authorization, `connect without a token: ${refused}`);
  assert(provider.authorization.searchParams.get("resource") === mcp.url, `authorize asks for ${provider.authorization}`);
  // The user's browser: authorize (Better Auth answers a fetch with JSON), then the consent page's "allow".
  const headers = { cookie: user.cookie, origin: ALLOWED, "Content-Type": "application/json" };
  const consent = new URL((await (await fetch(provider.authorization, { headers })).json()).url, mcp.baseURL);
  assert(consent.pathname === "/consent", `authorize sent the user to ${consent}`);
  const allowed = await fetch(`${mcp.baseURL}/api/auth/oauth2/consent`, { method: "POST", headers, body: JSON.stringify({ accept: true, oauth_query: consent.search.slice(1) }) });
  const back = new URL((await allowed.json()).url);
  assert(back.origin + back.pathname === provider.redirectUrl && back.searchParams.get("code"), `consent sent the user to ${back}`);
  await new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider }).finishAuth(back.searchParams.get("code"));
  return provider;
}

// mcpChecks: the SDK's client, signed in through Better Auth's OAuth provider, lists the tools, adds three
// tasks, completes one and lists the pending ones, while a page of the same user follows on its event stream.
async function mcpChecks(b, mcp) {
  const user = await signUp(mcp.client, "agent-user");
  const token = await jwtOf(mcp.client, user);
  let provider;
  await check("MCP: Better Auth's OAuth provider signs the SDK's client in (metadata, registration, PKCE, consent); its JWT works at /mcp only", async () => {
    const meta = await api(mcp.base, "GET", "/.well-known/oauth-protected-resource");
    assert(meta.body.resource === mcp.url && meta.body.authorization_servers[0] === `${mcp.baseURL}/api/auth`, JSON.stringify(meta.body));
    provider = await signInMCP(mcp, user);
    const access = provider.tokens().access_token;
    const claims = JSON.parse(Buffer.from(access.split(".")[1], "base64url"));
    assert(decodeProtectedHeader(access).typ === "at+jwt" && claims.sub === user.id && [claims.aud].flat().includes(mcp.url) && claims.iss === `${mcp.baseURL}/api/auth`,
      `the access token: ${JSON.stringify(decodeProtectedHeader(access))} ${JSON.stringify(claims)}`);
    const r = await api(mcp.base, "GET", `/api/${user.id}/tasks`, access);
    assert(r.status === 401, `the MCP client's token at the API: ${r.status}`);
  });
  await check("MCP: the SDK's client lists the tools, adds three tasks, completes one, lists the pending ones; a page's event stream shows each change", async () => {
    const page = await b.newPage();
    await page.goto(`${ALLOWED}/sync#` + new URLSearchParams({ api: mcp.base, user: user.id, token, role: "live" }));
    await page.waitForFunction(() => window.synced || window.result !== undefined, null, { timeout: 15000 });
    const transport = new StreamableHTTPClientTransport(new URL(mcp.url), { authProvider: provider });
    const client = new MCPClient({ name: "tasks-e2e", version: "1" });
    await client.connect(transport);
    try {
      assert(transport.protocolVersion === "2025-11-25", `negotiated ${transport.protocolVersion}`);
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name).join(",");
      assert(names === "list_tasks,get_task,add_tasks,update_task,complete_task,reopen_task,delete_task,move_task" && tools.every((t) => t.outputSchema && t.annotations), names);
      // callTool holds each result's structuredContent to the tool's outputSchema.
      const added = await client.callTool({ name: "add_tasks", arguments: { tasks: [{ title: "Buy milk", priority: "high", tags: ["home"] },
        { title: "Call mum", due_date: "2027-01-10" }, { title: "Water plants", due_date: "2027-01-10", recurrence: "FREQ=WEEKLY" }] } });
      assert(!added.isError && added.structuredContent.tasks.length === 3, JSON.stringify(added));
      const milk = added.structuredContent.tasks[0];
      const done = await client.callTool({ name: "complete_task", arguments: { id: milk.id, idempotency_key: crypto.randomUUID() } });
      assert(!done.isError && done.structuredContent.completed, JSON.stringify(done));
      const pending = await client.callTool({ name: "list_tasks", arguments: { status: "pending", sort: "title", order: "asc" } });
      const titles = pending.structuredContent.tasks.map((t) => t.title).join(",");
      assert(titles === "Call mum,Water plants" && pending.content[0].text.includes("Call mum"), `pending: ${titles}; ${pending.content[0].text}`);
    } finally {
      await client.close();
    }
    const list = (await api(mcp.base, "GET", `/api/${user.id}/tasks`, token)).body;
    const byID = (ts) => JSON.stringify([...ts].sort((x, y) => x.id - y.id));
    await page.waitForFunction((want) => window.result !== undefined || window.copy?.() === want, byID(list), { timeout: 15000 });
    await page.evaluate(() => (window.stopSync = true));
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 15000 });
    const got = await page.evaluate(() => window.result);
    await page.close();
    assert(!got.error && byID(got.tasks) === byID(list) && got.tasks.some((t) => t.title === "Buy milk" && t.completed), `the page holds ${byID(got.tasks)}\nthe list is ${byID(list)}`);
  });
  await check("MCP: an app's own agent with the user's jwt-plugin token; a token for another audience refused; 2025-06-18 negotiated", async () => {
    const client = new MCPClient({ name: "app-agent", version: "1" });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcp.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } }));
    try {
      const all = await client.callTool({ name: "list_tasks", arguments: {} });
      assert(all.structuredContent.tasks.length === 3, JSON.stringify(all.structuredContent));
      const bad = await client.callTool({ name: "get_task", arguments: { id: 0 } });
      assert(bad.isError && bad.content[0].text.includes("Input should be a positive integer"), JSON.stringify(bad));
    } finally {
      await client.close();
    }
    const post = (tok, body) => fetch(mcp.url, { method: "POST", body: JSON.stringify(body),
      headers: { Authorization: `Bearer ${tok}`, "Content-Type": "application/json", Accept: "application/json, text/event-stream" } });
    const other = (await mcp.auth.api.signJWT({ body: { payload: { sub: user.id, iss: `${mcp.baseURL}/api/auth`, aud: "https://other-service.example/mcp" } } })).token;
    const r = await post(other, { jsonrpc: "2.0", id: 1, method: "ping" });
    assert(r.status === 401 && r.headers.get("www-authenticate") === `Bearer resource_metadata="${new URL(mcp.url).origin}/.well-known/oauth-protected-resource", error="invalid_token"`,
      `a token for another audience: ${r.status} ${r.headers.get("www-authenticate")}`);
    const init = await (await post(token, { jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "old", version: "1" } } })).json();
    assert(init.result.protocolVersion === "2025-06-18", JSON.stringify(init));
  });
}

// draw is the tree as the README's tree() orders it, as sync.html's draw.
function draw(tasks) {
  const kids = new Map();
  for (const t of tasks) kids.set(t.parent_id ?? 0, [...(kids.get(t.parent_id ?? 0) ?? []), t]);
  const lines = [];
  const walk = (parent, depth) =>
    (kids.get(parent) ?? [])
      .sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : a.id - b.id))
      .forEach((t) => {
        lines.push("  ".repeat(depth) + t.title);
        walk(t.id, depth + 1);
      });
  walk(0, 0);
  return lines.join("\n");
}

let code = 1;
try {
  const [passed, failed] = await main();
  console.log(`${passed} passed, ${failed} failed`);
  code = failed === 0 ? 0 : 1;
} catch (err) {
  console.log(`FAIL  setup: ${err.stack}`);
  console.log(`${results.filter(Boolean).length} passed, ${results.filter((r) => !r).length + 1} failed`);
} finally {
  for (const f of cleanup.reverse()) await f().catch(() => {});
}
process.exit(code);
