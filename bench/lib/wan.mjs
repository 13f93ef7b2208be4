// Stream set-up with a far-away hub (bench/wan.mjs and the full run): devstreams started with its
// hub behind bench/lib/delay-proxy.mjs, which adds `rttMs` to every connection to the hub (MQTT,
// API and relay, from the agent and from the service side), then `streams` set-ups one after another.
import { spawn } from 'node:child_process';
import { CLI, startDevstreams, startSsh } from './stack.mjs';
import * as load from './load.mjs';
import { pct } from './stats.mjs';

/** Set-up times (connect to `devstreams forward` to the first byte echoed back) over a slow link. */
export async function wanSetup(targetPort, { rttMs = 50, streams = 40, maxS = 120 } = {}) {
  const path = await startDevstreams(targetPort, { rttMs });
  try {
    await load.setupTimes(path.port, 3); // warm-up: TLS sessions, the keep-alive connection to the API
    const { times, errors } = await load.setupTimes(path.port, streams, maxS);
    return { rttMs, n: times.length, p50: pct(times, 0.5), p90: pct(times, 0.9), errors };
  } finally {
    await path.stop();
  }
}

/**
 * Bulk over a slow link: one stream up, then down, through devstreams with its hub `rttMs` away,
 * and through `ssh -L` with its sshd `rttMs` away (the same delay proxy). On loopback every window
 * is large enough; over a real round trip a stream moves at most one window per round trip, so this
 * shows what the flow control allows (docs/MULTIPLEXING.md). MB/s of each, or null without ssh.
 */
export async function wanBulk(targetPort, { rttMs = 50, bytes = 256 * 1024 * 1024, maxS = 8, ssh = true } = {}) {
  const measure = async (path) => {
    try {
      await load.download(path.port, 1024 * 1024); // warm-up: the connections to the hub
      const up = await load.upload(path.port, bytes, maxS);
      const down = await load.download(path.port, bytes, maxS);
      return { up: up.bytes / 1e6 / up.secs, down: down.bytes / 1e6 / down.secs, bytesUp: up.bytes, bytesDown: down.bytes };
    } finally {
      await path.stop();
    }
  };
  const devstreams = await measure(await startDevstreams(targetPort, { rttMs }));
  const sshL = ssh ? await measure(await startSsh(targetPort, { rttMs })) : null;
  return { rttMs, devstreams, ssh: sshL };
}

/**
 * The same with `devstreams connect`, one process per stream as ssh's ProxyCommand runs it: from
 * the spawn to the first byte echoed back on its stdout. It includes the process's start-up (Node
 * and the CLI), so it is measured at `rttMs` and with the hub reached directly: the
 * difference is what the link costs, and over `rttMs` the round trips a fresh process waits.
 */
export async function wanConnectSetup(targetPort, { rttMs = 50, streams = 10, exe } = {}) {
  const at = async (rtt) => {
    const path = await startDevstreams(targetPort, { rttMs: rtt });
    try {
      await connectOnce(path.env, exe); // warm-up: the CLI's files in the page cache
      const times = [];
      for (let i = 0; i < streams; i++) times.push(await connectOnce(path.env, exe));
      return pct(times, 0.5);
    } finally {
      await path.stop();
    }
  };
  const far = await at(rttMs);
  const near = await at(0);
  return { rttMs, n: streams, p50: far, p50Near: near, roundTrips: (far - near) / rttMs };
}

/** One `devstreams connect bench target` process (`exe`: the single executable, else node and dist/): ms from its spawn to the first byte echoed back. */
function connectOnce(env, exe) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(exe ?? process.execPath, [...(exe ? [] : [CLI]), 'connect', 'bench', 'target'], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.stdin.write('Ex');
    let ms = null;
    child.stdout.once('data', () => {
      ms = performance.now() - t0;
      child.stdin.end();
    });
    child.stdout.resume();
    child.once('close', (code) => (ms !== null ? resolve(ms) : reject(new Error(`connect exited with ${code} before the first byte: ${err.trim()}`))));
  });
}
