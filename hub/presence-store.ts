import { dirname, join } from 'node:path';
import * as z from '../protocol/zod.js';
import { DeviceLastErrorSchema, DeviceSystemSchema, type Logger } from '../protocol/index.js';
import type { DevicePresence, Presence } from './device-presence.js';
import { readJsonStateFile, writeFileAtomic } from './files.js';

/**
 * What the hub last knew of each device, kept across its restarts: `presence.json`, beside the
 * stream history. Without it a restarted hub said "last seen: never" for every device that had not
 * come back yet, and forgot what each had last said about itself (system, last error). Loaded at
 * start, every device offline until its agent says otherwise; written at most once per `flushMs`
 * after a change, and at stop. It is a record, not a source of truth: a file that cannot be read is
 * logged, and the hub starts without it (the file is replaced at the next change of a device).
 */

const MAX_BYTES = 64 * 1024 * 1024;
const EntrySchema = z.strictObject({
  lastSeen: z.number(),
  agentVersion: z.nullable(z.string().check(z.maxLength(64))),
  statusAt: z.nullable(z.number()),
  system: z.nullable(DeviceSystemSchema),
  lastError: z.nullable(DeviceLastErrorSchema),
});
const PresenceFileSchema = z.strictObject({ devices: z.record(z.string().check(z.maxLength(64)), EntrySchema) });
type PresenceFile = z.infer<typeof PresenceFileSchema>;

/** The presence file of a hub whose history is `historyFile`. */
export function presenceFileFor(historyFile: string): string {
  return join(dirname(historyFile), 'presence.json');
}

export class PresenceStore {
  private readonly file: string;
  private readonly presence: DevicePresence;
  private readonly log: Logger;
  private readonly flushMs: number;
  private timer: NodeJS.Timeout | null = null;
  private dirty = false;
  private running = false;

  constructor(opts: { file: string; presence: DevicePresence; log: Logger; flushMs?: number }) {
    this.file = opts.file;
    this.presence = opts.presence;
    this.log = opts.log.child({ component: 'presence-store' });
    this.flushMs = opts.flushMs ?? 10_000;
  }

  /** Before presence starts: seeds it with the devices the file knows, all offline. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    let saved: PresenceFile = { devices: {} };
    try {
      saved = readJsonStateFile(this.file, PresenceFileSchema, { what: 'the devices last seen', maxBytes: MAX_BYTES, empty: () => ({ devices: {} }) });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'devices last seen not loaded; the hub starts without them');
    }
    const entries = Object.entries(saved.devices);
    for (const [id, e] of entries) this.presence.seed(id, { ...e, online: false, openStreams: 0 });
    if (entries.length > 0) this.log.info({ devices: entries.length }, 'devices last seen loaded');
    this.presence.onChange(() => this.changed());
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.dirty) this.write();
  }

  private changed(): void {
    this.dirty = true;
    if (this.timer || !this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.write();
    }, this.flushMs);
    this.timer.unref();
  }

  private write(): void {
    const devices: PresenceFile['devices'] = {};
    const now = Date.now();
    // A device online now was seen until now (at stop: until the hub went away).
    for (const [id, p] of this.presence.entries()) devices[id] = { ...entryOf(p), ...(p.online ? { lastSeen: now } : {}) };
    try {
      writeFileAtomic(this.file, `${JSON.stringify({ devices })}\n`, 0o600);
      this.dirty = false;
    } catch (err) {
      // The next change tries again; presence itself is unaffected.
      this.log.warn({ err: (err as Error).message, file: this.file }, 'devices last seen not saved');
    }
  }
}

function entryOf(p: Presence): z.infer<typeof EntrySchema> {
  return { lastSeen: p.lastSeen, agentVersion: p.agentVersion, statusAt: p.statusAt, system: p.system, lastError: p.lastError };
}
