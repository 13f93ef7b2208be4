import * as z from '../protocol/zod.js';
import { DeviceIdSchema, deviceSigningKey, type Logger } from '../protocol/index.js';
import { readJsonStateFile, SECRET_MODE, writeFileAtomic } from './files.js';
import { WatchedFile } from './watched-file.js';

/**
 * The device registry file (`registry.json`, mode 0600): each device id with the signing key of
 * each of its key slots (`primary`, `secondary`; see protocol/device-token.ts) and whether it is
 * disabled. The hub never holds a device key: the signing key is HMAC(key, label), from which the
 * key cannot be recovered, yet which verifies both a device token and a static key.
 */
export const KEY_SLOTS = ['primary', 'secondary'] as const;
export type KeySlot = (typeof KEY_SLOTS)[number];

export const KeySlotSchema = z.strictObject({
  sasKey: z.string().check(z.regex(/^[A-Za-z0-9_-]{43}$/, 'must be a signing key (43 base64url characters)')),
  createdAt: z.iso.datetime(),
});
export type KeySlotRecord = z.infer<typeof KeySlotSchema>;

export const RegistryEntrySchema = z.strictObject({
  keys: z
    .strictObject({ primary: z.optional(KeySlotSchema), secondary: z.optional(KeySlotSchema) })
    .check(z.refine((k) => k.primary !== undefined || k.secondary !== undefined, 'a device needs at least one key')),
  disabled: z._default(z.boolean(), false),
  createdAt: z.iso.datetime(),
});
export type RegistryEntry = z.infer<typeof RegistryEntrySchema>;

export const RegistryFileSchema = z.strictObject({
  devices: z.record(DeviceIdSchema, RegistryEntrySchema),
});
export type RegistryFile = z.infer<typeof RegistryFileSchema>;

/** The record of a fresh key for a slot: only its signing key is kept. */
export function keySlotRecord(deviceKey: string): KeySlotRecord {
  return { sasKey: deviceSigningKey(deviceKey), createdAt: new Date().toISOString() };
}

/** A new registry entry whose primary slot holds `deviceKey`'s signing key. */
export function newRegistryEntry(deviceKey: string): RegistryEntry {
  return { keys: { primary: keySlotRecord(deviceKey) }, disabled: false, createdAt: new Date().toISOString() };
}

/** The signing keys of an entry in slot order (primary, secondary); undefined for an empty slot. */
export function signingKeysOf(entry: RegistryEntry): [string | undefined, string | undefined] {
  return [entry.keys.primary?.sasKey, entry.keys.secondary?.sasKey];
}

/** The key a device's connection proved when it authenticated: its slot and that slot's signing key then. */
export interface ProvenKey {
  device: string;
  slot: KeySlot;
  sasKey: string;
}

/**
 * Why a connection authenticated with `key` must end after a registry change (the device was
 * removed or disabled, or the key it proved was replaced or revoked), or null. The broker's MQTT
 * sessions and the relay's multiplexed connections both ask it.
 */
export function revokedWhy(registry: DeviceRegistry, key: ProvenKey): string | null {
  const entry = registry.get(key.device);
  if (!entry) return 'device removed';
  if (entry.disabled) return 'device disabled';
  if (entry.keys[key.slot]?.sasKey !== key.sasKey) return `its ${key.slot} key was replaced or revoked`;
  return null;
}

const MAX_REGISTRY_BYTES = 64 * 1024 * 1024;

export function emptyRegistry(): RegistryFile {
  return { devices: {} };
}

/** Reads and validates a registry file; a missing file is an empty registry. Throws ConfigError naming the file. */
export function readRegistryFile(file: string): RegistryFile {
  return readJsonStateFile(file, RegistryFileSchema, { what: 'the device registry', maxBytes: MAX_REGISTRY_BYTES, empty: emptyRegistry });
}

/** Writes the registry atomically, mode 0600. */
export function writeRegistryFile(file: string, registry: RegistryFile): void {
  writeFileAtomic(file, `${JSON.stringify(registry, null, 2)}\n`, SECRET_MODE);
}

/**
 * The hub's view of the registry, re-read whenever the file changes (hub/watched-file.ts), so the
 * `hub` device commands take effect while the hub runs. Listeners hear of every reload: the broker
 * then disconnects devices that were disabled, removed or lost the key they proved.
 */
export class DeviceRegistry {
  private readonly file: string;
  private readonly log: Logger;
  private readonly watched: WatchedFile<Map<string, RegistryEntry>>;

  constructor(opts: { file: string; log: Logger }) {
    this.file = opts.file;
    this.log = opts.log.child({ component: 'registry' });
    this.watched = new WatchedFile({
      file: this.file,
      what: 'device registry',
      read: (f) => new Map(Object.entries(readRegistryFile(f).devices)),
      log: this.log,
      summary: (devices) => ({ devices: devices.size }),
      ifMissing: 'every device is unknown to the hub now (their connections are closed); restore it from a backup',
    });
  }

  async start(): Promise<void> {
    const devices = this.watched.start();
    this.log.info({ file: this.file, devices: devices.size }, 'device registry loaded');
  }

  async stop(): Promise<void> {
    this.watched.stop();
  }

  /** Called after every reload of the file (not at start). */
  onChange(listener: () => void): void {
    this.watched.onChange(() => listener());
  }

  get(deviceId: string): RegistryEntry | undefined {
    return this.watched.get().get(deviceId);
  }

  has(deviceId: string): boolean {
    return this.get(deviceId) !== undefined;
  }

  /** Registered device ids, sorted. */
  ids(): string[] {
    return [...this.watched.get().keys()].sort();
  }
}
