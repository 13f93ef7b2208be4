import { X509Certificate, createPrivateKey } from 'node:crypto';
import { ConfigError } from '../protocol/index.js';

/**
 * The hub's certificate and key, checked one by one before the server is made: Node's own error for
 * a bad pair ("DECODER routines::unsupported", "key values mismatch") names neither file nor which
 * of the two is wrong, and the commonest slip, `tls.key` pointing at the certificate, read as a
 * problem with the certificate. The certificate may be a chain: its first (the hub's own) is checked
 * against the key.
 */
export function checkTlsPair(cert: { file: string; pem: string }, key: { file: string; pem: string }): void {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert.pem);
  } catch (err) {
    const hint = /-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(cert.pem) ? ': it holds a private key (is tls.cert the key file?)' : '';
    throw new ConfigError(cert.file, [`tls.cert: not a PEM certificate${hint} (${(err as Error).message})`]);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key.pem);
  } catch (err) {
    const hint = /-----BEGIN CERTIFICATE-----/.test(key.pem) ? ': it holds a certificate (is tls.key the certificate file?)' : '';
    throw new ConfigError(key.file, [`tls.key: not a private key${hint} (${(err as Error).message})`]);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new ConfigError(key.file, [`tls.key is not the key of tls.cert ${cert.file} (subject ${x509.subject.replace(/\n/g, ', ')})`]);
  }
}
