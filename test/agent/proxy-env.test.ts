import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAgentCli } from '../../agent/cli.js';
import { ConfigError } from '../../protocol/index.js';
import { Tinyproxy } from '../daemon/netns-proxy.js';
import { freePort } from '../helpers/proc.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';
import { FakeHub } from './fake-hub.js';
import type { LogLine } from './helpers.js';

/**
 * HTTPS_PROXY as people write it, against a real HTTP proxy (Debian's tinyproxy on 127.0.0.1) in
 * front of a stand-in hub: `host:port` and `user:pw@host:port` are taken as http:// (as curl does)
 * and carry the agent online through the proxy; a SOCKS or https:// proxy URL stops the agent at
 * start with a ConfigError naming the variable, never its credentials. Before, `host:port` ended
 * in "devstreams: Invalid URL", `user:pw@...` dialed port 80, and the others were used as HTTP
 * proxies that could not work.
 */
const skip = spawnSync('tinyproxy', ['-v'], { timeout: 5000 }).status === 0 ? null : 'tinyproxy is not installed';
const USER = 'alice';
const PASSWORD = 's3cret-proxy-pw';

let tls: TestTls;
let hub: FakeHub;
let dir: string;
let open: Tinyproxy;
let authed: Tinyproxy;
let wrongPort: Tinyproxy;

/** Runs `devstreams agent` with `env` until `until` holds for a log line; returns the lines, stopped. */
async function runUntil(env: NodeJS.ProcessEnv, until: (l: LogLine) => boolean): Promise<LogLine[]> {
  const lines: LogLine[] = [];
  const stop = new AbortController();
  let seen!: () => void;
  const reached = new Promise<void>((resolve) => (seen = resolve));
  const destination = {
    write(s: string) {
      const line = JSON.parse(s) as LogLine;
      lines.push(line);
      if (until(line)) seen();
    },
  };
  const exited = runAgentCli(['--config', join(dir, 'agent.yaml')], { signal: stop.signal, logDestination: destination, env, totalMemoryBytes: 2 ** 30 });
  await Promise.race([reached, exited]);
  stop.abort();
  expect(await exited).toBe(0);
  return lines;
}

describe.skipIf(skip !== null)(`HTTPS_PROXY values${skip ? ` [skipped: ${skip}]` : ''}`, { timeout: 60_000 }, () => {
  beforeAll(async () => {
    tls = makeTestTls();
    hub = new FakeHub(tls);
    await hub.start();
    dir = mkdtempSync(join(tmpdir(), 'devstreams-agent-proxy-'));
    writeFileSync(join(dir, 'px-dev.key'), hub.addDevice('px-dev'), { mode: 0o600 });
    writeFileSync(join(dir, 'ca.pem'), tls.ca);
    writeFileSync(
      join(dir, 'agent.yaml'),
      `hub:\n  url: ${hub.url}\n  deviceId: px-dev\n  keyFile: px-dev.key\n  ca: ca.pem\n  reconnect: { initialDelayMs: 50, maxDelayMs: 200 }\nallow:\n  - { name: echo, builtin: echo }\n`,
    );
    open = await new Tinyproxy({ listen: '127.0.0.1', port: await freePort(), allow: ['127.0.0.1'], connectPorts: [hub.port] }).start();
    authed = await new Tinyproxy({
      listen: '127.0.0.1',
      port: await freePort(),
      allow: ['127.0.0.1'],
      connectPorts: [hub.port],
      basicAuth: { user: USER, password: PASSWORD },
    }).start();
    // CONNECT allowed to some other port only: tinyproxy answers the hub's 403.
    wrongPort = await new Tinyproxy({ listen: '127.0.0.1', port: await freePort(), allow: ['127.0.0.1'], connectPorts: [1] }).start();
  }, 30_000);
  afterAll(async () => {
    await wrongPort?.stop();
    await open?.stop();
    await authed?.stop();
    await hub?.stop();
  });

  it('HOST:PORT (no scheme) is http://HOST:PORT: online through the proxy', async () => {
    const mark = open.lineCount;
    const lines = await runUntil({ HTTPS_PROXY: `127.0.0.1:${open.opts.port}` }, (l) => l.msg === 'agent connected');
    expect(lines.find((l) => l.msg === 'hub connections go through an HTTP proxy')).toMatchObject({ proxy: `http://127.0.0.1:${open.opts.port}` });
    expect(lines.some((l) => l.msg === 'agent connected')).toBe(true);
    expect(open.connectsSince(mark)).toContain(`127.0.0.1:${hub.port}`);
  });

  it('USER:PW@HOST:PORT (no scheme, in https_proxy): online through a proxy that wants those credentials, which are never logged', async () => {
    const mark = authed.lineCount;
    const lines = await runUntil({ https_proxy: `${USER}:${PASSWORD}@127.0.0.1:${authed.opts.port}` }, (l) => l.msg === 'agent connected');
    expect(lines.find((l) => l.msg === 'hub connections go through an HTTP proxy')).toMatchObject({ proxy: `http://127.0.0.1:${authed.opts.port}` });
    expect(lines.some((l) => l.msg === 'agent connected')).toBe(true);
    expect(authed.connectsSince(mark)).toContain(`127.0.0.1:${hub.port}`);
    expect(JSON.stringify(lines)).not.toContain(PASSWORD);
  });

  it.each([
    ['HTTPS_PROXY', `socks5://${USER}:${PASSWORD}@127.0.0.1:1080`, /^HTTPS_PROXY: scheme must be http: \(got socks5:\)/],
    ['HTTPS_PROXY', `https://${USER}:${PASSWORD}@127.0.0.1:3128`, /^HTTPS_PROXY: scheme must be http: \(got https:; the agent speaks plain HTTP to the proxy/],
    ['https_proxy', `http://${USER}:${PASSWORD}@127.0.0.1:3128/path`, /^https_proxy: must have no path, query or fragment/],
    ['HTTPS_PROXY', `${USER}:${PASSWORD}@proxy host:3128`, /^HTTPS_PROXY: must be a URL like http:\/\/proxy\.example\.com:3128/],
  ])('%s=%s stops the agent at start with a ConfigError naming the variable, not the credentials', async (name, value, message) => {
    const lines: string[] = [];
    const run = runAgentCli(['--config', join(dir, 'agent.yaml')], { env: { [name]: value }, logDestination: { write: (s: string) => void lines.push(s) } });
    const err = await run.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(/hub\.proxy/); // the way out: the config's setting wins
    expect((err as Error).message).not.toContain(PASSWORD);
    expect((err as Error).message).not.toContain(USER);
    expect(lines).toEqual([]); // stopped before anything ran
  });

  it('a bad HTTPS_PROXY that is not used (hub.proxy: none) does not stop the agent', async () => {
    writeFileSync(join(dir, 'none.yaml'), `hub:\n  url: ${hub.url}\n  deviceId: px-dev\n  keyFile: px-dev.key\n  ca: ca.pem\n  proxy: none\nallow: []\n`);
    const stop = new AbortController();
    const lines: LogLine[] = [];
    let seen!: () => void;
    const connected = new Promise<void>((resolve) => (seen = resolve));
    const exited = runAgentCli(['--config', join(dir, 'none.yaml')], {
      signal: stop.signal,
      env: { HTTPS_PROXY: 'socks5://127.0.0.1:1080' },
      logDestination: { write: (s: string) => { const l = JSON.parse(s) as LogLine; lines.push(l); if (l.msg === 'agent connected') seen(); } },
    });
    await Promise.race([connected, exited]);
    stop.abort();
    expect(await exited).toBe(0);
    expect(lines.some((l) => l.msg === 'agent connected')).toBe(true);
  });

  describe('a proxy that does not let the agent through', () => {
    const reconnects = (n: number) => {
      let seen = 0;
      return (l: LogLine): boolean => l.msg === 'control channel reconnecting' && ++seen >= n;
    };
    const errors = (lines: LogLine[]) => lines.filter((l) => l.msg === 'control channel error' && l.level === 40);

    it('refusing the CONNECT (401, wrong credentials): one control channel error that blames the proxy, never "hub answered"', async () => {
      const lines = await runUntil({ HTTPS_PROXY: `http://${USER}:wrong-pw@127.0.0.1:${authed.opts.port}` }, reconnects(3));
      const errs = errors(lines);
      expect(errs).toHaveLength(1);
      expect(errs[0]).toMatchObject({ component: 'control', proxy: `http://127.0.0.1:${authed.opts.port}`, status: 401 });
      expect(errs[0]!.err).toBe(`the proxy refused the CONNECT to the hub (127.0.0.1:${hub.port}) with HTTP 401 Unauthorized; the hub was not reached`);
      expect(errs[0]!.hint).toMatch(/credentials/);
      expect(JSON.stringify(lines)).not.toMatch(/hub answered/);
      expect(JSON.stringify(lines)).not.toContain('wrong-pw');
      expect(lines.some((l) => l.msg === 'agent connected')).toBe(false);
    });

    it('refusing the CONNECT (403, a port it does not allow): blames the proxy and names the hub port to allow', async () => {
      const lines = await runUntil({ HTTPS_PROXY: `127.0.0.1:${wrongPort.opts.port}` }, reconnects(2));
      const errs = errors(lines);
      expect(errs).toHaveLength(1);
      expect(errs[0]).toMatchObject({ proxy: `http://127.0.0.1:${wrongPort.opts.port}`, status: 403 });
      expect(errs[0]!.err).toMatch(/^the proxy refused the CONNECT to the hub \(127\.0\.0\.1:\d+\) with HTTP 403/);
      expect(errs[0]!.hint).toContain(`CONNECT to 127.0.0.1:${hub.port}`);
      expect(JSON.stringify(lines)).not.toMatch(/hub answered/);
    });

    it('not running: the error names the proxy as the one that cannot be reached', async () => {
      const port = await freePort();
      const lines = await runUntil({ HTTPS_PROXY: `http://${USER}:${PASSWORD}@127.0.0.1:${port}` }, reconnects(2));
      const errs = errors(lines);
      expect(errs).toHaveLength(1);
      expect(errs[0]).toMatchObject({ component: 'control', proxy: `http://127.0.0.1:${port}`, code: 'ECONNREFUSED' });
      expect(errs[0]!.err).toBe(`cannot reach the proxy http://127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`);
      expect(errs[0]!.hint).toMatch(/HTTPS_PROXY/);
      expect(JSON.stringify(lines)).not.toContain(PASSWORD);
    });
  });
});
