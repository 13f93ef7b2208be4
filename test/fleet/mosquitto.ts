import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { CliProcess, freePort } from '../helpers/proc.js';
import type { StackBroker } from '../helpers/stack.js';

const run = promisify(execFile);

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const DYNSEC_PLUGIN = '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';
export const haveMosquitto = existsSync(MOSQUITTO) && existsSync(DYNSEC_PLUGIN) && existsSync('/usr/bin/mosquitto_ctrl');

/**
 * Debian's Mosquitto as a child process: a TLS listener on 127.0.0.1 (the stack's hub certificate,
 * issued for 127.0.0.1 and localhost), no anonymous access, the dynamic security plugin with one
 * admin account (made by `mosquitto_ctrl dynsec init`). The hub uses the admin account and gives
 * itself the hub role at start; device accounts come from `hub add-device` (mqtt.accounts).
 */
export class Mosquitto implements StackBroker {
  proc: CliProcess | null = null;
  port = 0;
  readonly adminPassword = randomBytes(18).toString('base64url');
  dir = '';

  get url(): string {
    return `mqtts://127.0.0.1:${this.port}`;
  }

  async setUp(stackDir: string): Promise<Record<string, unknown>> {
    this.dir = join(stackDir, 'mosquitto');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const dynsec = join(this.dir, 'dynsec.json');
    await run('mosquitto_ctrl', ['dynsec', 'init', dynsec, 'admin', this.adminPassword]);
    writeFileSync(join(this.dir, 'admin.password'), this.adminPassword, { mode: 0o600 });
    this.port = await freePort();
    const conf = join(this.dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        'user root', // stay the user that owns the temp folder (mosquitto drops root to "mosquitto" otherwise)
        'per_listener_settings false',
        'allow_anonymous false',
        'persistence false',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        'log_type notice',
        'log_type information',
        'connection_messages true',
        'max_packet_size 16384',
        'set_tcp_nodelay true', // as docs/SCALE.md recommends: no Nagle on latency-bound MQTT packets
        `plugin ${DYNSEC_PLUGIN}`,
        `plugin_opt_config_file ${dynsec}`,
        `listener ${this.port} 127.0.0.1`,
        `certfile ${join(stackDir, 'tls', 'hub.crt')}`,
        `keyfile ${join(stackDir, 'tls', 'hub.key')}`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    this.proc = new CliProcess(['-c', conf], {}, [MOSQUITTO]);
    await this.proc.waitForLine((l) => / running$/.test(l));
    return {
      url: this.url,
      username: 'admin',
      passwordFile: 'mosquitto/admin.password',
      ca: 'tls/ca.crt',
      accounts: 'mosquitto-dynsec',
    };
  }

  /**
   * A raw MQTT connection to this broker (for isolation and account tests); resolves once
   * connected, rejects with the broker's refusal. `track` collects it for the caller's cleanup.
   */
  async connectRaw(opts: { user: string; password: string; clientId?: string; ca: string; track?: MqttClient[] }): Promise<MqttClient> {
    const c = mqtt.connect(this.url, {
      clientId: opts.clientId ?? opts.user,
      username: opts.user,
      password: opts.password,
      ca: readFileSync(opts.ca),
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    opts.track?.push(c);
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error('connection closed')));
    });
    return c;
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }
}
