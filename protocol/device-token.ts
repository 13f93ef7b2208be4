import { createHmac, timingSafeEqual } from 'node:crypto';
import { LIMITS } from './limits.js';
import { isDeviceId } from './ids.js';

/**
 * Device tokens (SAS style): the agent proves its identity at MQTT CONNECT without sending its key.
 *
 *   signing key  = HMAC-SHA256(key = device key (UTF-8), data = "devstreams-device-sas-v1")   32 bytes
 *   token        = "dsas1." + deviceId + "." + expiry + "." + base64url(signature)
 *   signature    = HMAC-SHA256(key = signing key, data = "dsas1\n" + deviceId + "\n" + expiry)
 *
 * `expiry` is the Unix time in whole seconds after which the token is void. Device ids never contain
 * ":" but may contain "."; the token is therefore split from the right (the last two fields are
 * digits and base64url). The hub stores only the signing key: enough to check a token, or a static
 * key (by deriving its signing key), but not the device key itself.
 */

export const DEVICE_TOKEN_PREFIX = 'dsas1.';
export const DEVICE_SAS_LABEL = 'devstreams-device-sas-v1';
/** Longest device token: prefix, 64-char id, 10-digit expiry, 43-char signature and separators. */
export const MAX_DEVICE_TOKEN_LENGTH = 6 + 64 + 1 + 10 + 1 + 43;

/** The signing key the hub stores for a device key: HMAC(key, label), base64url (43 characters). */
export function deviceSigningKey(deviceKey: string | Buffer): string {
  return createHmac('sha256', deviceKey).update(DEVICE_SAS_LABEL).digest('base64url');
}

function signature(signingKey: string, deviceId: string, expiry: number): Buffer {
  return createHmac('sha256', Buffer.from(signingKey, 'base64url')).update(`dsas1\n${deviceId}\n${expiry}`).digest();
}

/** Mints a token for `deviceId` valid until `expiresAtSec` (Unix seconds), from the device key. */
export function mintDeviceToken(deviceId: string, deviceKey: string, expiresAtSec: number): string {
  if (!isDeviceId(deviceId)) throw new TypeError('not a device id');
  if (!Number.isInteger(expiresAtSec) || expiresAtSec <= 0 || expiresAtSec > 9_999_999_999) throw new TypeError('bad expiry');
  const sig = signature(deviceSigningKey(deviceKey), deviceId, expiresAtSec).toString('base64url');
  return `${DEVICE_TOKEN_PREFIX}${deviceId}.${expiresAtSec}.${sig}`;
}

/** True when a presented MQTT password has the token shape (the hub then never treats it as a key). */
export function looksLikeDeviceToken(password: string): boolean {
  return password.startsWith(DEVICE_TOKEN_PREFIX);
}

export interface ParsedDeviceToken {
  deviceId: string;
  expiresAtSec: number;
  signature: Buffer;
}

/** Splits a token; null when it is not well formed. Checks nothing cryptographic. */
export function parseDeviceToken(token: string): ParsedDeviceToken | null {
  if (token.length > MAX_DEVICE_TOKEN_LENGTH || !token.startsWith(DEVICE_TOKEN_PREFIX)) return null;
  const m = /^(.+)\.(\d{1,10})\.([A-Za-z0-9_-]{43})$/.exec(token.slice(DEVICE_TOKEN_PREFIX.length));
  if (!m || !isDeviceId(m[1]!)) return null;
  return { deviceId: m[1]!, expiresAtSec: Number(m[2]), signature: Buffer.from(m[3]!, 'base64url') };
}

export type DeviceTokenCheck =
  | { ok: true; slot: number }
  | { ok: false; why: 'malformed' | 'wrong device' | 'expired' | 'expiry too far ahead' | 'bad signature' };

/**
 * Checks a token for `deviceId` against the device's signing keys (one per key slot) at `nowMs`.
 * Expiry allows LIMITS.maxClockSkewMs either way; a token may not reach further ahead than
 * `maxTtlSec` (plus skew), so a leaked token is never good for long. Returns which key matched.
 */
export function verifyDeviceToken(
  token: string,
  deviceId: string,
  signingKeys: readonly (string | undefined)[],
  opts: { nowMs: number; maxTtlSec: number },
): DeviceTokenCheck {
  const t = parseDeviceToken(token);
  if (!t || t.signature.length !== 32) return { ok: false, why: 'malformed' };
  if (t.deviceId !== deviceId) return { ok: false, why: 'wrong device' };
  const skewSec = LIMITS.maxClockSkewMs / 1000;
  const nowSec = opts.nowMs / 1000;
  if (t.expiresAtSec + skewSec < nowSec) return { ok: false, why: 'expired' };
  if (t.expiresAtSec > nowSec + opts.maxTtlSec + skewSec) return { ok: false, why: 'expiry too far ahead' };
  let slot = -1;
  signingKeys.forEach((k, i) => {
    if (k === undefined) return;
    const good = timingSafeEqual(signature(k, deviceId, t.expiresAtSec), t.signature);
    if (good && slot < 0) slot = i;
  });
  return slot >= 0 ? { ok: true, slot } : { ok: false, why: 'bad signature' };
}

/** Checks a static key against the signing keys, in constant time per slot; returns the slot or -1. */
export function staticKeySlot(presented: string | Buffer, signingKeys: readonly (string | undefined)[]): number {
  const derived = Buffer.from(deviceSigningKey(presented), 'base64url');
  let slot = -1;
  signingKeys.forEach((k, i) => {
    if (k === undefined) return;
    const stored = Buffer.from(k, 'base64url');
    if (stored.length === derived.length && timingSafeEqual(stored, derived) && slot < 0) slot = i;
  });
  return slot;
}
