import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { build } from 'esbuild';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ERRORS } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { formatDevices } from '../../service/tables.js';
import { FakeHub, echoRelay, errorBody } from './fake-hub.js';

/** The dispatcher as a real process: exit codes, one-line errors, stdout flushed, signals. */

const ROOT = join(import.meta.dirname, '../..');
// Bundled next to node_modules so the external npm packages resolve; not the shared dist/ file. Split
// into chunks, so a service command does not load the hub's and agent's packages (faster to spawn).
const OUT_DIR = join(ROOT, 'node_modules/.cache/devstreams-service-test', String(process.pid));
const OUT = join(OUT_DIR, 'devstreams.mjs');
const TOKEN = 'service-token-0123456789abcdef';
let tls: TestTls;
let hub: FakeHub | undefined;

beforeAll(async () => {
  tls = makeTestTls();
  await build({
    entryPoints: [join(ROOT, 'bin/devstreams.ts')],
    outdir: OUT_DIR,
    outExtension: { '.js': '.mjs' },
    splitting: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    define: { __DEVSTREAMS_VERSION__: '"9.9.9-test"' },
    logLevel: 'error',
  });
});

afterAll(() => rmSync(OUT_DIR, { recursive: true, force: true }));

afterEach(async () => {
  await hub?.stop();
  hub = undefined;
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(
  args: string[],
  env: Record<string, string> = {},
  onStdout?: (text: string, kill: (sig: NodeJS.Signals) => void) => void,
  cwd?: string,
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OUT, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      ...(cwd !== undefined ? { cwd } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      onStdout?.(stdout, (sig) => child.kill(sig));
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const hubEnv = (h: FakeHub): Record<string, string> => ({ DEVSTREAMS_HUB: h.url, DEVSTREAMS_TOKEN: TOKEN, DEVSTREAMS_CA: tls.caFile });

describe('bin/devstreams', () => {
  it('prints the version and the usage', async () => {
    const [version, help] = await Promise.all([run(['--version']), run(['--help'])]);
    expect(version).toEqual({ code: 0, stdout: `devstreams 9.9.9-test (node ${process.version})\n`, stderr: '' });
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    for (const c of ['hub init', 'add-device', 'hub token create', 'agent --config', 'connect DEVICE SERVICE', 'forward DEVICE SERVICE --listen', 'echo DEVICE', 'devices | streams']) {
      expect(help.stdout).toContain(c);
    }
  });

  it('without a command prints the usage on stderr and exits 2, as for any usage error', async () => {
    const [bare, help] = await Promise.all([run([]), run(['--help'])]);
    expect(bare).toEqual({ code: 2, stdout: '', stderr: help.stdout });
  });

  it('help texts describe what the executable prints and carries', async () => {
    const [devices, agent] = await Promise.all([run(['devices', '--help']), run(['agent', '--help'])]);
    // Every column the table has, in its order (its header, from the code that prints it).
    const columns = formatDevices([]).trim().split(/ {2,}/);
    expect(devices.stdout).toContain(`Lists the hub's devices: ${columns.join(', ')} `);
    expect(agent.code).toBe(0);
    expect(agent.stdout).toContain('/etc/devstreams/agent.yaml');
    expect(agent.stdout).not.toMatch(/docs\/|\.md\b/); // an executable or .deb user has no source tree
  });

  it('a hub command without --config and no ./.devstreams names the default it tried and what to pass', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'devstreams-no-hub-'));
    try {
      const results = await Promise.all([['hub', 'token', 'list'], ['hub', 'add-device', 'pi'], ['hub', 'disable-device', 'pi'], ['hub']].map((a) => run(a, {}, undefined, cwd)));
      for (const r of results) {
        expect(r).toEqual({
          code: 2,
          stdout: '',
          stderr:
            `devstreams: ${join(cwd, '.devstreams/hub.yaml')}: no such file (without --config the hub commands read .devstreams/hub.yaml under the current directory); ` +
            'pass --config DIR/hub.yaml for the folder `devstreams hub init --dir DIR` made, or run from the directory that holds .devstreams\n',
        });
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('exits 2 with one line for usage and config errors', async () => {
    const [unknown, badCa] = await Promise.all([
      run(['frobnicate']),
      run(['devices', '--hub', 'https://h', '--token', TOKEN, '--ca', '/nonexistent/ca.pem']),
    ]);
    expect(unknown).toEqual({ code: 2, stdout: '', stderr: 'devstreams: unknown command "frobnicate" (see devstreams --help)\n' });
    expect(badCa).toEqual({ code: 2, stdout: '', stderr: 'devstreams: /nonexistent/ca.pem: cannot read CA file (ENOENT)\n' });
  });

  it('runs echo, prints a refusal as one line, and exits 1 on a hub error', async () => {
    hub = await new FakeHub(tls).start();
    hub.api = (call, h) => {
      if (call.path.startsWith('/api/v1/devices/pi/streams/connect?')) return h.defaultApi(call);
      if (call.path.startsWith('/api/v1/devices/pi-2/streams/connect?')) return errorBody('SERVICE_DENIED', 403, 'service "echo" is not allowed');
      return errorBody('UNAUTHORIZED', 401, 'unknown service token');
    };
    const [ok, refused, query] = await Promise.all([
      run(['echo', 'pi', '--bytes', '65536'], hubEnv(hub)),
      run(['echo', 'pi-2'], hubEnv(hub)),
      run(['streams'], hubEnv(hub)),
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toMatch(/^echo ok: 65536 bytes, set-up \d+ ms, round trip \d+ ms\n$/);
    expect(ok.code).toBe(0);
    expect(refused).toEqual({
      code: 1,
      stdout: '',
      stderr: 'devstreams: pi-2/echo refused: 403 SERVICE_DENIED: service "echo" is not allowed\n',
    });
    expect(query).toEqual({ code: 1, stdout: '', stderr: 'devstreams: unknown service token\n' });
  });

  it('connect ends quietly when the reader of its output goes away (connect ... | head -c 20)', async () => {
    hub = await new FakeHub(tls).start();
    const closes: number[] = [];
    hub.relay = (ws) => {
      echoRelay(ws);
      ws.once('close', (code) => closes.push(code));
    };
    const child = spawn(process.execPath, [OUT, 'connect', 'pi', 'echo'], { env: { PATH: process.env.PATH ?? '', ...hubEnv(hub) }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.on('error', () => undefined);
    child.stdin.write(Buffer.alloc(4 << 20, 7)); // more than the pipes hold: the echo keeps writing
    await new Promise((r) => child.stdout.once('readable', r));
    expect(child.stdout.read(20)).toEqual(Buffer.alloc(20, 7));
    child.stdout.destroy(); // as head does once it has its 20 bytes
    const [code] = (await once(child, 'close')) as [number | null];
    expect(stderr).toBe('');
    expect(code).toBe(1);
    // Its close frame left before it exited: the hub saw PEER_GONE's code, not 1006 (no close frame).
    await vi.waitFor(() => expect(closes).toEqual([ERRORS.PEER_GONE.ws]));
  });

  it('forward prints its port, serves, and exits 0 on SIGTERM', async () => {
    hub = await new FakeHub(tls).start();
    let served = false;
    const result = await run(['forward', 'pi', 'web', '--listen', '0'], hubEnv(hub), (text, kill) => {
      const m = /^listening on 127\.0\.0\.1:(\d+) -> pi\/web\n$/.exec(text);
      if (!m || served) return;
      served = true;
      const s = net.connect({ host: '127.0.0.1', port: Number(m[1]) });
      let back = '';
      s.on('data', (c: Buffer) => (back += c.toString()));
      s.once('end', () => {
        expect(back).toBe('ping');
        kill('SIGTERM');
      });
      s.end('ping');
    });
    expect(served).toBe(true);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
