// `npm run bench:fleet`: how far one hub node goes. Simulated devices (bench/fleet/sim.mjs, several
// processes) connect to the embedded broker and to Debian's Mosquitto (if installed); at 1,000 /
// 5,000 / 10,000 devices online: connect rate, hub RSS and CPU, stream set-up p50/p99 (POST to a
// paired relay and one echoed byte). Loopback only, bounded: FLEET_STEPS (default 1000,5000,10000),
// FLEET_MODES (default embedded,mosquitto).
import { execFileSync } from 'node:child_process';
import { createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { Proc, cpuNs, freePort, rss, run, waitForPort } from '../lib/procs.mjs';
import { CLI, ROOT } from '../lib/stack.mjs';
import { pct } from '../lib/stats.mjs';

const node = process.execPath;
const STEPS = (process.env.FLEET_STEPS ?? '1000,5000,10000').split(',').map(Number);
const PER_PROC = 1250;
const SETUPS = 200;
const SEED = randomBytes(16).toString('hex');
const deviceId = (i) => `sim-${String(i).padStart(5, '0')}`;
const keyOf = (id) => createHmac('sha256', SEED).update(id).digest('base64url');
const sasKey = (key) => createHmac('sha256', key).update('devstreams-device-sas-v1').digest('base64url');
const MOSQUITTO = '/usr/sbin/mosquitto';
const DYNSEC = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function setUp(mode, max) {
  const dir = mkdtempSync(join(tmpdir(), `devstreams-fleet-${mode}-`));
  const hubPort = await freePort();
  await run(node, [CLI, 'hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${hubPort}`]);
  const now = new Date().toISOString();
  const devices = {};
  for (let i = 0; i < max; i++) devices[deviceId(i)] = { keys: { primary: { sasKey: sasKey(keyOf(deviceId(i))), createdAt: now } }, disabled: false, createdAt: now };
  writeFileSync(join(dir, 'registry.json'), JSON.stringify({ devices }), { mode: 0o600 });
  let extra = `publicUrl: https://127.0.0.1:${hubPort}\nlimits:\n  streamRequestsPerTokenPerSecond: 100000\n  streamRequestsPerDevicePerSecond: 100000\n  unauthenticatedPerAddress: 100000\n  pendingHandshakes: 100000\n  authTimeoutMs: 60000\n`;
  let mqttUrl;
  let broker = null;
  if (mode === 'embedded') {
    const mqttsPort = await freePort();
    extra += `mqtts:\n  listen: 127.0.0.1:${mqttsPort}\n`;
    mqttUrl = `mqtts://127.0.0.1:${mqttsPort}`;
  } else {
    broker = await startMosquitto(dir, max);
    mqttUrl = broker.url;
    extra += `mqtt:\n  url: ${broker.url}\n  username: admin\n  passwordFile: mosquitto/admin.password\n  ca: tls/ca.crt\n  accounts: mosquitto-dynsec\n`;
  }
  const hubYaml = join(dir, 'hub.yaml');
  writeFileSync(hubYaml, readFileSync(hubYaml, 'utf8').replace(/level: info/, 'level: warn') + extra);
  const hub = new Proc('bash', ['-c', `ulimit -n 65536 2>/dev/null; exec ${node} ${CLI} hub --config ${hubYaml}`], { name: 'hub' });
  await waitForPort(hubPort, 60_000); // log level warn: no 'hub listening' line
  // `exec` makes the bash process the hub itself: hub.pid is the hub's pid.
  return { dir, hub, hubPid: hub.pid, broker, mqttUrl, hubUrl: `https://127.0.0.1:${hubPort}`, token: readFileSync(join(dir, 'service.token'), 'utf8').trim(), ca: readFileSync(join(dir, 'tls', 'ca.crt')) };
}

/** Mosquitto with dynsec: the admin from mosquitto_ctrl, plus every device's account and role written into its JSON. */
async function startMosquitto(dir, max) {
  const mdir = join(dir, 'mosquitto');
  mkdirSync(mdir, { mode: 0o700 });
  const pw = randomBytes(18).toString('base64url');
  writeFileSync(join(mdir, 'admin.password'), pw, { mode: 0o600 });
  const file = join(mdir, 'dynsec.json');
  execFileSync('mosquitto_ctrl', ['dynsec', 'init', file, 'admin', pw], { stdio: 'ignore' });
  const cfg = JSON.parse(readFileSync(file, 'utf8'));
  for (let i = 0; i < max; i++) {
    const id = deviceId(i);
    const salt = randomBytes(12);
    const hash = pbkdf2Sync(keyOf(id), salt, 101, 64, 'sha512');
    const root = `devstreams/v1/devices/${id}`;
    cfg.roles.push({ rolename: `devstreams-device-${id}`, acls: [
      { acltype: 'publishClientSend', topic: `${root}/status`, allow: true },
      { acltype: 'publishClientSend', topic: `${root}/streams/response`, allow: true },
      { acltype: 'publishClientSend', topic: `${root}/streams/response/+`, allow: true },
      { acltype: 'subscribeLiteral', topic: `${root}/streams/request`, allow: true },
    ] });
    cfg.clients.push({ username: id, clientid: id, password: hash.toString('base64'), salt: salt.toString('base64'), iterations: 101, roles: [{ rolename: `devstreams-device-${id}` }] });
  }
  writeFileSync(file, JSON.stringify(cfg));
  const port = await freePort();
  const conf = join(mdir, 'mosquitto.conf');
  writeFileSync(conf, ['user root', 'per_listener_settings false', 'allow_anonymous false', 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', 'log_type notice', 'log_type information',
    'max_packet_size 16384', ...(process.env.FLEET_NAGLE ? [] : ['set_tcp_nodelay true']), `plugin ${DYNSEC}`, `plugin_opt_config_file ${file}`, `listener ${port} 127.0.0.1`,
    `certfile ${join(dir, 'tls', 'hub.crt')}`, `keyfile ${join(dir, 'tls', 'hub.key')}`, ''].join('\n'));
  const proc = new Proc('bash', ['-c', `ulimit -n 65536 2>/dev/null; exec ${MOSQUITTO} -c ${conf}`], { name: 'mosquitto' });
  await proc.waitFor((l) => / running$/.test(l), 60_000);
  return { proc, pid: proc.pid, url: `mqtts://127.0.0.1:${port}` };
}

function api(s, method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body ? JSON.stringify(body) : undefined;
    const u = new URL(path, s.hubUrl);
    const req = request(u, { method, ca: s.ca, headers: { Authorization: `Bearer ${s.token}`, ...(data ? { 'Content-Type': 'application/json' } : {}) } }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => resolve({ status: res.statusCode, body: t }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function onlineCount(s) {
  const r = await api(s, 'GET', '/metrics');
  const m = /^devstreams_hub_devices_online (\d+)/m.exec(r.body);
  return m ? Number(m[1]) : -1;
}

/** One stream: POST, dial the relay, one byte echoed by the simulated device. */
async function oneStream(s, device) {
  const t0 = performance.now();
  const r = await api(s, 'POST', `/api/v1/devices/${device}/streams`, { service: 'echo' });
  if (r.status !== 201) throw new Error(`stream request: ${r.status} ${r.body}`);
  const { url, token } = JSON.parse(r.body);
  await new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'devstreams.v1', { headers: { Authorization: `Bearer ${token}` }, ca: s.ca, perMessageDeflate: false });
    ws.once('open', () => ws.send(Buffer.from('x')));
    ws.once('message', () => (ws.close(), resolve()));
    ws.once('error', reject);
  });
  return performance.now() - t0;
}

async function measure(mode) {
  const max = STEPS.at(-1);
  const s = await setUp(mode, max);
  const sims = [];
  const rows = [];
  try {
    let have = 0;
    for (const target of STEPS) {
      const t0 = performance.now();
      const batch = [];
      for (let from = have; from < target; from += PER_PROC) {
        const to = Math.min(target, from + PER_PROC);
        const p = new Proc('bash', ['-c', `ulimit -n 65536 2>/dev/null; exec ${node} ${join(ROOT, 'bench/fleet/sim.mjs')} ${s.mqttUrl} ${join(s.dir, 'tls', 'ca.crt')} ${SEED} ${from} ${to}`], { name: `sim ${from}` });
        sims.push(p);
        batch.push(p.waitFor((l) => l.startsWith('ready') || l.startsWith('failed'), 300_000));
      }
      const lines = await Promise.all(batch);
      const bad = lines.find((l) => l.startsWith('failed'));
      if (bad) throw new Error(`${mode}: a simulator failed: ${bad}`);
      const deadline = Date.now() + 120_000;
      while ((await onlineCount(s)) < target && Date.now() < deadline) await sleep(200);
      const online = await onlineCount(s);
      const connectS = (performance.now() - t0) / 1000;
      const cpu0 = cpuNs(s.hubPid);
      await sleep(5000);
      const idleCpuPct = ((cpuNs(s.hubPid) - cpu0) / 5e9) * 100;
      const times = [];
      for (let i = 0; i < SETUPS; i++) times.push(await oneStream(s, deviceId(Math.floor(Math.random() * target))));
      rows.push({
        broker: mode, devices: target, online,
        connectPerSec: Math.round((target - have) / connectS),
        hubRssMB: Math.round(rss(s.hubPid) / 1e6),
        brokerRssMB: s.broker ? Math.round(rss(s.broker.pid) / 1e6) : null,
        hubIdleCpuPct: Number(idleCpuPct.toFixed(1)),
        setupP50Ms: Number(pct(times, 0.5).toFixed(1)), setupP99Ms: Number(pct(times, 0.99).toFixed(1)),
      });
      console.log(JSON.stringify(rows.at(-1)));
      have = target;
    }
  } finally {
    for (const p of sims) await p.stop();
    await s.hub.stop();
    await s.broker?.proc.stop();
    rmSync(s.dir, { recursive: true, force: true });
  }
  return rows;
}

const modes = ['embedded', ...(existsSync(MOSQUITTO) && existsSync(DYNSEC) ? ['mosquitto'] : [])].filter((m) => !process.env.FLEET_MODES || process.env.FLEET_MODES.split(',').includes(m));
const results = [];
for (const m of modes) results.push(...(await measure(m)));
writeFileSync(new URL('results.json', import.meta.url), JSON.stringify({ at: new Date().toISOString(), node: process.version, results }, null, 2) + '\n');
console.log('\n| broker | devices online | connect rate (/s) | hub RSS (MB) | broker RSS (MB) | hub CPU idle (%) | stream set-up p50 (ms) | p99 (ms) |');
console.log('|---|---|---|---|---|---|---|---|');
for (const r of results) console.log(`| ${r.broker} | ${r.online} | ${r.connectPerSec} | ${r.hubRssMB} | ${r.brokerRssMB ?? '(in hub)'} | ${r.hubIdleCpuPct} | ${r.setupP50Ms} | ${r.setupP99Ms} |`);
process.exit(0);
