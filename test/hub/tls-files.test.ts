import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkTlsPair } from '../../hub/tls-files.js';
import { ConfigError } from '../../protocol/index.js';
import { makeTestTls, type TestTls } from '../helpers/tls.js';

/** The ConfigError's one line (file: problem), or null when the pair is accepted. */
function problem(cert: { file: string; pem: string }, key: { file: string; pem: string }): string | null {
  try {
    checkTlsPair(cert, key);
    return null;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
}

describe("the hub's certificate and key are checked one by one, naming the file that is wrong (hub/tls-files.ts)", () => {
  let a: TestTls;
  let b: TestTls;
  beforeAll(() => {
    a = makeTestTls();
    b = makeTestTls();
  });
  const cert = (t: TestTls) => ({ file: t.certFile, pem: t.cert });
  const key = (t: TestTls) => ({ file: t.keyFile, pem: t.key });

  it('accepts a certificate with its own key, and a chain whose first certificate is the key\'s', () => {
    expect(problem(cert(a), key(a))).toBeNull();
    expect(problem({ file: a.certFile, pem: a.cert + readFileSync(a.caFile, 'utf8') }, key(a))).toBeNull();
  });

  it('tls.key pointing at the certificate: names tls.key and its file, and says what it holds', () => {
    expect(problem(cert(a), { file: a.certFile, pem: a.cert })).toMatch(new RegExp(`^${a.certFile}: tls\\.key: not a private key: it holds a certificate \\(is tls\\.key the certificate file\\?\\)`));
  });

  it('tls.cert pointing at the key: names tls.cert', () => {
    expect(problem({ file: a.keyFile, pem: a.key }, key(a))).toMatch(new RegExp(`^${a.keyFile}: tls\\.cert: not a PEM certificate: it holds a private key`));
  });

  it("another certificate's key: says they do not belong together", () => {
    expect(problem(cert(a), key(b))).toMatch(new RegExp(`^${b.keyFile}: tls\\.key is not the key of tls\\.cert ${a.certFile} \\(subject CN=localhost\\)`));
  });
});
