import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, newSecret } from '../protocol/index.js';
import { PublicUrlSchema, parseHostPort, publicUrlOf } from './config.js';
import { createDevCa } from './dev-ca.js';
import { ownerForNewFile } from './file-owner.js';
import { PUBLIC_MODE, SECRET_MODE, makeDirDurable, writeFileAtomic } from './files.js';
import { initPublicUrlWarning } from './public-url.js';
import { emptyRegistry, writeRegistryFile } from './registry.js';
import { newTokenEntry, writeTokensFile } from './service-tokens.js';

/**
 * `devstreams hub init [--dir DIR] [--listen HOST:PORT] [--public-url URL]`: a ready-to-run hub
 * folder with a development CA, a server certificate (for localhost, 127.0.0.1 and the public URL's
 * host), a first service token and an empty registry.
 */

export interface InitOptions {
  dir: string;
  listen?: string;
  /** The https URL devices and services dial (hub.yaml's publicUrl); checked by the config's own schema. */
  publicUrl?: string;
}

export interface InitResult {
  dir: string;
  configFile: string;
  tokenFile: string;
  caFile: string;
  hubUrl: string;
  /** The shell lines a service-side shell needs; they never contain the token itself. */
  exportLines: string[];
  /** Lines to show the user on stderr (a listen address other machines reach, without --public-url). */
  warnings: string[];
}

export const DEFAULT_HUB_DIR = '.devstreams';
export const DEFAULT_LISTEN = '127.0.0.1:8443';

export function hubYaml(opts: { listen: string; publicUrl?: string }): string {
  return `# devstreams hub configuration, written by \`devstreams hub init\`.
# Relative paths resolve against this file's folder. Unknown keys are errors.
listen: ${JSON.stringify(opts.listen)}
# The https URL devices and services use (default https://localhost:<port>); \`hub add-device\`
# writes it into agent configs and refuses to without it unless listen is a loopback address:
${opts.publicUrl !== undefined ? `publicUrl: ${JSON.stringify(opts.publicUrl)}` : '# publicUrl: https://hub.example.com:8443'}
tls:
  cert: tls/hub.crt
  key: tls/hub.key
# The development CA; \`hub add-device\` copies it into each device's folder.
ca: tls/ca.crt
registry: registry.json
# Service tokens (names, scopes, SHA-256 digests; never the tokens): \`devstreams hub token create|list|revoke\`.
# The first one, "default" (all devices, all services), is in service.token.
tokens: tokens.json
# How devices prove who they are (device tokens are always accepted):
# deviceAuth:
#   allowStaticKeys: true        # false: refuse agents that send their key itself (auth: key)
#   maxTokenTtlSeconds: 86400
handshake:
  defaultTimeoutMs: 60000
  maxTimeoutMs: 300000
# MQTT over TLS on a second port, for agents configured with mqtts://:
# mqtts:
#   listen: 127.0.0.1:8883
log:
  level: info
`;
}

/** Writes the hub folder. Refuses to touch a folder that already has a hub.yaml. */
export function initHub(opts: InitOptions): InitResult {
  const dir = resolve(opts.dir);
  const listen = opts.listen ?? DEFAULT_LISTEN;
  if (!parseHostPort(listen)) {
    throw new ConfigError('--listen', [`"${listen}" must be HOST:PORT with a port from 0 to 65535`]);
  }
  const publicUrl = opts.publicUrl === undefined ? undefined : checkPublicUrl(opts.publicUrl);
  const configFile = join(dir, 'hub.yaml');
  if (existsSync(configFile)) {
    throw new ConfigError(configFile, ['already exists; refusing to overwrite it (remove the folder or use --dir for a new one)']);
  }

  // The folder first: a --dir that is a file, or that cannot be made, is said as such (not a raw errno).
  try {
    makeDirDurable(dir, ownerForNewFile(dir));
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError('--dir', [`${err.file} ${err.problems.join('; ')}`]);
    throw err;
  }

  // The public host too, so that devices and services dialling it can verify the certificate.
  const publicHost = publicUrl === undefined ? undefined : publicUrl.hostname.replace(/^\[(.*)\]$/, '$1');
  const tls = createDevCa([...new Set([...(publicHost !== undefined ? [publicHost] : []), 'localhost', '127.0.0.1'])]);
  const caFile = join(dir, 'tls', 'ca.crt');
  writeFileAtomic(caFile, tls.ca.cert, PUBLIC_MODE);
  writeFileAtomic(join(dir, 'tls', 'ca.key'), tls.ca.key, SECRET_MODE);
  writeFileAtomic(join(dir, 'tls', 'hub.crt'), tls.server.cert, PUBLIC_MODE);
  writeFileAtomic(join(dir, 'tls', 'hub.key'), tls.server.key, SECRET_MODE);

  const token = newSecret();
  const tokenFile = join(dir, 'service.token');
  writeFileAtomic(tokenFile, token, SECRET_MODE); // no newline: the file is the token, byte for byte

  const tokensFile = join(dir, 'tokens.json');
  writeTokensFile(tokensFile, { tokens: { default: newTokenEntry(token, { devices: ['*'], services: ['*'] }) } });

  const registryFile = join(dir, 'registry.json');
  if (!existsSync(registryFile)) writeRegistryFile(registryFile, emptyRegistry());

  // Last, so a failure above leaves no hub.yaml and init can simply be run again.
  writeFileAtomic(configFile, hubYaml({ listen, ...(publicUrl ? { publicUrl: publicUrl.origin } : {}) }), SECRET_MODE);

  const hubUrl = publicUrl?.origin ?? publicUrlOf({ listen }).origin;
  const exportLines = [
    `export DEVSTREAMS_HUB=${hubUrl}`,
    `export DEVSTREAMS_TOKEN="$(cat ${shellQuote(tokenFile)})"`,
    `export DEVSTREAMS_CA=${shellQuote(caFile)}`,
  ];
  const warning = publicUrl === undefined ? initPublicUrlWarning(listen, configFile) : null;
  return { dir, configFile, tokenFile, caFile, hubUrl, exportLines, warnings: warning ? [warning] : [] };
}

/** `--public-url`, checked as hub.yaml's publicUrl is; a ConfigError naming the flag and the problem. */
function checkPublicUrl(value: string): URL {
  const parsed = PublicUrlSchema.safeParse(value);
  if (!parsed.success) {
    throw new ConfigError('--public-url', [`"${value}" ${parsed.error.issues.map((i) => i.message).join('; ')}`]);
  }
  return new URL(parsed.data);
}

/** Quotes a path for a POSIX shell only when it needs it. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:@%+=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
