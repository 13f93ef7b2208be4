import { randomBytes } from 'node:crypto';
import { PROTOCOL_VERSION, TOPIC_ROOT, topics } from '../protocol/index.js';
import type { ControlBus } from './control-bus.js';

/**
 * Device accounts on Mosquitto's dynamic security plugin, driven over MQTT
 * (`$CONTROL/dynamic-security/v1`, one command per message, matched by correlationData).
 * Each device gets a client (username = client id = device id, password = its key) and its own
 * role with exactly the rules the embedded broker enforces (hub/broker.ts):
 *   publish   devstreams/v1/devices/ID/status, .../streams/response and .../streams/response/+
 *   subscribe devstreams/v1/devices/ID/streams/request (literally: no wildcards)
 * Everything else is denied by the plugin's defaults (publishClientSend and subscribe deny).
 * The hub's role may publish stream requests and health probes and subscribe to status and
 * responses of every device. Requires an account with dynsec admin rights (docs/SCALE.md).
 */

const CONTROL = '$CONTROL/dynamic-security/v1';
const RESPONSE = `${CONTROL}/response`;
export const HUB_ROLE = 'devstreams-hub';
export const deviceRole = (deviceId: string): string => `devstreams-device-${deviceId}`;

interface Acl {
  acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribeLiteral' | 'subscribePattern';
  topic: string;
}

export function deviceAcls(deviceId: string): Acl[] {
  return [
    { acltype: 'publishClientSend', topic: topics.status(deviceId) },
    { acltype: 'publishClientSend', topic: topics.streamResponse(deviceId) },
    { acltype: 'publishClientSend', topic: `${topics.streamResponse(deviceId)}/+` },
    { acltype: 'subscribeLiteral', topic: topics.streamRequest(deviceId) },
  ];
}

export const HUB_ACLS: Acl[] = [
  { acltype: 'publishClientSend', topic: `${TOPIC_ROOT}/+/streams/request` },
  { acltype: 'publishClientSend', topic: 'devstreams/v1/hubs/#' },
  // The offline status for a device the broker disconnected without its last will (disable, remove).
  { acltype: 'publishClientSend', topic: `${TOPIC_ROOT}/+/status` },
  { acltype: 'subscribePattern', topic: `${TOPIC_ROOT}/+/status` },
  { acltype: 'subscribePattern', topic: `${TOPIC_ROOT}/+/streams/response/+` },
];

type Command = Record<string, unknown> & { command: string };

export interface DynsecResponse {
  error?: string;
  data?: unknown;
}

export interface BrokerClient {
  username: string;
  disabled: boolean;
  roles: string[];
}

export class DynsecError extends Error {
  constructor(
    readonly command: string,
    readonly detail: string,
  ) {
    super(`mosquitto dynamic security: ${command} failed: ${detail}`);
  }
}

export class MosquittoDynsec {
  private readonly bus: ControlBus;
  private readonly timeoutMs: number;
  private readonly waiting = new Map<string, (r: DynsecResponse) => void>();
  private unsubscribe: (() => Promise<void>) | null = null;

  constructor(opts: { bus: ControlBus; timeoutMs?: number }) {
    this.bus = opts.bus;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  async start(): Promise<void> {
    if (this.unsubscribe) return;
    this.unsubscribe = await this.bus.subscribe(RESPONSE, (_t, payload) => this.onResponse(payload));
  }

  async stop(): Promise<void> {
    const u = this.unsubscribe;
    this.unsubscribe = null;
    if (u) await u();
  }

  /** Runs one command; resolves to its error text (undefined: success). Rejects when unanswered. */
  async run(cmd: Command, timeoutMs = this.timeoutMs): Promise<string | undefined> {
    return (await this.ask(cmd, timeoutMs)).error;
  }

  /** Runs one command; resolves to its whole response. Rejects when unanswered or when the bus cannot publish. */
  async ask(cmd: Command, timeoutMs = this.timeoutMs): Promise<DynsecResponse> {
    const correlationData = randomBytes(8).toString('hex');
    let timer: NodeJS.Timeout | undefined;
    const answer = new Promise<DynsecResponse>((resolve, reject) => {
      timer = setTimeout(() => {
        this.waiting.delete(correlationData);
        reject(new DynsecError(cmd.command, `no answer within ${timeoutMs} ms (is the plugin loaded, and may this account use ${CONTROL}?)`));
      }, timeoutMs);
      this.waiting.set(correlationData, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
    answer.catch(() => undefined); // rejected while the publish is still pending: handled below, never unhandled
    try {
      await this.bus.publish(CONTROL, JSON.stringify({ commands: [{ ...cmd, correlationData }] }), { qos: 1 });
    } catch (err) {
      clearTimeout(timer);
      this.waiting.delete(correlationData);
      throw err;
    }
    return answer;
  }

  /** The roles a client holds, or null if there is no such client. */
  async rolesOf(username: string, timeoutMs = this.timeoutMs): Promise<string[] | null> {
    const r = await this.ask({ command: 'getClient', username }, timeoutMs);
    if (r.error !== undefined) {
      if (/not found/i.test(r.error)) return null;
      throw new DynsecError('getClient', r.error);
    }
    const roles = (r.data as { client?: { roles?: { rolename?: unknown }[] } } | undefined)?.client?.roles ?? [];
    return roles.map((x) => String(x.rolename));
  }

  /** Every client account at the broker (paged `listClients`): its username, roles and whether it is disabled. */
  async listClients(pageSize = 1000): Promise<BrokerClient[]> {
    const out: BrokerClient[] = [];
    for (let offset = 0; ; offset += pageSize) {
      const r = await this.ask({ command: 'listClients', verbose: true, count: pageSize, offset });
      if (r.error !== undefined) throw new DynsecError('listClients', r.error);
      const data = r.data as { totalCount?: unknown; clients?: unknown } | undefined;
      const page = Array.isArray(data?.clients) ? (data.clients as { username?: unknown; disabled?: unknown; roles?: unknown }[]) : [];
      for (const c of page) {
        if (typeof c?.username !== 'string') continue;
        const roles = Array.isArray(c.roles) ? (c.roles as { rolename?: unknown }[]).map((x) => String(x?.rolename)) : [];
        out.push({ username: c.username, disabled: c.disabled === true, roles });
      }
      const total = typeof data?.totalCount === 'number' ? data.totalCount : 0;
      if (page.length < pageSize || offset + pageSize >= total) return out;
    }
  }

  /** Runs a command that must succeed, or whose error is one of `tolerated` (e.g. "already exists"). */
  async must(cmd: Command, tolerated: RegExp | null = null): Promise<void> {
    const error = await this.run(cmd);
    if (error !== undefined && !(tolerated && tolerated.test(error))) throw new DynsecError(cmd.command, error);
  }

  private async ensureRole(rolename: string, acls: Acl[]): Promise<void> {
    await this.must({ command: 'createRole', rolename }, /already exists/i);
    for (const a of acls) {
      await this.must({ command: 'addRoleACL', rolename, ...a, allow: true, priority: 0 }, /already exists/i);
    }
  }

  /**
   * The hub's role, given to its own account (idempotent); true if it was added now. Mosquitto
   * disconnects every connection of a client whose roles change, this one included when `username`
   * is its own account: the answer may then be lost, so the role is confirmed once the connection
   * is back (mqtt.js reconnects within a second), within `waitMs`.
   */
  async ensureHubAccount(username: string, waitMs = 15_000): Promise<boolean> {
    await this.ensureRole(HUB_ROLE, HUB_ACLS);
    if ((await this.rolesOf(username))?.includes(HUB_ROLE)) return false;
    const error = await this.run({ command: 'addClientRole', username, rolename: HUB_ROLE, priority: 0 }, 1000).catch(() => undefined);
    if (error !== undefined) throw new DynsecError('addClientRole', error);
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const roles = await this.rolesOf(username, 1000);
        if (roles?.includes(HUB_ROLE)) return true;
        throw new DynsecError('addClientRole', `"${username}" does not hold the role ${HUB_ROLE}`);
      } catch (err) {
        if (err instanceof DynsecError && !/no answer/.test(err.detail)) throw err;
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Creates (or refreshes) a device's account with `key` as its password; enabled unless `disabled`. */
  async upsertDevice(deviceId: string, key: string, disabled = false): Promise<void> {
    const rolename = deviceRole(deviceId);
    await this.ensureRole(rolename, deviceAcls(deviceId));
    const account = { username: deviceId, clientid: deviceId, password: key, roles: [{ rolename, priority: 0 }] };
    const created = await this.run({ command: 'createClient', ...account });
    if (created !== undefined) {
      if (!/already exists/i.test(created)) throw new DynsecError('createClient', created);
      await this.must({ command: 'modifyClient', ...account });
    }
    await this.setEnabled(deviceId, !disabled);
  }

  /** Replaces a device's password (the broker account holds one key; the previous stops working). */
  async setPassword(deviceId: string, key: string): Promise<void> {
    await this.must({ command: 'setClientPassword', username: deviceId, password: key });
  }

  /** Enables or disables a device's account; disabling disconnects it (and marks it offline). */
  async setEnabled(deviceId: string, enabled: boolean): Promise<void> {
    await this.must({ command: enabled ? 'enableClient' : 'disableClient', username: deviceId });
    if (!enabled) await this.markOffline(deviceId);
  }

  /** Mosquitto disconnects a disabled or deleted client without its last will: publish it for the device. */
  async markOffline(deviceId: string): Promise<void> {
    await this.bus.publish(topics.status(deviceId), JSON.stringify({ v: PROTOCOL_VERSION, online: false }), { qos: 1, retain: true });
  }

  /** Deletes a device's account and role (a missing one is fine); disconnects it. */
  async removeDevice(deviceId: string): Promise<void> {
    await this.must({ command: 'deleteClient', username: deviceId }, /not found/i);
    await this.must({ command: 'deleteRole', rolename: deviceRole(deviceId) }, /not found/i);
    // Clear the retained status: a removed device leaves nothing behind at the broker.
    await this.bus.publish(topics.status(deviceId), '', { qos: 1, retain: true });
  }

  private onResponse(payload: Buffer): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    const responses = (parsed as { responses?: unknown }).responses;
    if (!Array.isArray(responses)) return;
    for (const r of responses as { correlationData?: unknown; error?: unknown; data?: unknown }[]) {
      if (typeof r?.correlationData !== 'string') continue;
      const waiter = this.waiting.get(r.correlationData);
      if (!waiter) continue;
      this.waiting.delete(r.correlationData);
      waiter(typeof r.error === 'string' ? { error: r.error } : { data: r.data });
    }
  }
}
