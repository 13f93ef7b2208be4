import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError, DeviceIdSchema, describeIssues, type Logger } from '../protocol/index.js';
import { SECRET_MODE, writeFileAtomic } from './files.js';

/**
 * The device registry file (`registry.json`, mode 0600): each device id with the SHA-256 digest of
 * its key. The hub never holds a device key, only its digest.
 */
export const RegistryEntrySchema = z.strictObject({
  keySha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest'),
  createdAt: z.string().datetime(),
});
export type RegistryEntry = z.infer<typeof RegistryEntrySchema>;

export const RegistryFileSchema = z.strictObject({
  devices: z.record(DeviceIdSchema, RegistryEntrySchema),
});
export type RegistryFile = z.infer<typeof RegistryFileSchema>;

const MAX_REGISTRY_BYTES = 64 * 1024 * 1024;

export function emptyRegistry(): RegistryFile {
  return { devices: {} };
}

/** Reads and validates a registry file; a missing file is an empty registry. Throws ConfigError naming the file. */
export function readRegistryFile(file: string): RegistryFile {
  let text: string;
  try {
    if (statSync(file).size > MAX_REGISTRY_BYTES) throw new ConfigError(file, [`larger than ${MAX_REGISTRY_BYTES} bytes`]);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyRegistry();
    throw new ConfigError(file, [`cannot read the device registry (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(file, ['the device registry is not valid JSON']);
  }
  const parsed = RegistryFileSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(file, [`the device registry is invalid: ${describeIssues(parsed.error)}`]);
  return parsed.data;
}

/** Writes the registry atomically, mode 0600. */
export function writeRegistryFile(file: string, registry: RegistryFile): void {
  writeFileAtomic(file, `${JSON.stringify(registry, null, 2)}\n`, SECRET_MODE);
}

/**
 * The hub's view of the registry. It re-reads the file whenever its size, mtime or inode changes,
 * so `hub add-device` takes effect while the hub runs. A file that turns bad while the hub runs is
 * logged and the last good content is kept; at start a bad file is an error.
 */
export class DeviceRegistry {
  private readonly file: string;
  private readonly log: Logger;
  private devices = new Map<string, RegistryEntry>();
  private signature = '';

  constructor(opts: { file: string; log: Logger }) {
    this.file = opts.file;
    this.log = opts.log.child({ component: 'registry' });
  }

  async start(): Promise<void> {
    this.load(true);
    this.log.info({ file: this.file, devices: this.devices.size }, 'device registry loaded');
  }

  async stop(): Promise<void> {}

  get(deviceId: string): RegistryEntry | undefined {
    this.refresh();
    return this.devices.get(deviceId);
  }

  has(deviceId: string): boolean {
    return this.get(deviceId) !== undefined;
  }

  /** Registered device ids, sorted. */
  ids(): string[] {
    this.refresh();
    return [...this.devices.keys()].sort();
  }

  private currentSignature(): string {
    try {
      const st = statSync(this.file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  private refresh(): void {
    const signature = this.currentSignature();
    if (signature === this.signature) return;
    try {
      this.load(false);
      this.log.info({ devices: this.devices.size }, 'device registry reloaded');
    } catch (err) {
      this.signature = signature; // report a bad file once, not on every lookup
      this.log.error({ err: (err as Error).message }, 'device registry changed but cannot be used; keeping the last good one');
    }
  }

  private load(atStart: boolean): void {
    const signature = this.currentSignature();
    if (signature === 'missing' && atStart) this.log.warn({ file: this.file }, 'device registry file missing; no devices registered');
    const data = readRegistryFile(this.file);
    this.devices = new Map(Object.entries(data.devices));
    this.signature = signature;
  }
}
