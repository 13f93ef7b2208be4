import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  apiErrorOf,
  ConfigError,
  decodePayload,
  ERRORS,
  errorCodeOfClose,
  isOwnResponseTopic,
  parseServiceSpec,
  parseTopic,
  StreamRequestSchema,
  topics,
} from '../../protocol/index.js';
import * as z from '../../protocol/zod.js';
import { loadConfigFile } from '../../protocol/config-loader.js';

describe('topics', () => {
  it('round-trips every topic kind and refuses anything else', () => {
    expect(parseTopic(topics.streamRequest('pi-1'))).toEqual({ deviceId: 'pi-1', kind: 'streamRequest' });
    expect(parseTopic(topics.streamResponse('pi-1', 'node9'))).toEqual({ deviceId: 'pi-1', kind: 'streamResponse', nodeId: 'node9' });
    expect(parseTopic(topics.status('pi-1'))).toEqual({ deviceId: 'pi-1', kind: 'status' });
    for (const bad of ['devstreams/v1/devices/+/status', 'devstreams/v1/devices/#', 'devstreams/v1/devices/a/status/x', 'other/a/status', 'devstreams/v1/devices//status']) {
      expect(parseTopic(bad)).toBeNull();
    }
    expect(isOwnResponseTopic(topics.streamResponse('a', 'n'), 'a')).toBe(true);
    expect(isOwnResponseTopic(topics.streamResponse('b', 'n'), 'a')).toBe(false);
    expect(isOwnResponseTopic(topics.status('a'), 'a')).toBe(false);
  });
});

describe('service specs', () => {
  it('parses names, ports and host:port, and refuses the rest', () => {
    expect(parseServiceSpec('ssh')).toEqual({ kind: 'name', name: 'ssh' });
    expect(parseServiceSpec('22')).toEqual({ kind: 'port', port: 22 });
    expect(parseServiceSpec('192.168.1.50:502')).toEqual({ kind: 'hostPort', host: '192.168.1.50', port: 502 });
    expect(parseServiceSpec('[::1]:22')).toEqual({ kind: 'hostPort', host: '::1', port: 22 });
    for (const bad of ['', '0', '65536', 'a b', 'host:0', 'x'.repeat(300), 'UPPER', '../etc']) expect(parseServiceSpec(bad)).toBeNull();
  });
});

describe('error codes', () => {
  it('map every code to an HTTP status and a WebSocket close code in range', () => {
    for (const [code, m] of Object.entries(ERRORS)) {
      expect(m.http, code).toBeGreaterThanOrEqual(400);
      expect(m.http, code).toBeLessThan(600);
      expect(m.ws === 1001 || m.ws === 1009 || m.ws === 1011 || (m.ws >= 4000 && m.ws < 5000), code).toBe(true);
    }
  });

  it('give every code its own close code, so a close maps back to the code that sent it', () => {
    for (const [code, m] of Object.entries(ERRORS)) expect(errorCodeOfClose(m.ws), code).toBe(code);
    expect(errorCodeOfClose(4999)).toBe('PEER_GONE');
  });
});

describe('decodePayload', () => {
  const good = {
    v: 1,
    streamId: 'A'.repeat(22),
    service: 'ssh',
    relayUrl: 'wss://hub.example.com/api/v1/streams/x/connect',
    token: 't'.repeat(43),
    expiresAt: Date.now() + 60_000,
    replyTo: topics.streamResponse('pi', 'n1'),
  };
  it('accepts a good request and names the bad field otherwise', () => {
    expect(decodePayload(StreamRequestSchema, JSON.stringify(good)).ok).toBe(true);
    const bad = decodePayload(StreamRequestSchema, JSON.stringify({ ...good, expiresAt: 'soon' }));
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error).toMatch(/^expiresAt: /);
    const extra = decodePayload(StreamRequestSchema, JSON.stringify({ ...good, evil: 1 }));
    expect(extra.ok).toBe(false);
    expect(decodePayload(StreamRequestSchema, '{not json').ok).toBe(false);
    const big = decodePayload(StreamRequestSchema, Buffer.alloc(9000, 32));
    expect(big.ok || big.error).toMatch(/limit/);
  });
});

describe('apiErrorOf', () => {
  it('reads the protocol error shape from a refusal body, and nothing else', () => {
    const error = { code: 'SERVICE_DENIED', status: 403, reason: 'not in the allowlist' };
    expect(apiErrorOf(Buffer.from(JSON.stringify({ error })))).toEqual(error);
    expect(apiErrorOf(Buffer.from(JSON.stringify({ error: { ...error, code: 'NO_SUCH_CODE' } })))).toBeUndefined();
    expect(apiErrorOf(Buffer.from('<html>502 Bad Gateway</html>'))).toBeUndefined();
    expect(apiErrorOf(Buffer.alloc(0))).toBeUndefined();
  });
});

describe('loadConfigFile', () => {
  const schema = z.strictObject({ port: z.int().check(z.lte(65535)), name: z._default(z.string(), 'x') });
  const file = (text: string): string => {
    const f = join(mkdtempSync(join(tmpdir(), 'ds-cfg-')), 'c.yaml');
    writeFileSync(f, text);
    return f;
  };
  it('applies defaults and freezes', () => {
    const cfg = loadConfigFile(file('port: 22\n'), schema);
    expect(cfg).toEqual({ port: 22, name: 'x' });
    expect(Object.isFrozen(cfg)).toBe(true);
  });
  it('reports every problem with its path and the file, on one line', () => {
    const f = file('port: 70000\nnmae: typo\n');
    try {
      loadConfigFile(f, schema);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const msg = (err as ConfigError).message;
      expect(msg.startsWith(`${f}: `)).toBe(true);
      // Zod's English messages (protocol/zod.ts), not Mini's bare "Invalid input".
      expect(msg).toContain('port: Too big: expected number to be <=65535');
      expect(msg).toContain('Unrecognized key: "nmae"');
      expect(msg).not.toContain('\n');
    }
  });
  it('names YAML syntax errors with their line, and a missing file', () => {
    expect(() => loadConfigFile(file('port: [1,\n'), schema)).toThrow(/line \d+/);
    // A key indented one space too far: the parser meets it at the end of the line before, and the
    // message names both lines.
    const over = z.strictObject({ hub: z.strictObject({ id: z.string(), url: z.optional(z.string()) }) });
    expect(() => loadConfigFile(file('hub:\n  id: pi\n   url: wss://h/mqtt\n'), over)).toThrow(/: line 2: Nested mappings are not allowed in compact mappings \(and 1 more YAML error after it\)$/);
    // One indented too little: the first error is the line itself; the rest follow from it.
    try {
      loadConfigFile(file('hub:\n  id: pi\n url: x\n  a: 1\n  b: 2\n'), over);
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^line 3: All mapping items must start at the same column \(and \d+ more YAML errors after it\)$/)]);
    }
    expect(() => loadConfigFile('/nonexistent/x.yaml', schema)).toThrow(/cannot read file \(ENOENT\)/);
  });
});

describe('the schema library', () => {
  it('is imported through protocol/zod.ts only, so every role gets Zod Mini with English messages', () => {
    const root = join(import.meta.dirname, '../..');
    const offenders: string[] = [];
    for (const dir of ['agent', 'hub', 'service', 'protocol', 'bin']) {
      for (const name of readdirSync(join(root, dir), { recursive: true }) as string[]) {
        if (!name.endsWith('.ts') || `${dir}/${name}` === 'protocol/zod.ts') continue;
        if (/from '(zod)(\/[^']*)?'/.test(readFileSync(join(root, dir, name), 'utf8'))) offenders.push(`${dir}/${name}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});

describe('the README', () => {
  it("lists every error code with its HTTP status and WebSocket close code in the service side's table", () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| (\d{3}) \| `([A-Z_]+)` \| (\d{4})? ?\|/gm)].map((m) => ({ code: m[2]!, http: Number(m[1]), ws: m[3] === undefined ? null : Number(m[3]) }));
    const withClose = rows.filter((r) => r.ws !== null);
    expect(Object.fromEntries(withClose.map((r) => [r.code, { http: r.http, ws: r.ws }]))).toEqual(ERRORS);
    expect(withClose).toHaveLength(Object.keys(ERRORS).length);
    // Rows without a close code: statuses the hub's HTTP parser answers (hub/client-error.ts), never a stream's end.
    expect(rows.filter((r) => r.ws === null).map((r) => [r.http, r.code])).toEqual([[408, 'BAD_REQUEST'], [431, 'BAD_REQUEST']]);
  });
});
