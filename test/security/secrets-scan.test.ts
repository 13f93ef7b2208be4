import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceSigningKey } from '../../protocol/index.js';
import { CliProcess, freePort, runCli, type RunResult } from '../helpers/proc.js';

/**
 * Secrets never leave their files: with known secrets (device keys, service tokens, stream tokens,
 * the hub's stored signing keys), run the main flows as real processes at log level debug (init,
 * add-device, token create/list/revoke, rotate-key, hub and agents with token and key auth, streams
 * opened and refused, CLI usage errors, bad configs) and scan every byte any process printed for
 * each secret in raw, base64, base64url and hex form, and for any device token (`dsas1.`).
 * Also: every file that holds a secret is 0600, and the agent warns about a readable key file.
 */

const dir = mkdtempSync(join(tmpdir(), 'devstreams-secrets-'));
const outputs: Array<{ what: string; text: string }> = [];
const secrets = new Map<string, string>();
let hub: CliProcess;
const agents: CliProcess[] = [];
let port = 0;
let createdToken = '';

const cfg = join(dir, 'hub.yaml');
async function cli(what: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const r = await runCli(args, { env });
  outputs.push({ what: `${what} stdout`, text: r.stdout }, { what: `${what} stderr`, text: r.stderr });
  return r;
}
function setLogLevel(file: string, level: string): void {
  const y = parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  y.log = { level };
  writeFileSync(file, stringify(y), { mode: 0o600 });
}
function serviceEnv(token: string): NodeJS.ProcessEnv {
  return { DEVSTREAMS_HUB: `https://localhost:${port}`, DEVSTREAMS_TOKEN: token, DEVSTREAMS_CA: join(dir, 'tls', 'ca.crt') };
}
/** POST an open-stream call directly, to learn a stream token as a service does. */
function openRaw(token: string, device: string): Promise<{ token: string; url: string }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ service: 'echo' });
    const req = request(
      { host: '127.0.0.1', servername: 'localhost', port, method: 'POST', path: `/api/v1/devices/${device}/streams`, ca: readFileSync(join(dir, 'tls', 'ca.crt')), agent: false,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as { token: string; url: string }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  port = await freePort();
  expect((await cli('init', ['hub', 'init', '--dir', dir, '--listen', `127.0.0.1:${port}`])).code).toBe(0);
  setLogLevel(cfg, 'debug');
  expect((await cli('add-device tok', ['hub', 'add-device', 'dev-tok', '--config', cfg, '--allow', 'echo'])).code).toBe(0);
  expect((await cli('add-device key', ['hub', 'add-device', 'dev-key', '--config', cfg, '--allow', 'echo'])).code).toBe(0);
  secrets.set('service token', readFileSync(join(dir, 'service.token'), 'utf8'));
  secrets.set('original key of dev-key', readFileSync(join(dir, 'devices', 'dev-key.key'), 'utf8'));
  expect((await cli('rotate-key', ['hub', 'rotate-key', 'dev-tok', '--slot', 'secondary', '--config', cfg])).code).toBe(0);
  for (const id of ['dev-tok', 'dev-key']) {
    const key = readFileSync(join(dir, 'devices', `${id}.key`), 'utf8');
    secrets.set(`key of ${id}`, key);
    secrets.set(`signing key of ${id}`, deviceSigningKey(key));
    const agentYaml = join(dir, 'devices', `${id}.yaml`);
    setLogLevel(agentYaml, 'debug');
    if (id === 'dev-key') {
      const y = parse(readFileSync(agentYaml, 'utf8')) as { hub: Record<string, unknown> };
      y.hub.auth = 'key';
      writeFileSync(agentYaml, stringify(y), { mode: 0o600 });
      chmodSync(join(dir, 'devices', `${id}.key`), 0o644); // the agent must warn about this
    }
  }
  const created = await cli('token create', ['hub', 'token', 'create', 'ci', '--devices', 'dev-tok', '--config', cfg]);
  expect(created.code).toBe(0);
  createdToken = created.stdout.trim();
  outputs.pop(); // stdout of `token create` is the one place a token is shown; its stderr stays scanned
  outputs.pop();
  outputs.push({ what: 'token create stderr', text: created.stderr });
  secrets.set('created token', createdToken);

  hub = new CliProcess(['hub', '--config', cfg]);
  await hub.waitForLog('hub listening');
  for (const id of ['dev-tok', 'dev-key']) {
    const a = new CliProcess(['agent', '--config', join(dir, 'devices', `${id}.yaml`)]);
    agents.push(a);
    await a.waitForLog('agent connected');
  }
}, 90_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await hub?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('secrets', () => {
  it('run the flows, then find no secret in any output', async () => {
    const svc = secrets.get('service token')!;
    // Streams that work, through the CLI (verbose) and through the raw API (to learn stream tokens).
    expect((await cli('echo tok', ['echo', 'dev-tok', '--bytes', '1000', '-v'], serviceEnv(svc))).code).toBe(0);
    expect((await cli('echo key', ['echo', 'dev-key', '--bytes', '1000', '-v'], serviceEnv(createdToken))).code).not.toBe(0); // out of scope: 403
    expect((await cli('echo scoped', ['echo', 'dev-tok', '--bytes', '1000', '-v'], serviceEnv(createdToken))).code).toBe(0);
    const raw = await openRaw(svc, 'dev-key');
    secrets.set('stream token', raw.token);
    // Refusals and errors.
    expect((await cli('unknown device', ['echo', 'nobody', '-v'], serviceEnv(svc))).code).not.toBe(0);
    expect((await cli('wrong token', ['devices', '-v'], serviceEnv(`${svc.slice(0, 20)}WRONGWRONGWRONG`))).code).not.toBe(0);
    secrets.set('wrong token', `${svc.slice(0, 20)}WRONGWRONGWRONG`);
    expect((await cli('bad flag', ['echo', 'dev-tok', '--nope'], serviceEnv(svc))).code).not.toBe(0);
    expect((await cli('token list', ['hub', 'token', 'list', '--config', cfg])).code).toBe(0);
    expect((await cli('token list json', ['hub', 'token', 'list', '--json', '--config', cfg])).code).toBe(0);
    expect((await cli('dup token', ['hub', 'token', 'create', 'ci', '--config', cfg])).code).not.toBe(0);
    // Bad configs: an agent config with an inline key and a typo; a hub config with a bad field.
    const badAgent = join(dir, 'bad-agent.yaml');
    writeFileSync(badAgent, `hub: {url: "wss://localhost:${port}/mqtt", deviceId: dev-key, key: "${secrets.get('key of dev-key')}", tokenTtlSec: 5}\nallow: []\n`, { mode: 0o600 });
    expect((await cli('bad agent config', ['agent', '--config', badAgent])).code).not.toBe(0);
    const badHub = join(dir, 'bad-hub.yaml');
    writeFileSync(badHub, readFileSync(cfg, 'utf8').replace('registry: registry.json', 'registry: registry.json\nbogus: 1'), { mode: 0o600 });
    expect((await cli('bad hub config', ['hub', '--config', badHub])).code).not.toBe(0);
    // An agent whose key is wrong: refused, retried, logged without the key.
    const wrongKey = join(dir, 'wrong-agent.yaml');
    writeFileSync(wrongKey, `hub: {url: "wss://localhost:${port}/mqtt", deviceId: dev-tok, key: "${'Z'.repeat(43)}", ca: "${join(dir, 'tls', 'ca.crt')}"}\nallow: []\nlog: {level: debug}\n`, { mode: 0o600 });
    secrets.set('wrong device key', 'Z'.repeat(43));
    const wrong = new CliProcess(['agent', '--config', wrongKey]);
    await wrong.waitForLog('control channel error');
    await wrong.stop();
    await hub.waitForLog('mqtt connection refused', { device: 'dev-tok' });
    // Revoke the created token, then use it.
    expect((await cli('revoke', ['hub', 'token', 'revoke', 'ci', '--config', cfg])).code).toBe(0);
    expect((await cli('revoked token', ['devices'], serviceEnv(createdToken))).code).not.toBe(0);

    outputs.push({ what: 'wrong-key agent', text: wrong.lines.join('\n') });
    outputs.push({ what: 'hub', text: hub.lines.join('\n') });
    agents.forEach((a, i) => outputs.push({ what: `agent ${i}`, text: a.lines.join('\n') }));

    const leaks: string[] = [];
    for (const [name, secret] of secrets) {
      const forms = new Set([secret, Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('hex')]);
      if (/^[A-Za-z0-9_-]{43}$/.test(secret)) {
        const bytes = Buffer.from(secret, 'base64url');
        forms.add(bytes.toString('hex'));
        forms.add(bytes.toString('base64'));
        forms.add(bytes.toString('base64').replace(/=+$/, ''));
      }
      for (const o of outputs) for (const f of forms) if (o.text.includes(f)) leaks.push(`${name} in ${o.what}`);
    }
    for (const o of outputs) if (o.text.includes('dsas1.')) leaks.push(`a device token in ${o.what}`);
    expect(leaks).toEqual([]);
    // The scan saw real output: the flows ran and logged at debug.
    expect(hub.lines.length).toBeGreaterThan(20);
    expect(outputs.length).toBeGreaterThan(30);
  });

  it('token create shows the token once, on stdout, alone', () => {
    expect(createdToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(readFileSync(join(dir, 'tokens.json'), 'utf8')).not.toContain(createdToken);
  });

  it('the agent warns at start-up about a key file others can read', () => {
    const warn = agents[1]!.logs('key file ' + join(dir, 'devices', 'dev-key.key') + ' has mode 0644: readable or writable by its group and other users; run chmod 600 ' + join(dir, 'devices', 'dev-key.key'));
    expect(warn).toHaveLength(1);
    expect(agents[0]!.lines.some((l) => l.includes('chmod 600'))).toBe(false);
  });

  it('every file holding a secret is 0600', () => {
    const files = ['hub.yaml', 'service.token', 'tokens.json', 'registry.json', 'tls/ca.key', 'tls/hub.key', 'devices/dev-tok.key', 'devices/dev-tok.yaml', 'devices/dev-key.yaml'];
    for (const f of files) expect((statSync(join(dir, f)).mode & 0o777).toString(8), f).toBe('600');
    // Nothing else in the folder is writable or readable by others except public certificates.
    for (const f of readdirSync(join(dir, 'tls'))) if (f.endsWith('.crt')) expect(statSync(join(dir, 'tls', f)).mode & 0o022).toBe(0);
  });
});
