#!/usr/bin/env node
// The official TypeScript SDK's own worker against the server: a graceful stop must reach it
// (docs/contract.md §3.3, issue 19).
//
// Supported SDK releases: `@anthropic-ai/sdk` >= 0.97.0, the first release with the
// self-hosted environments worker (`client.beta.environments.work.worker`); .ci/run runs this
// check against 0.97.0 and against the newest release (1.17.0 when this was written). Only the
// SDK's public API is used. This script installs nothing: point it at an npm prefix that has
// the SDK installed, e.g.
//
//     npm install --no-save --prefix /tmp/sdk-1.17.0 @anthropic-ai/sdk@1.17.0
//     node scripts/sdk_worker.mjs --sdk /tmp/sdk-1.17.0 --spawn PATH/TO/worklease-server
//
// `--spawn` starts the server on a free loopback port with `--default-ttl-seconds 10` (so the
// SDK's lease loop beats every 5 s) and stops it at the end; instead, `--url URL` uses a
// running server, with its token in WORKLEASE_TOKEN. Without `--sdk` the SDK is resolved from
// the current directory.
//
// The check: one item is created (through the SDK's generic `client.post`, as the SDK has no
// method for it), and the SDK's worker (`client.beta.environments.work.worker(...).run()`: its
// poller, its lease loop, its session runner) claims it and serves it. While it serves, the
// item is stopped gracefully (`work.stop`): the worker must stop serving within two heartbeat
// intervals (the SDK beats every ttl/2, at most 30 s), confirm the stop, and the item must end
// `stopped`. The worker also reads the item's session from the sessions API, which this server
// does not have: the client's `fetch` answers those few requests itself (a running session
// with no events, whose event stream stays open while the worker serves it) and passes every
// other request to the server.
//
// A second check drains a queue with the SDK's `WorkPoller` holding an environment key only.
//
// Prints `ok: ...` per check; exits non-zero with `FAILED: ...` on the first unexpected answer.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const TTL_SECONDS = 10;
const TOKEN = 'sdk-worker-token';

class Failed extends Error {}

function check(condition, message) {
  if (!condition) throw new Failed(message);
  console.log(`ok: ${message}`);
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function parseArgs(argv) {
  const args = { sdk: process.cwd(), spawn: null, url: null };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--sdk' && value) args.sdk = resolve(value);
    else if (flag === '--spawn' && value) args.spawn = resolve(value);
    else if (flag === '--url' && value) args.url = value;
    else {
      console.error('usage: node scripts/sdk_worker.mjs [--sdk NPM_PREFIX] (--spawn PATH/TO/worklease-server | --url URL)');
      process.exit(2);
    }
    i++;
  }
  if (!args.spawn === !args.url) {
    console.error('exactly one of --spawn and --url');
    process.exit(2);
  }
  return args;
}

/** The SDK as installed under the npm prefix `prefix`. */
function loadSdk(prefix) {
  const require = createRequire(join(prefix, 'package.json'));
  const path = require.resolve('@anthropic-ai/sdk');
  const { version } = JSON.parse(readFileSync(join(dirname(path), 'package.json'), 'utf8'));
  const sdk = require(path);
  return { Anthropic: sdk.Anthropic ?? sdk.default, version };
}

/** Starts the server on a free port; resolves to it and the URL it printed. */
async function spawnServer(binary) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WORKLEASE_')));
  const server = spawn(
    binary,
    ['--listen', '127.0.0.1:0', '--token', TOKEN, '--default-ttl-seconds', String(TTL_SECONDS)],
    { env, stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const lines = createInterface({ input: server.stdout });
  const first = await new Promise((done) => {
    lines.once('line', done);
    server.once('exit', (code) => done(`nothing: it exited with ${code}`));
  });
  if (!first.startsWith('listening on ')) {
    server.kill();
    throw new Failed(`the server said ${JSON.stringify(first)}`);
  }
  return { server, url: first.slice('listening on '.length) };
}

/**
 * The client's `fetch`: answers the sessions API (`/v1/sessions/...`) itself and passes every
 * other request to the server, recording when the worker opened and closed the session's event
 * stream (serving the item), every heartbeat answer and every stop it sent.
 */
class FakeSessions {
  opened = null;
  closed = null;
  beats = [];
  stops = [];

  fetch = async (input, init = {}) => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    if (url.pathname.startsWith('/v1/sessions/')) {
      return this.#session(url.pathname.slice('/v1/sessions/'.length).split('/'), init.signal);
    }
    if (url.pathname.endsWith('/stop')) {
      this.stops.push({ at: performance.now(), body: init.body ? JSON.parse(init.body) : {} });
    }
    const response = await fetch(input, init);
    if (url.pathname.endsWith('/heartbeat') && response.status === 200) {
      this.beats.push({ at: performance.now(), ...(await response.clone().json()) });
    }
    return response;
  };

  #session([sessionId, ...rest], signal) {
    const json = (body) =>
      new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } });
    if (rest.length === 0) return json(fakeSession(sessionId));
    if (rest.join('/') === 'events') {
      return json({ data: [], has_more: false, first_id: null, last_id: null, next_page: null });
    }
    if (rest.join('/') === 'events/stream') {
      this.opened ??= performance.now();
      const close = () => (this.closed ??= performance.now());
      let timer;
      const body = new ReadableStream({
        start(controller) {
          const keepAlive = () => controller.enqueue(new TextEncoder().encode(': keep-alive\n\n'));
          keepAlive();
          timer = setInterval(keepAlive, 500);
          signal?.addEventListener('abort', () => {
            clearInterval(timer);
            close();
            controller.error(signal.reason ?? new Error('aborted'));
          });
        },
        cancel() {
          clearInterval(timer);
          close();
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
    }
    return new Response(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: 'fake' } }), {
      status: 404,
      headers: { 'content-type': 'application/json' },
    });
  }
}

function fakeSession(id) {
  return {
    type: 'session',
    id,
    status: 'running',
    title: null,
    metadata: {},
    resources: [],
    agent: {
      type: 'agent',
      id: 'agent_fake',
      version: 1,
      name: 'fake',
      skills: [],
      tools: [],
      mcp_servers: [],
      multiagent: null,
      model: { id: 'claude-fake' },
      system: null,
    },
    environment_id: null,
    created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z',
    archived_at: null,
  };
}

async function workerDrainsOnAGracefulStop(Anthropic, baseURL, token) {
  const sessions = new FakeSessions();
  const client = new Anthropic({ baseURL, authToken: token, apiKey: null, maxRetries: 0, fetch: sessions.fetch });
  const work = client.beta.environments.work;
  const env = await client.beta.environments.create({ name: 'sdk-worker', config: { type: 'self_hosted' } });
  const created = await client.post(`/v1/environments/${env.id}/work`, {
    body: { data: { type: 'session', id: 'sess_drain' } },
  });
  check(created.state === 'queued', `environments.create -> ${env.id}; create work (client.post) -> ${created.id}`);

  const workdir = mkdtempSync(join(tmpdir(), 'sdk-worker-'));
  const stopWorker = new AbortController();
  let ended = null;
  const running = work
    .worker({ environmentId: env.id, environmentKey: token, tools: [], workdir })
    .run(stopWorker.signal)
    .then(
      () => (ended = 'returned'),
      (error) => (ended = `threw ${error}`),
    );
  const until = async (what, condition, timeoutMs) => {
    const deadline = performance.now() + timeoutMs;
    while (!condition()) {
      if (ended) throw new Failed(`the SDK worker ended (${ended}) while ${what}`);
      if (performance.now() > deadline) {
        throw new Failed(`${what} within ${timeoutMs / 1000} s; heartbeats: ${JSON.stringify(sessions.beats)}`);
      }
      await sleep(20);
    }
  };
  try {
    // Older releases open the session before their first heartbeat is answered.
    await until('serving the item', () => sessions.opened !== null && sessions.beats.length > 0, 30_000);
    const first = sessions.beats[0];
    const intervalMs = Math.min((first.ttl_seconds * 1000) / 2, 30_000);
    check(
      first.lease_extended && first.state === 'active',
      `the SDK worker claimed ${created.id} with its lease loop (ttl ${first.ttl_seconds} s: a beat every ` +
        `${intervalMs / 1000} s) and serves its session`,
    );
    await sleep(1_000);
    const stopping = await work.stop(created.id, { environment_id: env.id });
    const stopAskedAt = performance.now();
    check(stopping.state === 'stopping', 'a graceful work.stop while it serves -> stopping');
    await until(
      `the worker stops serving after the graceful stop (2 heartbeat intervals, ${(2 * intervalMs) / 1000} s)`,
      () => sessions.closed !== null,
      2 * intervalMs,
    );
    const after = sessions.beats.filter((beat) => beat.at > stopAskedAt);
    const last = after.at(-1);
    check(
      last && last.state === 'stopping' && last.lease_extended === false,
      `the worker stopped serving ${((sessions.closed - stopAskedAt) / 1000).toFixed(2)} s after the stop, on a ` +
        `heartbeat answered ${last ? JSON.stringify({ state: last.state, lease_extended: last.lease_extended }) : 'never'}`,
    );
    const deadline = performance.now() + 10_000;
    let item;
    while ((item = await work.retrieve(created.id, { environment_id: env.id })).state !== 'stopped') {
      if (performance.now() > deadline) {
        throw new Failed(`the item is ${item.state}, not stopped, 10 s after the worker stopped serving`);
      }
      await sleep(100);
    }
    const confirmations = sessions.stops.filter((stop) => stop.at > stopAskedAt);
    check(
      confirmations.length > 0,
      `the item ends stopped (${item.stopped_at}): the worker confirmed the stop ` +
        `(${JSON.stringify(confirmations[0]?.body)})`,
    );
  } finally {
    stopWorker.abort();
    await Promise.race([running, sleep(10_000)]);
    rmSync(workdir, { recursive: true, force: true });
  }
}

/**
 * The SDK's `WorkPoller` with an environment key (docs/security.md): it drains a queue of
 * three items, claiming each with the key, and force-stops each after the loop body with the
 * `sessions_token` of the item's poll `secret` (the SDK's `autoStop`).
 */
async function workPollerDrainsWithAnEnvironmentKey(Anthropic, version, baseURL, token) {
  const admin = new Anthropic({ baseURL, authToken: token, apiKey: null, maxRetries: 0 });
  const env = await admin.beta.environments.create({ name: 'sdk-key', config: { type: 'self_hosted' } });
  const key = await admin.post(`/v1/environments/${env.id}/keys`, { body: { name: 'runner' } });
  check(key.key.startsWith('wlk_'), `an environment key ${key.id}, created with the admin token`);
  const ids = [];
  for (let n = 0; n < 3; n++) {
    const created = await admin.post(`/v1/environments/${env.id}/work`, {
      body: { data: { type: 'session', id: `sess_key${n}` } },
    });
    ids.push(created.id);
  }
  // The runner holds the environment key only.
  const runner = new Anthropic({ baseURL, authToken: 'not-a-credential', apiKey: null, maxRetries: 0 });
  const claimed = [];
  const poller = runner.beta.environments.work.poller({
    environmentId: env.id,
    environmentKey: key.key,
    drain: true,
    blockMs: null,
  });
  for await (const item of poller) {
    check(typeof item.secret === 'string' && item.secret.length > 0, `${item.id} came with a secret`);
    claimed.push(item.id);
  }
  check(
    JSON.stringify([...claimed].sort()) === JSON.stringify([...ids].sort()),
    `WorkPoller with environmentKey drained the queue (${claimed.length} items)`,
  );
  // The 1.x releases force-stop with the item's sessions_token (falling back to a graceful
  // stop with the key when it is refused); the 0.x ones stop gracefully with the key.
  const forced = Number(version.split('.')[0]) >= 1;
  for (const id of ids) {
    const item = await admin.beta.environments.work.retrieve(id, { environment_id: env.id });
    if (forced) {
      check(item.state === 'stopped', `${id} acked by the poller, then force-stopped with its sessions_token`);
    } else {
      check(item.state === 'stopping', `${id} acked by the poller, then stopped gracefully with the key`);
    }
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { Anthropic, version } = loadSdk(args.sdk);
  console.log(`@anthropic-ai/sdk ${version}, Node ${process.version}`);
  let server = null;
  try {
    let url = args.url;
    let token = process.env.WORKLEASE_TOKEN;
    if (args.spawn) {
      ({ server, url } = await spawnServer(args.spawn));
      token = TOKEN;
    }
    await workerDrainsOnAGracefulStop(Anthropic, url, token);
    console.log("the SDK's worker drained on a graceful stop");
    await workPollerDrainsWithAnEnvironmentKey(Anthropic, version, url, token);
  } catch (error) {
    console.error(`FAILED: ${error instanceof Failed ? error.message : error?.stack ?? error}`);
    process.exitCode = 1;
  } finally {
    server?.kill('SIGTERM');
  }
  // The SDK's poller may still hold a long poll open; nothing else is left to wait for.
  setTimeout(() => process.exit(), 1_000).unref();
}

await main();
