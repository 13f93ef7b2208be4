// ssh through devstreams as users run it (issue 6, twenty-eighth round): one stack (hub, agent,
// `devstreams forward`) whose target is a throwaway sshd on loopback, and `ssh` copying --mib each
// way (`cat > /dev/null` up, `head -c` down) through ProxyCommand="devstreams connect" and, for
// comparison, through the forward's port. With --builds A,B the ProxyCommand runs each of two
// builds' dist/devstreams.mjs, in alternating order, against the same stack (its hub, agent and
// forward are this tree's). Prints MB/s and the hub's and the agent's CPU per byte for each copy.
//   node bench/ssh-proxy.mjs [--mib 512] [--runs 4] [--builds /tmp/base,.]
import './lib/shipped-runtime.mjs'; // first: re-runs this script under the shipped Node
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

const sshArgs = ['-F', '/dev/null', '-i', f('client_key'), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no',
  '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
const user = userInfo().username;
const ways = builds
  ? builds.split(',').map((b, i) => ({ name: `connect ${'AB'[i]}`, args: [...sshArgs, '-o', `ProxyCommand=${process.execPath} ${join(resolve(b), 'dist/devstreams.mjs')} connect bench target`, `${user}@bench`] }))
  : [
      { name: 'connect', args: [...sshArgs, '-o', `ProxyCommand=${process.execPath} ${join(ROOT, 'dist/devstreams.mjs')} connect bench target`, `${user}@bench`] },
      { name: 'forward', args: [...sshArgs, '-p', String(ds.port), `${user}@127.0.0.1`] },
    ];

const quote = (a) => `'${a.replace(/'/g, `'\\''`)}'`;
function copy(way, direction) {
  const ssh = `ssh ${way.args.map(quote).join(' ')}`;
  const cmd = direction === 'up' ? `head -c ${bytes} /dev/zero | ${ssh} 'cat > /dev/null'` : `${ssh} 'head -c ${bytes} /dev/zero' > /dev/null`;
  const before = [ds.hub.pid, ds.agent.pid].map(cpuNs);
  const t0 = performance.now();
  const r = spawnSync('bash', ['-c', cmd], { env: { ...process.env, ...ds.env }, stdio: ['ignore', 'ignore', 'inherit'] });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${way.name} ${direction}: ssh exited ${r.status}`);
  const [hub, agent] = [ds.hub.pid, ds.agent.pid].map((p, i) => (cpuNs(p) - before[i]) / bytes);
  return `${way.name} ${direction} ${(bytes / s / 1e6).toFixed(0)} MB/s (hub ${hub.toFixed(2)}, agent ${agent.toFixed(2)} ns/B)`;
}

try {
  console.log(`ssh, ${mib} MiB each way per copy, ${runs} run(s); each copy's time includes ssh's and the ProxyCommand's start`);
  for (let i = 0; i < runs; i++) {
    const order = i % 2 ? [...ways].reverse() : ways;
    for (const direction of ['up', 'down']) console.log(order.map((w) => copy(w, direction)).join(' | '));
  }
} finally {
  await ds.stop();
  await sshd.stop();
  rmSync(dir, { recursive: true, force: true });
}
