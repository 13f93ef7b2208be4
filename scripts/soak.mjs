#!/usr/bin/env node
// `npm run soak -- --minutes N [--concurrency C]`: continuous stream churn through a real hub and agent
// (the built dist/devstreams.mjs, loopback only) with injected faults, checking every byte.
// Faults, in turn: the control channel cut (a TCP proxy between agent and hub drops it for a while),
// the hub killed (SIGKILL) and restarted on the same port, the local service restarted; a share of
// the streams are slow readers throughout. Prints streams opened, refused, failed, bytes verified and
// corrupt, and the agent's RSS and descriptor count at start and end. Exit 1 if any byte was wrong,
// descriptors grew, or no stream succeeded.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { parse, stringify } from 'yaml';
import { procStats } from './proc-stats.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '12' },
    'fault-seconds': { type: 'string', default: '20' }, // mean time between two faults
    quiet: { type: 'boolean' },
    // Another build of the CLI (e.g. a copy, so a rebuild during a long run does not change it).
    cli: { type: 'string', default: join(ROOT, 'dist/devstreams.mjs') },
  },
});
const CLI = values.cli;
const minutes = Number(values.minutes);
const concurrency = Number(values.concurrency);
if (!(minutes > 0 && minutes <= 24 * 60) || !(concurrency >= 1 && concurrency <= 64)) {
  console.error('usage: npm run soak -- --minutes N (0 < N <= 1440) [--concurrency C (1-64)]');
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (...a) => values.quiet || console.log(`[soak ${((Date.now() - t0) / 1000).toFixed(0).padStart(5)} s]`, ...a);
const t0 = Date.now();
let stopping = false;
// Bounded no matter what: the run, plus two minutes to wind down.
setTimeout(() => {
  console.error('soak: hard deadline passed, giving up');
  cleanup();
  process.exit(3);
}, (minutes + 2) * 60_000).unref();

// ---------- processes
class Proc {
  constructor(args) {
    this.lines = [];
    this.child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = once(this.child, 'exit');
    for (const s of [this.child.stdout, this.child.stderr]) {
      let buf = '';
      s.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const l = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (this.lines.length > 2000) this.lines.shift();
          this.lines.push(l);
          this.onLine?.(l);
        }
      });
    }
  }
  waitFor(msg, timeoutMs = 20_000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${msg}" within ${timeoutMs} ms:\n${this.lines.slice(-20).join('\n')}`)), timeoutMs);
      const prev = this.onLine;
      this.onLine = (l) => {
        prev?.(l);
        if (l.includes(`"msg":"${msg}"`)) {
          clearTimeout(timer);
          this.onLine = prev;
          resolve(l);
        }
      };
    });
  }
  kill(sig = 'SIGKILL') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
    return this.exited;
  }
}
function run(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`devstreams ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
async function freePort() {
  const s = net.createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}
// ---------- the local service: an echo server that can be restarted on its port
class EchoService {
  constructor() {
    this.sockets = new Set();
  }
  async start(port = 0) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
      s.pipe(s);
    });
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
  }
  async restart(downMs) {
    for (const s of this.sockets) s.resetAndDestroy(); // as a crash would: RST to whoever was connected
    await new Promise((r) => this.server.close(r));
    await sleep(downMs);
    await this.start(this.port);
  }
  stop() {
    for (const s of this.sockets) s.destroy();
    this.server?.close();
  }
}

// ---------- a TCP proxy for the control channel only, that can be cut
class CutProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.down = false;
  }
  async start() {
    this.server = net.createServer((c) => {
      if (this.down) return c.destroy();
      const u = net.connect(this.targetPort, '127.0.0.1');
      const pair = [c, u];
      this.pairs.add(pair);
      const end = () => {
        this.pairs.delete(pair);
        c.destroy();
        u.destroy();
      };
      c.on('error', end).on('close', end);
      u.on('error', end).on('close', end);
      c.pipe(u);
      u.pipe(c);
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
  }
  cut() {
    this.down = true;
    for (const [c, u] of this.pairs) {
      c.destroy();
      u.destroy();
    }
  }
  restore() {
    this.down = false;
  }
  stop() {
    this.cut();
    this.server?.close();
  }
}

// ---------- setup
const dir = mkdtempSync(join(tmpdir(), 'devstreams-soak-'));
const hubPort = await freePort();
run(['hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${hubPort}`]);
const hubYaml = join(dir, 'hub.yaml');
{
  // The soak pushes far more stream requests than a device normally gets: lift the request rates,
  // and ping every 2 s so dead legs are found quickly.
  const cfg = parse(readFileSync(hubYaml, 'utf8'));
  cfg.relay = { pingIntervalMs: 2000 };
  try {
    const probe = { ...cfg, limits: { streamRequestsPerDevicePerSecond: 10_000, streamRequestsPerTokenPerSecond: 10_000 } };
    writeFileSync(hubYaml, stringify(probe), { mode: 0o600 });
    run(['hub', 'add-device', 'soak-probe', '--config', hubYaml]);
  } catch {
    writeFileSync(hubYaml, stringify(cfg), { mode: 0o600 }); // a hub without those limits
  }
}
const service = new EchoService();
await service.start();
run(['hub', 'add-device', 'soak', '--config', hubYaml, '--allow', `svc=${service.port}`]);
const token = readFileSync(join(dir, 'service.token'), 'utf8').trim();
const ca = readFileSync(join(dir, 'tls', 'ca.crt'));
const proxy = new CutProxy(hubPort);
await proxy.start();
const agentYaml = join(dir, 'devices', 'soak.yaml');
{
  const cfg = parse(readFileSync(agentYaml, 'utf8'));
  cfg.hub.url = `wss://localhost:${proxy.port}/mqtt`; // control channel through the proxy; relay direct
  cfg.hub.reconnect = { initialDelayMs: 200, maxDelayMs: 3000 };
  cfg.hub.pingIntervalMs = 2000;
  cfg.limits = { ...cfg.limits, maxStreams: 64 };
  cfg.log = { level: 'info' };
  writeFileSync(agentYaml, stringify(cfg), { mode: 0o600 });
}
let hub = new Proc(['hub', '--config', hubYaml]);
await hub.waitFor('hub listening');
const agent = new Proc(['agent', '--config', agentYaml]);
let agentLog = { reconnecting: 0, errors: 0 };
agent.onLine = (l) => {
  if (l.includes('"control channel reconnecting"')) agentLog.reconnecting++;
  if (l.includes('"level":50')) agentLog.errors++;
};
const httpsAgent = new https.Agent({ ca, keepAlive: true, maxSockets: 32 });

async function waitOnline(timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await api('GET', '/api/v1/devices');
      const d = r.body?.devices?.find((x) => x.id === 'soak');
      if (d?.online) return d;
    } catch {}
    await sleep(200);
  }
  throw new Error('agent did not come online');
}
function api(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : undefined;
    const req = https.request(
      { host: '127.0.0.1', servername: 'localhost', port: hubPort, method, path, agent: httpsAgent, timeout: 30_000,
        headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json' } : {}) } },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          let parsed;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString());
          } catch {}
          resolve({ status: res.statusCode, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}
await waitOnline();
const agentPid = agent.child.pid;
let agentExitedEarly = false;
agent.exited.then(([code, sig]) => {
  if (stopping) return;
  agentExitedEarly = true;
  console.error(`soak: the agent exited (${code ?? sig}) during the run; its last lines:\n${agent.lines.slice(-40).join('\n')}`);
  cleanup();
  process.exit(1);
});
await sleep(1000);
const startStats = procStats(agentPid);
say(`hub :${hubPort}, control proxy :${proxy.port}, service :${service.port}; agent pid ${agentPid}`, startStats);

// ---------- one stream: open, send random bytes, receive them echoed, verify, close cleanly
// corrupt: a byte differed from what was sent (must stay 0). short: the echo ended (EOF) early but every
// byte that came was right; it happens when the local service is restarted (the service ended the stream).
const stats = { opened: 0, ok: 0, refused: 0, failed: 0, short: 0, bytesVerified: 0, corrupt: 0, slow: 0, codes: {} };
const count = (k) => (stats.codes[k] = (stats.codes[k] ?? 0) + 1);
async function oneStream() {
  let answer;
  try {
    answer = await api('POST', '/api/v1/devices/soak/streams', { service: 'svc', timeoutMs: 10_000 });
  } catch (e) {
    stats.failed++;
    count(`api:${e.code ?? e.message}`);
    await sleep(200);
    return;
  }
  if (answer.status !== 201) {
    stats.refused++;
    count(answer.body?.error?.code ?? `http${answer.status}`);
    await sleep(answer.status === 503 ? 200 : 20);
    return;
  }
  stats.opened++;
  const size = Math.random() < 0.2 ? 256 * 1024 + Math.floor(Math.random() * 2 * 1024 * 1024) : 1 + Math.floor(Math.random() * 64 * 1024);
  const payload = randomBytes(size);
  const slow = Math.random() < 0.1;
  if (slow) stats.slow++;
  const result = await new Promise((resolve) => {
    const ws = new WebSocket(answer.body.url, 'devstreams.v1', {
      headers: { authorization: `Bearer ${answer.body.token}` }, ca, perMessageDeflate: false, handshakeTimeout: 15_000,
    });
    let got = 0;
    let bad = false; // a byte differed
    let short = false; // EOF before all bytes came back
    let eof = false;
    let slowTimer;
    const finish = (r) => {
      clearInterval(slowTimer);
      resolve(r);
    };
    ws.on('unexpected-response', (_q, res) => {
      res.resume();
      finish({ kind: 'refused', code: `relay${res.statusCode}` });
      ws.terminate();
    });
    ws.on('error', (e) => finish({ kind: 'failed', code: `ws:${e.code ?? e.message}`, got, bad }));
    ws.on('open', () => {
      for (let off = 0; off < size; off += 64 * 1024) ws.send(payload.subarray(off, Math.min(size, off + 64 * 1024)), { binary: true });
      ws.send('{"type":"eof"}', { binary: false });
      if (slow) {
        // A slow reader: reads in bursts of 50 ms every 500 ms.
        ws.pause();
        slowTimer = setInterval(() => {
          ws.resume();
          setTimeout(() => ws.readyState === ws.OPEN && ws.pause(), 50);
        }, 500);
      }
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        if (!data.equals(payload.subarray(got, got + data.length))) bad = true;
        got += data.length;
      } else if (String(data).includes('"eof"')) {
        eof = true;
        if (got !== size) short = true;
        if (ws.isPaused) ws.resume();
        clearInterval(slowTimer);
        ws.close(1000);
      }
    });
    ws.on('close', (code, reason) => {
      if (eof && code === 1000) finish({ kind: bad ? 'corrupt' : short ? 'short' : 'ok', got, bad });
      else finish({ kind: 'failed', code: `close${code}:${String(reason).slice(0, 40)}`, got, bad });
    });
  });
  if (result.kind === 'ok') {
    stats.ok++;
    stats.bytesVerified += result.got;
  } else if (result.kind === 'corrupt' || result.bad) {
    stats.corrupt++;
    count('CORRUPT');
  } else if (result.kind === 'short') {
    stats.short++;
    stats.bytesVerified += result.got;
    count('SHORT_EOF');
  } else if (result.kind === 'refused') {
    stats.refused++;
    count(result.code);
  } else {
    stats.failed++;
    stats.bytesVerified += result.got; // a correct prefix (bad is false)
    count(result.code);
  }
}

// ---------- faults, in turn
const faults = { controlCut: 0, hubKilled: 0, serviceRestarted: 0 };
async function faultLoop() {
  const kinds = ['controlCut', 'hubKilled', 'serviceRestarted'];
  for (let i = 0; !stopping; i++) {
    const mean = Number(values['fault-seconds']) * 1000;
    await sleep(mean * (0.75 + Math.random() * 0.5));
    if (stopping) break;
    const kind = kinds[i % kinds.length];
    faults[kind]++;
    if (kind === 'controlCut') {
      say('fault: control channel cut for 5 s');
      proxy.cut();
      await sleep(5000);
      proxy.restore();
    } else if (kind === 'hubKilled') {
      say('fault: hub SIGKILL, restart after 2 s');
      await hub.kill('SIGKILL');
      await sleep(2000);
      hub = new Proc(['hub', '--config', hubYaml]);
      await hub.waitFor('hub listening');
    } else {
      say('fault: local service restarted (down 1 s)');
      await service.restart(1000);
    }
    try {
      await waitOnline(90_000);
    } catch (e) {
      say(`agent not back online after the fault: ${e.message}`);
    }
  }
}

const endAt = Date.now() + minutes * 60_000;
const workers = Array.from({ length: concurrency }, async () => {
  while (Date.now() < endAt) await oneStream();
});
const progress = setInterval(() => say(JSON.stringify({ ...stats, codes: undefined }), procStats(agentPid)), 30_000);
const faulting = faultLoop();
await Promise.all(workers);
stopping = true;
clearInterval(progress);
await faulting;

// Settle: the agent has no open streams (the hub's status says 0) and its descriptors are steady.
let endStats;
{
  const deadline = Date.now() + 60_000;
  let last = -1;
  while (Date.now() < deadline) {
    const d = await waitOnline().catch(() => null);
    endStats = procStats(agentPid);
    if (d?.openStreams === 0 && endStats.fds === last) break;
    last = endStats.fds;
    await sleep(1000);
  }
}
const summary = {
  minutes,
  concurrency,
  streamsOpened: stats.opened,
  streamsOk: stats.ok,
  refused: stats.refused,
  failed: stats.failed,
  endedEarlyByService: stats.short,
  slowReaders: stats.slow,
  bytesVerified: stats.bytesVerified,
  corruptStreams: stats.corrupt,
  faults,
  agentReconnectAttempts: agentLog.reconnecting,
  agentStart: startStats,
  agentEnd: endStats,
  outcomes: stats.codes,
};
console.log(JSON.stringify(summary, null, 2));
console.log(
  `streams opened ${stats.opened}, ok ${stats.ok}, refused ${stats.refused}, failed ${stats.failed}, ended early by the service ${stats.short}; ` +
    `bytes verified ${stats.bytesVerified}, corrupt streams ${stats.corrupt}; ` +
    `agent RSS ${startStats.rssMiB} -> ${endStats.rssMiB} MiB, fds ${startStats.fds} -> ${endStats.fds}, sockets ${startStats.sockets} -> ${endStats.sockets}`,
);
function cleanup() {
  proxy.stop();
  service.stop();
  httpsAgent.destroy();
  agent.kill('SIGKILL');
  hub.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
await agent.kill('SIGTERM');
cleanup();
const leaked = endStats.fds > startStats.fds;
process.exit(stats.corrupt > 0 || leaked || stats.ok === 0 ? 1 : 0);
