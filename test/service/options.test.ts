import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../protocol/index.js';
import { UsageError, intOption, parseCommand, parseListen, resolveHubSettings, HUB_OPTIONS } from '../../service/options.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';

let tls: TestTls;
beforeAll(() => {
  tls = makeTestTls();
});

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

describe('resolveHubSettings', () => {
  it('takes flags over the environment', () => {
    const env = { DEVSTREAMS_HUB: 'https://env.example:1', DEVSTREAMS_TOKEN: 'env-token', DEVSTREAMS_CA: '/nonexistent/env.pem' };
    const s = resolveHubSettings({ hub: 'https://flag.example:2', token: 'flag-token', ca: tls.caFile }, env);
    expect(s).toEqual({ hub: 'https://flag.example:2', token: 'flag-token', ca: tls.ca, caFile: tls.caFile });
  });

  it('falls back to the environment, and the CA is optional', () => {
    expect(resolveHubSettings({}, { DEVSTREAMS_HUB: 'https://h', DEVSTREAMS_TOKEN: 't0k' })).toEqual({ hub: 'https://h', token: 't0k' });
    const s = resolveHubSettings({ token: 'flag' }, { DEVSTREAMS_HUB: 'https://h', DEVSTREAMS_TOKEN: 'env', DEVSTREAMS_CA: tls.caFile });
    expect(s.token).toBe('flag');
    expect(s.caFile).toBe(tls.caFile);
  });

  it('names the flag and the variable of a missing value', () => {
    const noHub = thrown(() => resolveHubSettings({ token: 't' }, {}));
    expect(noHub).toBeInstanceOf(ConfigError);
    expect(noHub.message).toBe('no hub given: pass --hub URL or set DEVSTREAMS_HUB');
    const noToken = thrown(() => resolveHubSettings({ hub: 'https://h' }, { DEVSTREAMS_TOKEN: '' }));
    expect(noToken.message).toBe('no service token given: pass --token TOKEN or set DEVSTREAMS_TOKEN');
  });

  it('refuses a hub URL with a path, query or fragment: the API is under the hub\'s own /api/v1', () => {
    expect(thrown(() => resolveHubSettings({ hub: 'https://h:8443/api/v1', token: 't' }, {})).message).toBe(
      'hub URL is the hub\'s base URL, https://HOST[:PORT], with no path (drop "/api/v1") (--hub / DEVSTREAMS_HUB)',
    );
    expect(thrown(() => resolveHubSettings({}, { DEVSTREAMS_HUB: 'https://h/x?y=1', DEVSTREAMS_TOKEN: 't' })).message).toMatch(/\(drop "\/x\?y=1"\) \(--hub \/ DEVSTREAMS_HUB\)$/);
    expect(thrown(() => resolveHubSettings({ hub: 'https://h/api/v1/', token: 't' }, {}))).toBeInstanceOf(UsageError);
    for (const ok of ['https://h', 'https://h/', 'https://h:8443/']) expect(resolveHubSettings({ hub: ok, token: 't' }, {}).hub).toBe(ok);
  });

  it('refuses a hub URL that is not https, naming the flag', () => {
    expect(thrown(() => resolveHubSettings({ hub: 'http://h', token: 't' }, {})).message).toMatch(/https:\/\/.*--hub \/ DEVSTREAMS_HUB/);
    expect(thrown(() => resolveHubSettings({ hub: 'not a url', token: 't' }, {})).message).toMatch(/is not a URL/);
  });

  it('refuses a malformed token without printing it', () => {
    const err = thrown(() => resolveHubSettings({ hub: 'https://h', token: 'secret value\n' }, {}));
    expect(err.message).toMatch(/DEVSTREAMS_TOKEN/);
    expect(err.message).not.toContain('secret');
  });

  it('names an unreadable or non-PEM CA file', () => {
    const missing = join(tls.dir, 'missing.pem');
    const err = thrown(() => resolveHubSettings({ hub: 'https://h', token: 't', ca: missing }, {}));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`${missing}: cannot read CA file (ENOENT)`);
    const junk = join(tls.dir, 'junk.pem');
    writeFileSync(junk, 'hello');
    expect(thrown(() => resolveHubSettings({ hub: 'https://h', token: 't' }, { DEVSTREAMS_CA: junk })).message).toMatch(
      new RegExp(`^${junk}: CA file holds no PEM certificate`),
    );
  });
});

describe('command-line parsing', () => {
  it('parses a command and checks its positionals', () => {
    const r = parseCommand('connect', ['pi', 'ssh', '--hub', 'https://h'], HUB_OPTIONS, ['DEVICE', 'SERVICE']);
    expect(r.positionals).toEqual(['pi', 'ssh']);
    expect(r.values.hub).toBe('https://h');
    expect(thrown(() => parseCommand('connect', ['pi'], HUB_OPTIONS, ['DEVICE', 'SERVICE'])).message).toBe(
      'connect: missing SERVICE (see devstreams connect --help)',
    );
    expect(thrown(() => parseCommand('echo', ['pi', 'x'], HUB_OPTIONS, ['DEVICE'])).message).toBe('echo: unexpected argument "x"');
    const unknown = thrown(() => parseCommand('echo', ['pi', '--nope'], HUB_OPTIONS, ['DEVICE']));
    expect(unknown).toBeInstanceOf(UsageError);
    expect(unknown.message).toBe('echo: unknown option --nope (see devstreams echo --help)');
    const opts = { ...HUB_OPTIONS, bytes: { type: 'string' }, json: { type: 'boolean' }, listen: { type: 'string', short: 'l' } } as const;
    const problem = (args: string[]): string => thrown(() => parseCommand('echo', ['pi', ...args], opts, ['DEVICE'])).message;
    expect(problem(['--bytes', '-1'])).toBe("echo: --bytes needs a value (one that starts with '-' is written --bytes=VALUE) (see devstreams echo --help)");
    expect(problem(['--bytes'])).toBe('echo: --bytes needs a value (see devstreams echo --help)');
    expect(problem(['-l'])).toBe('echo: --listen needs a value (see devstreams echo --help)');
    expect(problem(['--json=yes'])).toBe('echo: --json takes no value (see devstreams echo --help)');
  });

  it('parses [HOST:]PORT', () => {
    expect(parseListen('8022')).toEqual({ host: '127.0.0.1', port: 8022 });
    expect(parseListen('0')).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseListen('0.0.0.0:22')).toEqual({ host: '0.0.0.0', port: 22 });
    expect(parseListen('[::1]:22')).toEqual({ host: '::1', port: 22 });
    expect(parseListen('localhost:1')).toEqual({ host: 'localhost', port: 1 });
    for (const bad of ['', 'x', '70000', 'h:', ':22', '1.2.3.4:22:1']) expect(() => parseListen(bad)).toThrow(UsageError);
    // A port out of range is said to be that, not a wrong form.
    expect(() => parseListen('70000')).toThrow('--listen port must be from 0 to 65535 (got "70000")');
    expect(() => parseListen('[::1]:65536')).toThrow('--listen port must be from 0 to 65535 (got "[::1]:65536")');
  });

  it('checks integer options', () => {
    expect(intOption('bytes', undefined, 5, 0, 10)).toBe(5);
    expect(intOption('bytes', '7', 5, 0, 10)).toBe(7);
    expect(() => intOption('bytes', '11', 5, 0, 10)).toThrow('--bytes must be an integer from 0 to 10 (got "11")');
    expect(() => intOption('timeout', '1e3', 5, 0, 10)).toThrow(UsageError);
  });
});
