import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlChannel } from '../../agent/control-channel.js';
import { hubTlsContext } from '../../agent/hub-tls.js';
import { loadHubConfig } from '../../hub/config.js';
import { createDevCa } from '../../hub/dev-ca.js';
import { PUBLIC_MODE, SECRET_MODE, writeFileAtomic } from '../../hub/files.js';
import { Hub } from '../../hub/hub.js';
import { initHub } from '../../hub/init.js';
import { DevstreamsClient } from '../../service/index.js';
import { ROOT } from '../helpers/proc.js';
import { captureLog } from '../agent/helpers.js';
import { captureLogger, tempDir } from '../hub/helpers.js';

/**
 * Attacks on the transport: a hub presenting a certificate for another name (a man in the middle
 * with a certificate from the right CA), an old TLS version, and any code path that could turn
 * certificate verification off.
 */

let hub: Hub;
let dir: string;
let ca: string;
let token: string;

beforeAll(async () => {
  dir = tempDir('devstreams-tls-');
  initHub({ dir, listen: '127.0.0.1:0' });
  // Same CA the clients trust, but a server certificate for another name only.
  const wrong = createDevCa(['other.example']);
  writeFileAtomic(join(dir, 'tls', 'ca.crt'), wrong.ca.cert, PUBLIC_MODE);
  writeFileAtomic(join(dir, 'tls', 'hub.crt'), wrong.server.cert, PUBLIC_MODE);
  writeFileAtomic(join(dir, 'tls', 'hub.key'), wrong.server.key, SECRET_MODE);
  ca = wrong.ca.cert;
  token = readFileSync(join(dir, 'service.token'), 'utf8');
  hub = new Hub({ config: loadHubConfig(join(dir, 'hub.yaml')).config, log: captureLogger().log });
  await hub.start();
});
afterAll(async () => hub?.stop());

describe('TLS: clients verify the hub name and chain', () => {
  it('the SDK refuses a hub whose certificate names another host', async () => {
    const client = new DevstreamsClient({ hub: `https://localhost:${hub.server.port}`, token, ca });
    try {
      await expect(client.listDevices()).rejects.toThrow(/ERR_TLS_CERT_ALTNAME_INVALID|altnames|does not match/i);
    } finally {
      client.close();
    }
  });

  it('the agent refuses it too (and never sends its credential)', async () => {
    const logs = captureLog();
    const ch = new ControlChannel({
      url: `wss://localhost:${hub.server.port}/mqtt`,
      deviceId: 'dev',
      key: 'k'.repeat(43),
      secureContext: hubTlsContext({ ca }),
      log: logs.log,
      onRequest: () => {},
      openStreams: () => 0,
      reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 },
    });
    await ch.start();
    const line = await logs.waitFor((l) => l.msg === 'control channel error');
    expect(JSON.stringify(line)).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID|altnames/i);
    expect(ch.connected).toBe(false);
    await ch.stop();
  });

  it('the hub refuses TLS 1.1 and accepts TLS 1.2', async () => {
    const attempt = (maxVersion: 'TLSv1.1' | 'TLSv1.2'): Promise<string> =>
      new Promise((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: hub.server.port, servername: 'other.example', ca, maxVersion, minVersion: 'TLSv1' });
        s.once('secureConnect', () => {
          resolve(s.getProtocol() ?? 'none');
          s.destroy();
        });
        s.once('error', () => resolve('refused'));
      });
    expect(await attempt('TLSv1.1')).toBe('refused');
    expect(await attempt('TLSv1.2')).toBe('TLSv1.2');
  });
});

describe('no switch to skip verification', () => {
  it('no source file turns certificate checks off', () => {
    const hits: string[] = [];
    const walk = (d: string): void => {
      for (const name of readdirSync(d)) {
        const f = join(d, name);
        if (statSync(f).isDirectory()) walk(f);
        else if (/\.(ts|mjs|js)$/.test(name)) {
          const text = readFileSync(f, 'utf8');
          if (/rejectUnauthorized\s*:\s*(false|!|[a-z])/i.test(text.replace(/rejectUnauthorized: true/g, '')) || /NODE_TLS_REJECT_UNAUTHORIZED|checkServerIdentity/.test(text)) {
            hits.push(f);
          }
        }
      }
    };
    for (const d of ['agent', 'hub', 'service', 'protocol', 'bin']) walk(join(ROOT, d));
    expect(hits).toEqual([]);
  });
});
