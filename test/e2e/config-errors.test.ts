import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/proc.js';

describe('bad config files stop the process with one clear line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'devstreams-badcfg-'));

  it('agent: names the file, the field and what is wrong', async () => {
    const file = join(dir, 'agent.yaml');
    writeFileSync(
      file,
      ['hub:', '  url: wss://localhost:8443/mqtt', '  deviceId: pi-1', '  key: abcdefghijklmnopqrstuvwxyz0123456789', 'allow:', '  - { name: ssh, port: 70000 }', ''].join('\n'),
    );
    const r = await runCli(['agent', '--config', file]);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toContain('allow.0.port');
    expect(r.stdout).toBe('');
  });

  it('hub: names the file, the field and what is wrong', async () => {
    const file = join(dir, 'hub.yaml');
    writeFileSync(file, ['listen: "not-an-address"', 'tls: { cert: a.crt, key: a.key }', 'serviceTokens: []', ''].join('\n'));
    const r = await runCli(['hub', '--config', file]);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toContain('listen');
  });

  it('a missing config file is named too', async () => {
    const r = await runCli(['agent', '--config', join(dir, 'nope.yaml')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('nope.yaml');
  });
});
