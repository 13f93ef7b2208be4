// `npm start`: a local hub (embedded broker, development TLS) and a local agent that allows this
// machine's sshd and the built-in echo service; prints the lines to try. Ctrl-C stops both.
// Everything lives in ./.devstreams (hub.yaml, dev CA, service token, device config, logs/).
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';

const dir = resolve('.devstreams');
const port = 8443;
const device = 'demo-device';
const cli = resolve('dist/devstreams.mjs');
const ds = `${process.execPath} ${cli}`;

function run(args) {
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (!existsSync(`${dir}/hub.yaml`)) run(['hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${port}`]);
if (!existsSync(`${dir}/devices/${device}.yaml`)) {
  run(['hub', 'add-device', device, '--config', `${dir}/hub.yaml`, '--allow', 'ssh=127.0.0.1:22', '--allow', 'echo']);
}
mkdirSync(`${dir}/logs`, { recursive: true });

/** Starts one role with its JSON logs in logs/NAME.log; resolves on the log line `readyMsg`. */
function start(name, args, readyMsg) {
  const log = createWriteStream(`${dir}/logs/${name}.log`, { flags: 'a' });
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr.pipe(log);
  const ready = new Promise((resolveReady, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      log.write(d);
      buf += d.toString();
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
        if (buf.slice(0, i).includes(`"msg":"${readyMsg}"`)) resolveReady();
      }
    });
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}); see ${dir}/logs/${name}.log`)));
  });
  return { child, ready };
}

const children = [];
function stopAll() {
  for (const c of children.reverse()) c.kill('SIGTERM');
}
process.on('SIGINT', stopAll);
process.on('SIGTERM', stopAll);

try {
  const hub = start('hub', ['hub', '--config', `${dir}/hub.yaml`], 'hub listening');
  children.push(hub.child);
  await hub.ready;
  const agent = start('agent', ['agent', '--config', `${dir}/devices/${device}.yaml`], 'agent connected');
  children.push(agent.child);
  await agent.ready;
} catch (err) {
  console.error(`devstreams: ${err.message}`);
  stopAll();
  process.exit(1);
}

const sshdUp = await new Promise((r) => {
  const s = net.connect(22, '127.0.0.1', () => (s.destroy(), r(true)));
  s.on('error', () => r(false));
});
const user = process.env.USER ?? 'root';
console.log(`
devstreams is running: hub https://localhost:${port}, device "${device}" (allows ssh -> 127.0.0.1:22 and echo).
Logs: ${dir}/logs/. Ctrl-C stops both.

In another shell on this machine:

  export DEVSTREAMS_HUB=https://localhost:${port}
  export DEVSTREAMS_TOKEN="$(cat ${dir}/service.token)"
  export DEVSTREAMS_CA=${dir}/tls/ca.crt
  alias devstreams='${ds}'

  devstreams echo ${device}
  ssh -o ProxyCommand='${ds} connect %h ssh' ${user}@${device}
  devstreams forward ${device} ssh --listen 2222     # then: ssh -p 2222 ${user}@localhost
  devstreams devices
  devstreams streams
${sshdUp ? '' : `\nNote: nothing listens on 127.0.0.1:22, so the ssh lines will be refused with 503 TARGET_UNREACHABLE.\n`}`);

await Promise.all(children.map((c) => new Promise((r) => c.on('exit', r))));
