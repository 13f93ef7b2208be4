// The three tunnels under test, each as real processes on loopback, plus the target service.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Proc, freePort, run, waitForPort } from './procs.mjs';
import { coldAgentProgram } from './cold-start.mjs';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = process.env.DEVSTREAMS_CLI ?? join(ROOT, 'dist/devstreams.mjs');
const node = process.execPath;

/** The target service (bench/target-server.mjs) as its own process. */
export async function startTarget() {
  const p = new Proc(node, [join(ROOT, 'bench/target-server.mjs')], { name: 'target' });
  const line = await p.waitFor((l) => l.startsWith('listening '));
  return { proc: p, port: Number(line.split(' ')[1]), pids: [p.pid] };
}

/**
 * devstreams: `hub init`, `hub add-device` (the target and echo allowed, maxStreams raised to 1024),
 * the hub, the agent, and `devstreams forward` (the service side) each as their own process.
 * `nodeArgs` go to all three (e.g. --cpu-prof). `rttMs`: the hub is reached only through
 * bench/lib/delay-proxy.mjs, which adds that round-trip time (its public URL is the proxy's), for
 * the agent and the service side alike: a hub far from both.
 */
export async function startDevstreams(targetPort, { nodeArgs = [], host = '127.0.0.1', logLevel, rttMs = 0, agentExe, agentGc, agentTlsCipher, agentNodeArgs = [], agentEnv = {}, agentCold = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-bench-'));
  const hubPort = await freePort();
  const publicPort = rttMs > 0 ? await freePort() : hubPort;
  await run(node, [CLI, 'hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${hubPort}`]);
  const hubYaml = join(dir, 'hub.yaml');
  // The hub's name: 127.0.0.1 skips a name lookup per connection (1.5-5 ms here, see bench/README.md).
  if (host !== 'localhost') writeFileSync(hubYaml, readFileSync(hubYaml, 'utf8').replace(/^# publicUrl: .*$/m, `publicUrl: https://${host}:${publicPort}`));
  // The hub's per-device and per-token request rates (100/s and 50/s by default), streams per
  // device (64) and connections being set up per address (256: here the agent and the service side
  // both dial from 127.0.0.1, 2,000 relay dials at once for 1,000 streams) would cap the set-up
  // rate and concurrency figures: the bench measures the data path, not the hub's policy.
  writeFileSync(hubYaml, `${readFileSync(hubYaml, 'utf8')}\nlimits:\n  streamRequestsPerTokenPerSecond: 100000\n  streamRequestsPerDevicePerSecond: 100000\n  streamsPerDevice: 4096\n  unauthenticatedPerAddress: 4096\n  pendingHandshakes: 4096\n`);
  await run(node, [CLI, 'hub', 'add-device', 'bench', '--config', hubYaml, '--allow', `target=127.0.0.1:${targetPort}`, '--allow', 'echo']);
  const agentYaml = join(dir, 'devices', 'bench.yaml');
  let y = readFileSync(agentYaml, 'utf8');
  if (logLevel) {
    y = y.replace(/^(\s*level:) \w+/m, `$1 ${logLevel}`);
    writeFileSync(hubYaml, readFileSync(hubYaml, 'utf8').replace(/^(\s*level:) \w+/m, `$1 ${logLevel}`));
  }
  // agentGc: the agent's runtime.gc (auto, memory, throughput; agent/gc-mode.ts). Auto picks throughput on 2 GiB or more.
  if (agentGc) y = `${y}runtime:\n  gc: ${agentGc}\n`;
  // agentTlsCipher: the agent's hub.tlsCipher (auto, aes-gcm, chacha20-poly1305; protocol/tls-ciphers.ts).
  if (agentTlsCipher) y = y.replace(/^hub:\n/m, `hub:\n  tlsCipher: ${agentTlsCipher}\n`);
  writeFileSync(agentYaml, /^limits:/m.test(y) ? y.replace(/maxStreams: \d+/, 'maxStreams: 1024') : `${y}limits:\n  maxStreams: 1024\n`, { mode: 0o600 });
  const env = {
    DEVSTREAMS_HUB: `https://${host}:${publicPort}`,
    DEVSTREAMS_TOKEN: readFileSync(join(dir, 'service.token'), 'utf8').trim(),
    DEVSTREAMS_CA: join(dir, 'tls', 'ca.crt'),
  };
  const started = [];
  const cleanUp = async () => {
    for (const p of started.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    return await runDevstreams();
  } catch (err) {
    await cleanUp();
    throw err;
  }

  async function runDevstreams() {
    const hub = new Proc(node, [...nodeArgs, CLI, 'hub', '--config', hubYaml], { name: 'hub' });
    started.push(hub);
    await Promise.race([waitForPort(hubPort, 60_000), hub.exited.then((c) => Promise.reject(new Error(`hub exited (${c}): ${hub.lines.join('\n')}`)))]);
    if (rttMs > 0) started.push(await startDelayProxy(publicPort, hubPort, rttMs));
    // agentExe: the agent as a single executable (dist/bin/devstreams-linux-x64), as devices run it.
    // agentCold: the agent's program file out of the page cache first, as on a device after boot
    // (bench/lib/cold-start.mjs): the executable itself, or a private copy of Node for the agent.
    const program = agentCold ? coldAgentProgram({ exe: agentExe, node, dir }) : (agentExe ?? node);
    // agentNodeArgs and agentEnv: node options and environment for the agent alone.
    const agent = agentExe
      ? new Proc(program, ['agent', '--config', agentYaml], { name: 'agent-exe', env: agentEnv })
      : new Proc(program, [...nodeArgs, ...agentNodeArgs, CLI, 'agent', '--config', agentYaml], { name: 'agent', env: agentEnv });
    started.push(agent);
    await waitOnline(env, agent);
    const fport = await freePort();
    const forward = new Proc(node, [...nodeArgs, CLI, 'forward', 'bench', 'target', '--listen', `127.0.0.1:${fport}`], { name: 'forward', env });
    started.push(forward);
    await forward.waitFor((l) => l.startsWith('listening on'));
    return {
      name: 'devstreams',
      port: fport,
      dir,
      env,
      hub,
      agent,
      forward,
      pids: [forward.pid, hub.pid, agent.pid],
      parties: ['forward', 'hub', 'agent'],
      devicePid: agent.pid, // what runs on the device
      stop: cleanUp,
    };
  }
}

/** bench/lib/delay-proxy.mjs listening on `port`, adding `rttMs` to each round trip to `upstreamPort`; once it listens. */
async function startDelayProxy(port, upstreamPort, rttMs) {
  const proxy = new Proc(node, [join(ROOT, 'bench/lib/delay-proxy.mjs'), String(port), String(upstreamPort), String(rttMs / 2)], { name: 'delay-proxy' });
  try {
    await proxy.waitFor((l) => l.startsWith('listening '));
  } catch (err) {
    await proxy.stop();
    throw err;
  }
  return proxy;
}

/** Polls the hub's device list (bounded) until the bench device is online (`agent`: its process). */
export async function waitOnline(env, agent) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const p = new Proc(node, [CLI, 'devices', '--json'], { name: 'devices', env });
    await p.exited;
    const out = p.lines.join('\n');
    if (/"id":\s*"bench"[^}]*"online":\s*true/.test(out)) return;
    if (agent.child.exitCode !== null || Date.now() > deadline) throw new Error(`agent not online: ${out}\n${agent.lines.slice(-10).join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * `ssh -N -L` through a throwaway sshd on loopback (default cipher unless `cipher`); with `rttMs`,
 * ssh reaches sshd through bench/lib/delay-proxy.mjs, as devstreams reaches its hub in wan.mjs.
 * `sshdEnv`: environment for sshd alone (the device's side, as `agentEnv` is devstreams').
 */
export async function startSsh(targetPort, { cipher, rttMs = 0, sshdEnv = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-bench-sshd-'));
  const f = (n) => join(dir, n);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', f('host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', f('client_key')]);
  writeFileSync(f('authorized_keys'), readFileSync(f('client_key.pub')), { mode: 0o600 });
  const { mkdirSync } = await import('node:fs');
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const sshdPort = await freePort();
  writeFileSync(
    f('sshd_config'),
    [`Port ${sshdPort}`, 'ListenAddress 127.0.0.1', `HostKey ${f('host_key')}`, `AuthorizedKeysFile ${f('authorized_keys')}`,
      `PidFile ${f('sshd.pid')}`, 'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password', 'AllowTcpForwarding yes', 'MaxSessions 2000', 'LogLevel ERROR'].join('\n') + '\n',
  );
  const sshd = new Proc('/usr/sbin/sshd', ['-D', '-e', '-f', f('sshd_config')], { name: 'sshd', env: sshdEnv });
  await waitForPort(sshdPort);
  let proxy;
  let dialPort = sshdPort;
  if (rttMs > 0) {
    dialPort = await freePort();
    proxy = await startDelayProxy(dialPort, sshdPort, rttMs);
  }
  const hostPub = readFileSync(f('host_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  writeFileSync(f('known_hosts'), `[127.0.0.1]:${dialPort} ${hostPub}\n`);
  const lport = await freePort();
  const ssh = new Proc('/usr/bin/ssh', [
    '-F', '/dev/null', '-i', f('client_key'), '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${f('known_hosts')}`, '-o', 'LogLevel=ERROR',
    ...(cipher ? ['-c', cipher] : []),
    '-N', '-L', `127.0.0.1:${lport}:127.0.0.1:${targetPort}`, '-p', String(dialPort), `${userInfo().username}@127.0.0.1`,
  ], { name: 'ssh' });
  await waitForPort(lport);
  return {
    name: cipher ? `ssh -L (${cipher})` : 'ssh -L',
    port: lport,
    pids: [ssh.pid, sshd.pid],
    parties: ['ssh', 'sshd'],
    devicePid: sshd.pid, // cpuNs counts its live descendants: the session process that carries the forward
    async stop() {
      await ssh.stop();
      await proxy?.stop();
      await sshd.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Three socat relays in a row (the shape of forward -> hub -> agent), plain TCP, one fork per connection. */
export async function startSocat(targetPort) {
  const p3 = await freePort();
  const p2 = await freePort();
  const p1 = await freePort();
  const hop = (from, to, name) =>
    new Proc('socat', ['-b65536', `TCP-LISTEN:${from},bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay`, `TCP:127.0.0.1:${to},nodelay`], { name });
  const procs = [hop(p3, targetPort, 'socat3'), hop(p2, p3, 'socat2'), hop(p1, p2, 'socat1')];
  for (const p of [p3, p2, p1]) await waitForPort(p);
  return {
    name: 'socat x3',
    port: p1,
    pids: procs.map((p) => p.pid),
    parties: procs.map((p) => p.name),
    devicePid: procs[0].pid, // the hop to the target, with the child it forks per connection
    async stop() {
      for (const p of procs) await p.stop();
    },
  };
}

/**
 * The minimal Node tunnel of devstreams' shape (bench/lib/minimal-tunnel.mjs): the floor of what
 * Node, ws and TLS cost for these connections, with none of devstreams' checks. With `mux`, the
 * floor of a multiplexed design instead (bench/lib/minimal-mux-tunnel.mjs): one connection per side.
 */
export async function startMinimal(targetPort, { nodeArgs = [], mux = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-bench-minimal-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert,
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2']);
  const script = join(ROOT, mux ? 'bench/lib/minimal-mux-tunnel.mjs' : 'bench/lib/minimal-tunnel.mjs');
  const relay = new Proc(node, [...nodeArgs, script, 'relay', cert, key], { name: 'min-relay' });
  const relayPort = Number((await relay.waitFor((l) => l.startsWith('listening '))).split(' ')[1]);
  const agent = new Proc(node, [...nodeArgs, script, 'agent', cert, String(relayPort), String(targetPort)], { name: 'min-agent' });
  await agent.waitFor((l) => l === 'ready');
  const service = new Proc(node, [...nodeArgs, script, 'service', cert, String(relayPort)], { name: 'min-service' });
  const port = Number((await service.waitFor((l) => l.startsWith('listening '))).split(' ')[1]);
  return {
    name: mux ? 'minimal wss mux' : 'minimal wss',
    port,
    pids: [service.pid, relay.pid, agent.pid],
    parties: ['service', 'relay', 'agent'],
    devicePid: agent.pid,
    agent,
    async stop() {
      for (const p of [service, agent, relay]) await p.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Direct loopback TCP to the target: no tunnel process. */
export function direct(targetPort) {
  return { name: 'direct', port: targetPort, pids: [], async stop() {} };
}
