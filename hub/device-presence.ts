import {
  DeviceStatusSchema,
  decodePayload,
  hubSubscriptions,
  parseTopic,
  type DeviceInfo,
  type DeviceLastError,
  type DeviceSystem,
  type Logger,
} from '../protocol/index.js';
import type { ControlBus } from './control-bus.js';

/**
 * Which devices are online, from their retained `status` topic (the last will says offline), plus
 * the connection source's own disconnect signal when there is one (the embedded broker has it).
 */

export interface Presence {
  online: boolean;
  lastSeen: number;
  agentVersion: string | null;
  openStreams: number | null;
  /** From the device's last online status (kept while it is offline). */
  statusAt: number | null;
  system: DeviceSystem | null;
  lastError: DeviceLastError | null;
}

/** Something that reports a device's MQTT connection ending (the embedded broker). */
export interface DisconnectSource {
  /** `why`: what ended the connection ('connection closed', 'taken over by a new connection'). */
  onDeviceDisconnected(listener: (deviceId: string, why: string) => void): void;
}

export class DevicePresence {
  private readonly bus: ControlBus;
  private readonly log: Logger;
  private readonly disconnects: DisconnectSource | undefined;
  private readonly devices = new Map<string, Presence>();
  private readonly changeListeners: Array<() => void> = [];
  private unsubscribe: (() => Promise<void>) | null = null;
  private listening = false;

  constructor(opts: { bus: ControlBus; log: Logger; disconnects?: DisconnectSource }) {
    this.bus = opts.bus;
    this.log = opts.log.child({ component: 'presence' });
    this.disconnects = opts.disconnects;
  }

  async start(): Promise<void> {
    if (this.unsubscribe) return;
    if (this.disconnects && !this.listening) {
      this.listening = true;
      this.disconnects.onDeviceDisconnected((device, why) => this.markOffline(device, why));
    }
    this.unsubscribe = await this.bus.subscribe(hubSubscriptions.status, (topic, payload) => this.onStatus(topic, payload));
  }

  async stop(): Promise<void> {
    const unsubscribe = this.unsubscribe;
    this.unsubscribe = null;
    if (unsubscribe) await unsubscribe();
  }

  isOnline(deviceId: string): boolean {
    return this.devices.get(deviceId)?.online ?? false;
  }

  /** How many devices are online now. */
  onlineCount(): number {
    let n = 0;
    for (const p of this.devices.values()) if (p.online) n++;
    return n;
  }

  get(deviceId: string): Presence | undefined {
    return this.devices.get(deviceId);
  }

  /** Every device seen (or seeded), with what is known of it. */
  entries(): IterableIterator<[string, Presence]> {
    return this.devices.entries();
  }

  /** What an earlier run knew of a device (hub/presence-store.ts); a status already seen wins. */
  seed(deviceId: string, p: Presence): void {
    if (!this.devices.has(deviceId)) this.devices.set(deviceId, p);
  }

  /** Called after each change of a device's presence (for the presence store). */
  onChange(listener: () => void): void {
    this.changeListeners.push(listener);
  }

  private changed(): void {
    for (const l of this.changeListeners) l();
  }

  /** DeviceInfo for a registered device (never seen: offline, nulls); `full` adds system and lastError. */
  info(deviceId: string, full = false): DeviceInfo {
    const p = this.devices.get(deviceId);
    return {
      id: deviceId,
      online: p?.online ?? false,
      lastSeen: p?.lastSeen ?? null,
      agentVersion: p?.agentVersion ?? null,
      openStreams: p?.openStreams ?? null,
      uptimeSec: p?.system?.uptimeSec ?? null,
      statusAt: p?.statusAt ?? null,
      ...(full ? { system: p?.system ?? null, lastError: p?.lastError ?? null } : {}),
    };
  }

  private onStatus(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.kind !== 'status') return;
    const device = parsed.deviceId;
    const decoded = decodePayload(DeviceStatusSchema, payload);
    if (!decoded.ok) {
      this.log.warn({ device, err: decoded.error }, 'bad status payload ignored');
      return;
    }
    const status = decoded.value;
    const before = this.devices.get(device);
    const next: Presence = {
      online: status.online,
      lastSeen: Date.now(),
      agentVersion: status.agentVersion ?? before?.agentVersion ?? null,
      openStreams: status.online ? (status.openStreams ?? null) : 0,
      // The last will carries no system: keep what the device last said about itself.
      statusAt: status.online ? (status.at ?? null) : (before?.statusAt ?? null),
      system: status.online ? (status.system ?? null) : (before?.system ?? null),
      lastError: status.online ? (status.lastError ?? null) : (before?.lastError ?? null),
    };
    this.devices.set(device, next);
    this.changed();
    if (before?.online !== next.online) {
      this.log.info({ device, online: next.online, agentVersion: next.agentVersion }, next.online ? 'device online' : 'device offline');
    } else {
      this.log.debug({ device, openStreams: next.openStreams }, 'device status');
    }
  }

  private markOffline(device: string, why: string): void {
    const before = this.devices.get(device);
    if (!before?.online) return;
    this.devices.set(device, { ...before, online: false, lastSeen: Date.now(), openStreams: 0 });
    this.changed();
    this.log.info({ device, why }, 'device offline');
  }
}
