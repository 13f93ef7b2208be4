import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../agent/config.js';
import { ConfigError } from '../../protocol/index.js';

const KEY = 'k3y-' + 'A'.repeat(40);
const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'devstreams-agent-config-'));
}

function write(d: string, name: string, text: string): string {
  const f = join(d, name);
  writeFileSync(f, text);
  return f;
}

const GOOD = `
hub:
  url: wss://localhost:8443/mqtt
  deviceId: pi-kitchen
  keyFile: pi-kitchen.key
  ca: ca.pem
allow:
  - { name: ssh, port: 22 }
  - { name: plc, host: 192.168.1.50, port: 502 }
  - { name: echo, builtin: echo }
limits:
  maxStreams: 4
log:
  level: debug
`;

function loadError(text: string, files: Record<string, string> = {}): ConfigError {
  const d = dir();
  for (const [n, t] of Object.entries(files)) write(d, n, t);
  const f = write(d, 'agent.yaml', text);
  try {
    loadAgentConfig(f);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.message.startsWith(`${f}: `)).toBe(true);
    expect(e.message).not.toContain('\n');
    expect(e.message).not.toContain(KEY);
    return e;
  }
  throw new Error('config loaded but should not have');
}

describe('agent config', () => {
  it('loads a good config: defaults, key and CA read relative to the file, deeply frozen', () => {
    const d = dir();
    write(d, 'pi-kitchen.key', `  ${KEY}\n`);
    write(d, 'ca.pem', CA_PEM);
    const c = loadAgentConfig(write(d, 'agent.yaml', GOOD));
    expect(c.hub).toMatchObject({
      url: 'wss://localhost:8443/mqtt',
      deviceId: 'pi-kitchen',
      key: KEY,
      ca: CA_PEM,
      reconnect: { initialDelayMs: 1000, maxDelayMs: 60_000 },
      pingIntervalMs: 15_000,
      keepaliveSec: 30,
      auth: 'token',
      tokenTtlSec: 3600,
      tlsCipher: 'auto',
      keyFile: join(d, 'pi-kitchen.key'),
    });
    expect(c.shutdown).toEqual({ graceMs: 10_000 });
    expect(c.status).toEqual({ intervalSec: 300, probeTimeoutMs: 5000 });
    expect(c.metrics).toEqual({ allowNonLoopback: false });
    expect(c.allow).toEqual([
      { kind: 'tcp', name: 'ssh', host: '127.0.0.1', port: 22 },
      { kind: 'tcp', name: 'plc', host: '192.168.1.50', port: 502 },
      { kind: 'builtin', name: 'echo', builtin: 'echo' },
    ]);
    expect(c.limits).toEqual({ maxStreams: 4, connectTimeoutMs: 5000 });
    expect(c.log.level).toBe('debug');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.hub)).toBe(true);
    expect(Object.isFrozen(c.allow[0])).toBe(true);
    expect(() => ((c.limits as { maxStreams: number }).maxStreams = 99)).toThrow();
  });

  it('accepts an inline key, mqtts:, and fills limits and log defaults', () => {
    const d = dir();
    const c = loadAgentConfig(
      write(d, 'a.yaml', `hub: { url: "mqtts://hub.example.com:8883", deviceId: d1, key: "${KEY}" }\nallow: []\n`),
    );
    expect(c.hub.key).toBe(KEY);
    expect(c.hub.ca).toBeUndefined();
    expect(c.limits).toEqual({ maxStreams: 16, connectTimeoutMs: 5000 });
    expect(c.log.level).toBe('info');
    expect(c.runtime).toEqual({ gc: 'auto' });
  });

  it('takes runtime.gc: throughput, and names a wrong value', () => {
    const d = dir();
    const c = loadAgentConfig(write(d, 'a.yaml', `hub: { url: "wss://hub.example.com/mqtt", deviceId: d1, key: "${KEY}" }\nallow: []\nruntime: { gc: throughput }\n`));
    expect(c.runtime.gc).toBe('throughput');
    expect(Object.isFrozen(c.runtime)).toBe(true);
    const e = loadError(`hub: { url: "wss://hub.example.com/mqtt", deviceId: d1, key: "${KEY}" }\nallow: []\nruntime: { gc: fast, heap: 1 }\n`);
    expect(e.message).toContain('runtime.gc:');
    expect(e.message).toContain('runtime: Unrecognized key: "heap"');
  });

  it('takes hub.tlsCipher: chacha20-poly1305, and names a wrong value', () => {
    const d = dir();
    const c = loadAgentConfig(write(d, 'a.yaml', `hub: { url: "wss://hub.example.com/mqtt", deviceId: d1, key: "${KEY}", tlsCipher: chacha20-poly1305 }\nallow: []\n`));
    expect(c.hub.tlsCipher).toBe('chacha20-poly1305');
    const e = loadError(`hub: { url: "wss://hub.example.com/mqtt", deviceId: d1, key: "${KEY}", tlsCipher: aes-256-cbc }\nallow: []\n`);
    expect(e.message).toMatch(/hub\.tlsCipher: .*"auto"\|"aes-gcm"\|"chacha20-poly1305"/);
  });

  it('resolves keyFile against the config folder, not the working directory', () => {
    const d = dir();
    mkdirSync(join(d, 'etc'));
    write(d, 'etc/dev.key', KEY);
    const c = loadAgentConfig(write(d, 'etc/agent.yaml', `hub: { url: "wss://h/mqtt", deviceId: d1, keyFile: dev.key }\nallow: []\n`));
    expect(c.hub.key).toBe(KEY);
  });

  it('names the file, the field path and the problem, on one line, for every problem', () => {
    const e = loadError(`
hub: { url: "wss://localhost/mqtt", deviceId: "bad id!", key: "${KEY}", kye: 1 }
allow:
  - { name: ssh, port: 22 }
  - { name: plc, port: 70000 }
  - { name: ssh, port: 23 }
  - { name: web, prot: 80 }
  - { name: e, builtin: echo, port: 7 }
  - { name: "8080", port: 8080 }
  - { name: x, host: "bad host!", port: 1 }
  - { name: y, builtin: telnet }
limits: { maxStreams: 0, connectTimeoutMs: 1.5, extra: true }
log: { level: loud }
`);
    const m = e.message;
    expect(m).toContain('hub.deviceId: must be');
    expect(m).toContain('hub: Unrecognized key: "kye"');
    expect(m).toContain('allow.1.port: Too big: expected number to be <=65535');
    expect(m).toContain('allow.2.name: duplicate name "ssh" (also allow.0)');
    expect(m).toContain('allow.3: Unrecognized key: "prot"');
    expect(m).toContain('allow.4.builtin: a builtin entry takes no host or port');
    expect(m).toContain('allow.5.name: must not be only digits');
    expect(m).toContain('allow.6.host: must be a host name or an IP address');
    expect(m).toContain('allow.7.builtin:');
    expect(m).toContain('limits.maxStreams: Too small');
    expect(m).toContain('limits.connectTimeoutMs:');
    expect(m).toContain('limits: Unrecognized key: "extra"');
    expect(m).toContain('log.level:');
  });

  it('refuses hub URLs that are not wss:/mqtts:, or carry credentials', () => {
    expect(loadError(`hub: { url: "ws://h/mqtt", deviceId: d, key: "${KEY}" }\nallow: []\n`).message).toContain(
      'hub.url: scheme must be wss: or mqtts:',
    );
    expect(loadError(`hub: { url: "wss://u:p@h/mqtt", deviceId: d, key: "${KEY}" }\nallow: []\n`).message).toContain(
      'hub.url: must not carry credentials',
    );
    expect(loadError(`hub: { url: "not a url", deviceId: d, key: "${KEY}" }\nallow: []\n`).message).toContain('hub.url:');
  });

  it('requires exactly one of keyFile and key', () => {
    expect(loadError(`hub: { url: "wss://h/mqtt", deviceId: d }\nallow: []\n`).message).toContain(
      'hub: exactly one of keyFile or key is required',
    );
    expect(
      loadError(`hub: { url: "wss://h/mqtt", deviceId: d, key: "${KEY}", keyFile: k }\nallow: []\n`, { k: KEY }).message,
    ).toContain('hub: exactly one of keyFile or key is required');
  });

  it('names a missing key file without printing any key', () => {
    const e = loadError(`hub: { url: "wss://h/mqtt", deviceId: d, keyFile: nowhere.key }\nallow: []\n`);
    expect(e.message).toMatch(/hub\.keyFile: cannot read key file \S*nowhere\.key \(ENOENT\)/);
  });

  it('refuses an empty key file and a CA file without a certificate', () => {
    const e = loadError(`hub: { url: "wss://h/mqtt", deviceId: d, keyFile: k, ca: ca.pem }\nallow: []\n`, {
      k: '\n',
      'ca.pem': 'hello',
    });
    expect(e.message).toContain('hub.keyFile: key file');
    expect(e.message).toContain('hub.ca: CA file');
  });

  it('reports YAML syntax errors and unreadable files with the file name', () => {
    expect(loadError('hub: [unclosed\n').message).toMatch(/: line .*Flow sequence/);
    expect(() => loadAgentConfig('/nonexistent/agent.yaml')).toThrow(/^\/nonexistent\/agent\.yaml: cannot read file \(ENOENT\)$/);
  });
});
