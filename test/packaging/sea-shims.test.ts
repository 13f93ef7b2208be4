import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ROOT } from '../helpers/proc.js';

// scripts/sea-shims/debug.cjs: the `debug` package as the single executable carries it (without
// tty). What mqtt.js and https-proxy-agent use of it must behave as debug does.
interface Debugger {
  (...args: unknown[]): void;
  enabled: boolean;
  namespace: string;
  extend(sub: string, delimiter?: string): Debugger;
}
interface CreateDebug {
  (namespace: string): Debugger;
  enable(spec: string): void;
  disable(): string;
  enabled(namespace: string): boolean;
}

const load = (): CreateDebug => {
  const require = createRequire(`${ROOT}/`);
  const path = require.resolve('./scripts/sea-shims/debug.cjs');
  delete require.cache[path];
  return require(path) as CreateDebug;
};

describe('the executable\'s debug shim', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
    vi.restoreAllMocks();
  });

  it('is off unless DEBUG names the namespace, as debug is', () => {
    vi.stubEnv('DEBUG', '');
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const debug = load()('mqttjs:client');
    debug('connecting to %s', 'hub');
    expect(debug.enabled).toBe(false);
    expect(write).not.toHaveBeenCalled();
  });

  it('takes wildcards and exclusions, and writes formatted lines to stderr', () => {
    vi.stubEnv('DEBUG', 'mqttjs*, -mqttjs:ws');
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => lines.push(String(chunk)) > 0);
    const createDebug = load();
    const client = createDebug('mqttjs:client');
    const ws = createDebug('mqttjs:ws');
    expect([client.enabled, ws.enabled, createDebug('https-proxy-agent').enabled]).toEqual([true, false, false]);
    client('sent %d bytes to %s', 42, 'hub');
    ws('never written');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z mqttjs:client sent 42 bytes to hub\n$/);
  });

  it('enable() and disable() change what is on; extend() names a child namespace', () => {
    vi.stubEnv('DEBUG', '');
    const createDebug = load();
    createDebug.enable('agent-base:*');
    expect(createDebug.enabled('agent-base:proxy')).toBe(true);
    expect(createDebug('mqttjs').extend('tls').namespace).toBe('mqttjs:tls');
    createDebug.disable();
    expect(createDebug.enabled('agent-base:proxy')).toBe(false);
  });

  it('reads a pattern\'s dots and other characters literally', () => {
    vi.stubEnv('DEBUG', 'a.b');
    const createDebug = load();
    expect([createDebug.enabled('a.b'), createDebug.enabled('axb')]).toEqual([true, false]);
  });
});
