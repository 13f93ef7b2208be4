// ssh through devstreams as users run it (issue 6, twenty-eighth round): one stack (hub, agent,
// `devstreams forward`) whose target is a throwaway sshd on loopback, and `ssh` copying --mib each
// way (`cat > /dev/null` up, `head -c` down) through ProxyCommand="devstreams connect" and, for
// comparison, through the forward's port. With --builds A,B the ProxyCommand runs each of two
// builds' dist/devstreams.mjs, in alternating order, against the same stack (its hub, agent and
// forward are this tree's). Prints MB/s and the CPU per byte of the hub, the agent and the service
// side (the ProxyCommand's `devstreams connect`, or `devstreams forward`) for each copy. ssh ends
// its ProxyCommand with a signal, which leaves nothing for `time` to report: connect runs under a
// small bash wrapper that forwards the signal, reaps it and writes bash's `times` for its children.
// connect's figure is its data path's: less its start (the median CPU of three `ssh ... true`
// through it, printed first), which `forward`, started once, does not pay per copy.
//   node bench/ssh-proxy.mjs [--mib 512] [--runs 4] [--builds /tmp/base,.]
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { ROOT, startDevstreams } from './lib/stack.mjs';
import { option } from './lib/args.mjs';
import { Proc, cpuNs, freePort, waitForPort } from './lib/procs.mjs';

const mib = Number(option('--mib', '512'));
const runs = Number(option('--runs', '4'));
const builds = option('--builds', '');
const bytes = mib * 2 ** 20;

const dir = mkdtempSync(join(tmpdir(), 'devstreams-bench-sshproxy-'));
const f = (n) => join(dir, n);
for (const key of ['host_key', 'client_key']) spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', f(key)]);
writeFileSync(f('authorized_keys'), readFileSync(f('client_key.pub')), { mode: 0o600 });
mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
const sshdPort = await freePort();
writeFileSync(f('sshd_config'), [`Port ${sshdPort}`, 'ListenAddress 127.0.0.1', `HostKey ${f('host_key')}`, `AuthorizedKeysFile ${f('authorized_keys')}`,
  `PidFile ${f('sshd.pid')}`, 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'LogLevel ERROR'].join('\n') + '\n');
const sshd = new Proc('/usr/sbin/sshd', ['-D', '-e', '-f', f('sshd_config')], { name: 'sshd' });
await waitForPort(sshdPort);
const ds = await startDevstreams(sshdPort);

// The ProxyCommand's wrapper: `proxy.sh CPU_FILE COMMAND...`. A background job of a shell without job
// control reads /dev/null unless told otherwise, hence <&0. The second wait: a trapped signal ends
// the first one early.
writeFileSync(f('proxy.sh'), `#!/bin/bash
out="$1"; shift
"$@" <&0 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' HUP TERM INT
wait "$child"; wait "$child"
times > "$out.tmp" && mv "$out.tmp" "$out"
`, { mode: 0o755 });
const proxy = (cli) => `ProxyCommand=${f('proxy.sh')} ${f('connect-cpu')} ${process.execPath} ${cli} connect bench target`;
// bash's `times`: the shell's user and system time, then its children's ("0m1.234s 0m0.567s"). Not
// in a pipeline: that would run it in a subshell, which has no children.
const seconds = (t) => t.trim().split('\n')[1].split(/\s+/).filter(Boolean).reduce((sum, x) => {
  const m = /^(\d+)m([\d.]+)s$/.exec(x);
  if (!m) throw new Error(`unexpected times output: ${t}`);
  return sum + Number(m[1]) * 60 + Number(m[2]);
}, 0);
async function connectCpuNs() {
  for (let i = 0; i < 100 && !existsSync(f('connect-cpu')); i++) await new Promise((r) => setTimeout(r, 50));
  const ns = seconds(readFileSync(f('connect-cpu'), 'utf8')) * 1e9;
  rmSync(f('connect-cpu'));
  return ns;
}

const sshArgs = ['-F', '/dev/null', '-i', f('client_key'), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
  '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
const user = userInfo().username;
const ways = builds
  ? builds.split(',').map((b, i) => ({ name: `connect ${'AB'[i]}`, proxied: true, args: [...sshArgs, '-o', proxy(join(resolve(b), 'dist/devstreams.mjs')), `${user}@bench`] }))
  : [
      { name: 'connect', proxied: true, args: [...sshArgs, '-o', proxy(join(ROOT, 'dist/devstreams.mjs')), `${user}@bench`] },
      { name: 'forward', proxied: false, args: [...sshArgs, '-p', String(ds.port), `${user}@127.0.0.1`] },
    ];

const quote = (a) => `'${a.replace(/'/g, `'\\''`)}'`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** CPU of a connect that opens its stream and ends with it: ssh running `true` through it. */
async function startCpuNs(way) {
  const cpu = [];
  for (let i = 0; i < 3; i++) {
    const r = spawnSync('ssh', [...way.args, 'true'], { env: { ...process.env, ...ds.env }, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0) throw new Error(`${way.name}: ssh true exited ${r.status}`);
    cpu.push(await connectCpuNs());
  }
  return median(cpu);
}

async function copy(way, direction) {
  const ssh = `ssh ${way.args.map(quote).join(' ')}`;
  const cmd = direction === 'up' ? `head -c ${bytes} /dev/zero | ${ssh} 'cat > /dev/null'` : `${ssh} 'head -c ${bytes} /dev/zero' > /dev/null`;
  const pids = [ds.hub.pid, ds.agent.pid, ds.forward.pid];
  const before = pids.map(cpuNs);
  const t0 = performance.now();
  const r = spawnSync('bash', ['-c', cmd], { env: { ...process.env, ...ds.env }, stdio: ['ignore', 'ignore', 'inherit'] });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${way.name} ${direction}: ssh exited ${r.status}`);
  const [hub, agent, forward] = pids.map((p, i) => (cpuNs(p) - before[i]) / bytes);
  const service = way.proxied ? `connect ${(((await connectCpuNs()) - way.startNs) / bytes).toFixed(2)}` : `forward ${forward.toFixed(2)}`;
  return `${way.name} ${direction} ${(bytes / s / 1e6).toFixed(0)} MB/s (hub ${hub.toFixed(2)}, agent ${agent.toFixed(2)}, ${service} ns/B)`;
}

try {
  console.log(`ssh, ${mib} MiB each way per copy, ${runs} run(s); each copy's time includes ssh's and the ProxyCommand's start`);
  for (const w of ways.filter((w) => w.proxied)) {
    w.startNs = await startCpuNs(w);
    console.log(`${w.name}: its start costs ${(w.startNs / 1e6).toFixed(0)} ms of CPU (median of 3), taken out of its ns/B below`);
  }
  for (let i = 0; i < runs; i++) {
    const order = i % 2 ? [...ways].reverse() : ways;
    for (const direction of ['up', 'down']) {
      const line = [];
      for (const w of order) line.push(await copy(w, direction));
      console.log(line.join(' | '));
    }
  }
} finally {
  await ds.stop();
  await sshd.stop();
  rmSync(dir, { recursive: true, force: true });
}
