import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import {
  bitString,
  boolean,
  explicit,
  implicit,
  integer,
  octetString,
  oid,
  sequence,
  set,
  time,
  toPem,
  utf8String,
} from './der.js';

/**
 * The development CA that `hub init` makes: an ECDSA P-256 CA and a server certificate for
 * localhost, 127.0.0.1 and the host of `--public-url` if given, signed by it, in pure JS (Node's
 * crypto signs, der.ts encodes). For the local demo, tests and a first real hub whose devices get
 * the CA from `hub add-device`; a hub can switch to certificates from a real CA at any time.
 */

export interface PemPair {
  cert: string;
  key: string;
}

export interface DevCa {
  ca: PemPair;
  server: PemPair;
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

const DAY_MS = 24 * 3600 * 1000;
const CA_DAYS = 3650;
const SERVER_DAYS = 3650;

interface CertSpec {
  subjectCn: string;
  issuerCn: string;
  publicKey: KeyObject;
  signingKey: KeyObject;
  issuerPublicKey: KeyObject;
  days: number;
  isCa: boolean;
  /** DNS names and IP addresses for subjectAltName (leaf only). */
  altNames?: string[];
}

function name(cn: string): Buffer {
  return sequence(
    set(sequence(oid(OID.organization), utf8String('devstreams development'))),
    set(sequence(oid(OID.commonName), utf8String(cn))),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

/** RFC 5280 key identifier: SHA-1 of the subjectPublicKey bits. */
function keyId(publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // For a P-256 SPKI the key bits are the last 65 bytes (uncompressed point).
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
}

function altName(value: string): Buffer {
  const family = isIP(value);
  if (family === 4) return implicit(7, Buffer.from(value.split('.').map(Number)));
  if (family === 6) return implicit(7, ipv6Bytes(value));
  return implicit(2, Buffer.from(value, 'ascii'));
}

/** The 16 bytes of an IPv6 address (`isIP` said 6): groups around at most one `::`, maybe a dotted IPv4 tail. */
function ipv6Bytes(value: string): Buffer {
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const [head, tail] = value.includes('::') ? value.split('::') as [string, string] : [value, undefined];
  const before = groups(head);
  const after = tail === undefined ? [] : groups(tail);
  const last = tail === undefined ? before : after;
  if (last.length > 0 && last[last.length - 1]!.includes('.')) {
    const [a, b, c, d] = last.pop()!.split('.').map(Number) as [number, number, number, number];
    last.push(((a << 8) | b).toString(16), ((c << 8) | d).toString(16));
  }
  const all = [...before, ...Array<string>(tail === undefined ? 0 : 8 - before.length - after.length).fill('0'), ...after];
  const buf = Buffer.alloc(16);
  all.forEach((g, i) => buf.writeUInt16BE(parseInt(g, 16), i * 2));
  return buf;
}

function makeCert(spec: CertSpec): string {
  const now = Date.now();
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const algorithm = sequence(oid(OID.ecdsaWithSha256));
  const extensions: Buffer[] = [
    extension(OID.basicConstraints, true, spec.isCa ? sequence(boolean(true), integer(0)) : sequence()),
    // keyCertSign + cRLSign + digitalSignature for the CA, digitalSignature for the server.
    extension(OID.keyUsage, true, spec.isCa ? bitString(Buffer.from([0x86]), 1) : bitString(Buffer.from([0x80]), 7)),
    extension(OID.subjectKeyId, false, octetString(keyId(spec.publicKey))),
  ];
  if (!spec.isCa) {
    extensions.push(
      extension(OID.authorityKeyId, false, sequence(implicit(0, keyId(spec.issuerPublicKey)))),
      extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
      extension(OID.subjectAltName, false, sequence(...(spec.altNames ?? []).map(altName))),
    );
  }
  const tbs = sequence(
    explicit(0, integer(2)),
    integer(serial),
    algorithm,
    name(spec.issuerCn),
    sequence(time(new Date(now - 3600_000)), time(new Date(now + spec.days * DAY_MS))),
    name(spec.subjectCn),
    spec.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, sequence(...extensions)),
  );
  const signature = sign('sha256', tbs, { key: spec.signingKey, dsaEncoding: 'der' });
  return toPem('CERTIFICATE', sequence(tbs, algorithm, bitString(signature)));
}

function newKeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

const keyPem = (k: KeyObject): string => k.export({ type: 'pkcs8', format: 'pem' }).toString();

/** A fresh CA and a server certificate for `altNames`: host names, IPv4 and IPv6 addresses (default localhost and 127.0.0.1). */
export function createDevCa(altNames: string[] = ['localhost', '127.0.0.1']): DevCa {
  const caKeys = newKeyPair();
  const caCn = `devstreams development CA ${randomBytes(4).toString('hex')}`;
  const caCert = makeCert({
    subjectCn: caCn,
    issuerCn: caCn,
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    issuerPublicKey: caKeys.publicKey,
    days: CA_DAYS,
    isCa: true,
  });
  const serverKeys = newKeyPair();
  const serverCert = makeCert({
    subjectCn: altNames[0] ?? 'localhost',
    issuerCn: caCn,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    issuerPublicKey: caKeys.publicKey,
    days: SERVER_DAYS,
    isCa: false,
    altNames,
  });
  return {
    ca: { cert: caCert, key: keyPem(caKeys.privateKey) },
    server: { cert: serverCert, key: keyPem(serverKeys.privateKey) },
  };
}
