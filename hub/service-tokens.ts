import * as z from '../protocol/zod.js';
import { DevstreamsError, hashSecret, secretMatches, type Logger } from '../protocol/index.js';
import type { HubConfig } from './config.js';
import { readJsonStateFile, SECRET_MODE, writeFileAtomic } from './files.js';
import { WatchedFile } from './watched-file.js';

/**
 * Service tokens (`tokens.json` beside the registry, mode 0600): each named token with the SHA-256 of
 * its secret (tokens are 256 random bits, so a plain digest is enough) and its scope: which devices
 * (ids or globs with `*` and `?`) and which services (the exact service string a request names, or
 * `*`) it may reach. Re-read on change, so `hub token create/revoke` act on a running hub.
 */

export const TOKEN_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A device scope: a device id, or a glob of id characters with `*` and `?`. */
export const DEVICE_GLOB_PATTERN = /^[A-Za-z0-9._*?-]{1,64}$/;
/** A service scope: `*`, a service name, `PORT` or `HOST:PORT` (matched exactly against a request's service). */
export const SERVICE_SCOPE_PATTERN = /^(?:\*|[A-Za-z0-9.:[\]_-]{1,261})$/;
const MAX_SCOPES = 256;
const MAX_TOKENS_BYTES = 16 * 1024 * 1024;

export const TokenEntrySchema = z.strictObject({
  sha256: z.string().check(z.regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 hex digest')),
  devices: z
    .array(z.string().check(z.regex(DEVICE_GLOB_PATTERN, 'must be a device id or a glob (* and ?)')))
    .check(z.minLength(1), z.maxLength(MAX_SCOPES)),
  services: z
    .array(z.string().check(z.regex(SERVICE_SCOPE_PATTERN, 'must be *, a service name, PORT or HOST:PORT')))
    .check(z.minLength(1), z.maxLength(MAX_SCOPES)),
  createdAt: z.iso.datetime(),
});
export type TokenEntry = z.infer<typeof TokenEntrySchema>;

export const TokensFileSchema = z.strictObject({
  tokens: z.record(z.string().check(z.regex(TOKEN_NAME_PATTERN, 'token names are 1-64 letters, digits, ".", "-" or "_"')), TokenEntrySchema),
});
export type TokensFile = z.infer<typeof TokensFileSchema>;

/** A caller the API authenticated: its token's name and scope. */
export interface Caller {
  name: string;
  devices: readonly string[];
  services: readonly string[];
}

export function readTokensFile(file: string): TokensFile {
  return readJsonStateFile(file, TokensFileSchema, {
    what: 'the service tokens file',
    maxBytes: MAX_TOKENS_BYTES,
    empty: () => ({ tokens: {} }),
  });
}

/** Writes the tokens file atomically, mode 0600. */
export function writeTokensFile(file: string, data: TokensFile): void {
  writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, SECRET_MODE);
}

/** A token entry for a fresh secret with the given scope. */
export function newTokenEntry(secret: string, scope: { devices: string[]; services: string[] }): TokenEntry {
  return { sha256: hashSecret(secret), devices: scope.devices, services: scope.services, createdAt: new Date().toISOString() };
}

/** Does a device glob (`*` any run, `?` one character) match the id? */
export function globMatches(glob: string, id: string): boolean {
  const re = new RegExp(`^${glob.replace(/[.+^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(id);
}

export function callerMayReachDevice(caller: Caller, deviceId: string): boolean {
  return caller.devices.some((g) => globMatches(g, deviceId));
}

export function callerMayUseService(caller: Caller, service: string): boolean {
  return caller.services.some((s) => s === '*' || s === service);
}

/** The refusal of a service outside the caller's scope: one wording for a stream request and a device query. */
export function serviceForbidden(caller: Caller, service: string): DevstreamsError {
  return new DevstreamsError('FORBIDDEN', `service token "${caller.name}" may not use service "${service}"`);
}

/**
 * The hub's service tokens: those in the tokens file (re-read on change) plus the legacy
 * `serviceTokens` of hub.yaml (full scope). Every stored digest is compared in constant time.
 */
export class ServiceTokens {
  private readonly legacy: HubConfig['serviceTokens'];
  private readonly watched: WatchedFile<TokensFile>;

  constructor(opts: { file: string; legacy: HubConfig['serviceTokens']; log: Logger }) {
    this.legacy = opts.legacy;
    this.watched = new WatchedFile({
      file: opts.file,
      what: 'service tokens',
      read: readTokensFile,
      log: opts.log.child({ component: 'tokens' }),
      summary: (t) => ({ tokens: Object.keys(t.tokens).length }),
      ifMissing: 'every token it held is revoked (calls with them get 401); restore it, or make new ones with devstreams hub token create',
    });
  }

  async start(): Promise<void> {
    this.watched.start();
  }

  async stop(): Promise<void> {
    this.watched.stop();
  }

  /** The caller a presented token belongs to, or null. */
  authenticate(token: string): Caller | null {
    let caller: Caller | null = null;
    for (const t of this.legacy) {
      if (secretMatches(token, t.sha256) && caller === null) caller = { name: t.name, devices: ['*'], services: ['*'] };
    }
    for (const [name, t] of Object.entries(this.watched.get().tokens)) {
      if (secretMatches(token, t.sha256) && caller === null) caller = { name, devices: t.devices, services: t.services };
    }
    return caller;
  }
}

