import { describe, expect, it } from 'vitest';
import { Allowlist } from '../../agent/allowlist.js';
import type { AllowEntry } from '../../agent/config.js';
import { DevstreamsError } from '../../protocol/index.js';

const entries: AllowEntry[] = [
  { kind: 'tcp', name: 'ssh', host: '127.0.0.1', port: 22 },
  { kind: 'tcp', name: 'plc', host: '192.168.1.50', port: 502 },
  { kind: 'tcp', name: 'nas', host: 'nas.local', port: 445 },
  { kind: 'tcp', name: 'v6', host: '::1', port: 8080 },
  { kind: 'builtin', name: 'echo', builtin: 'echo' },
];
const list = new Allowlist(entries);

function code(spec: string): string {
  try {
    list.resolve(spec);
  } catch (err) {
    expect(err).toBeInstanceOf(DevstreamsError);
    return (err as DevstreamsError).code;
  }
  return 'OK';
}

describe('allowlist', () => {
  it('matches an entry by name', () => {
    expect(list.resolve('ssh')).toBe(entries[0]);
    expect(list.resolve('echo')).toBe(entries[4]);
    expect(list.resolve('plc')).toBe(entries[1]);
  });

  it('matches PORT against entries on the default host only', () => {
    expect(list.resolve('22')).toBe(entries[0]);
    expect(code('502')).toBe('SERVICE_DENIED');
    expect(code('23')).toBe('SERVICE_DENIED');
  });

  it('matches HOST:PORT on host and port exactly', () => {
    expect(list.resolve('127.0.0.1:22')).toBe(entries[0]);
    expect(list.resolve('192.168.1.50:502')).toBe(entries[1]);
    expect(list.resolve('NAS.local:445')).toBe(entries[2]);
    expect(list.resolve('[::1]:8080')).toBe(entries[3]);
    expect(code('192.168.1.50:22')).toBe('SERVICE_DENIED');
    expect(code('192.168.1.51:502')).toBe('SERVICE_DENIED');
    expect(code('localhost:22')).toBe('SERVICE_DENIED');
    expect(code('127.0.0.1:502')).toBe('SERVICE_DENIED');
  });

  it('denies by default', () => {
    expect(code('telnet')).toBe('SERVICE_DENIED');
    expect(new Allowlist([]).size).toBe(0);
    expect(() => new Allowlist([]).resolve('ssh')).toThrow(/not allowed/);
  });

  it('answers 400 to a spec that is not well formed', () => {
    for (const bad of ['', 'SSH', 'ssh server', '0', '70000', 'host:0', 'a/b', '-x', 'x'.repeat(300), '1.2.3.4:', '\u0000'])
      expect(code(bad)).toBe('BAD_REQUEST');
  });
});
