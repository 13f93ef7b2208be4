import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A fresh secret: 256 random bits, base64url. Used for service tokens, device keys and stream tokens. */
export function newSecret(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** A stream id: 128 random bits, base64url (22 characters). */
export function newStreamId(): string {
  return randomBytes(16).toString('base64url');
}

/** Secrets are stored and compared as SHA-256 digests (they are high-entropy, so no KDF is needed). */
export function hashSecret(secret: string | Buffer): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time check of a presented secret against a stored digest. */
export function secretMatches(presented: string | Buffer, storedHexDigest: string): boolean {
  const a = Buffer.from(hashSecret(presented), 'hex');
  const b = Buffer.from(storedHexDigest, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Reads `Authorization: Bearer <token>`; returns null if absent or malformed. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer ([A-Za-z0-9._~+/=-]{16,512})$/.exec(header.trim());
  return m ? m[1]! : null;
}
