// `npm start`: a local hub (embedded broker, development TLS) and a local agent that allows this
// machine's sshd and the built-in echo service; prints the lines to try. Ctrl-C stops both.
// Everything lives in ./.devstreams (hub.yaml, dev CA, service token, device config, logs/).
// `npm start -- --port 9443 --dir /tmp/ds` picks another port and folder (two checkouts, or 8443
// taken); a folder made before keeps the port it was made with.
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const usage = 'usage: npm start [-- --port PORT] [--dir FOLDER]   (defaults: 8443, ./.devstreams)';
let opts;
try {
  opts = parseArgs({ options: { port: { type: 'string' }, dir: { type: 'string' }, help: { type: 'boolean' } } }).values;
} catch (err) {
  console.error(`devstreams: ${err.message}\n${usage}`);
  process.exit(2);
}
if (opts.help) {
  console.log(usage);
  process.exit(0);
}
const dir = resolve(opts.dir ?? '.devstreams');
const asked = opts.port === undefined ? 8443 : Number(opts.port);
if (!Number.isInteger(asked) || asked < 1 || asked > 65535) {
  console.error(`devstreams: --port must be a port number from 1 to 65535 (got "${opts.port}")\n${usage}`);
  process.exit(2);
}
// A folder made before keeps its hub.yaml's listen port.
const made = existsSync(`${dir}/hub.yaml`) ? /^listen:\s*"?[^\n"]*:(\d+)"?\s*$/m.exec(readFileSync(`${dir}/hub.yaml`, 'utf8')) : null;
const port = made ? Number(made[1]) : asked;
if (made && opts.port !== undefined && port !== asked) {
  console.error(`devstreams: ${dir} was made for port ${port}; using it (remove the folder, or pass another --dir, for ${asked})`);
}
const device = 'demo-device';
const cli = fileURLToPath(new URL('../dist/devstreams.mjs', import.meta.url));
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
