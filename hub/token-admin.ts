import { DevstreamsError, newSecret } from '../protocol/index.js';
import { loadHubConfig } from './config.js';
import {
  DEVICE_GLOB_PATTERN,
  SERVICE_SCOPE_PATTERN,
  TOKEN_NAME_PATTERN,
  newTokenEntry,
  readTokensFile,
  writeTokensFile,
} from './service-tokens.js';

/**
 * `devstreams hub token create | list | revoke`: named, scoped service tokens in the tokens file.
 * Only `create` ever sees a token, and returns it for the command to print once on stdout.
 */

export interface TokenSummary {
  name: string;
  devices: string[];
  services: string[];
  createdAt: string;
  /** Where it is stored: the tokens file, or hub.yaml's legacy serviceTokens (full scope, read-only here). */
  source: 'tokens' | 'hub.yaml';
}

function splitScope(flag: string | undefined, pattern: RegExp, what: string): string[] {
  if (flag === undefined) return ['*'];
  const items = flag.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new DevstreamsError('BAD_REQUEST', `--${what} needs at least one value`);
  for (const i of items) {
    if (!pattern.test(i)) throw new DevstreamsError('BAD_REQUEST', `--${what}: "${i.slice(0, 80)}" is not valid`);
  }
  return [...new Set(items)];
}

export function createToken(opts: { configFile: string; name: string; devices?: string; services?: string }): {
  token: string;
  summary: TokenSummary;
  file: string;
} {
  if (!TOKEN_NAME_PATTERN.test(opts.name)) {
    throw new DevstreamsError('BAD_REQUEST', `token name "${opts.name.slice(0, 80)}": use 1-64 letters, digits, ".", "-" or "_"`);
  }
  const devices = splitScope(opts.devices, DEVICE_GLOB_PATTERN, 'devices');
  const services = splitScope(opts.services, SERVICE_SCOPE_PATTERN, 'services');
  const { config } = loadHubConfig(opts.configFile);
  if (config.serviceTokens.some((t) => t.name === opts.name)) {
    throw new DevstreamsError('BAD_REQUEST', `a token named "${opts.name}" exists in ${opts.configFile} (serviceTokens)`);
  }
  const file = readTokensFile(config.tokens);
  if (Object.hasOwn(file.tokens, opts.name)) {
    throw new DevstreamsError('BAD_REQUEST', `a token named "${opts.name}" exists; revoke it first or pick another name`);
  }
  const token = newSecret();
  const entry = newTokenEntry(token, { devices, services });
  file.tokens[opts.name] = entry;
  writeTokensFile(config.tokens, file);
  return { token, file: config.tokens, summary: { name: opts.name, devices, services, createdAt: entry.createdAt, source: 'tokens' } };
}

export function listTokens(opts: { configFile: string }): TokenSummary[] {
  const { config } = loadHubConfig(opts.configFile);
  const out: TokenSummary[] = config.serviceTokens.map((t) => ({
    name: t.name, devices: ['*'], services: ['*'], createdAt: '', source: 'hub.yaml' as const,
  }));
  for (const [name, t] of Object.entries(readTokensFile(config.tokens).tokens)) {
    out.push({ name, devices: t.devices, services: t.services, createdAt: t.createdAt, source: 'tokens' });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export function revokeToken(opts: { configFile: string; name: string }): { file: string } {
  const { config } = loadHubConfig(opts.configFile);
  const file = readTokensFile(config.tokens);
  if (!Object.hasOwn(file.tokens, opts.name)) {
    const inYaml = config.serviceTokens.some((t) => t.name === opts.name);
    throw new DevstreamsError(
      'NOT_FOUND',
      inYaml
        ? `token "${opts.name}" is in ${opts.configFile} (serviceTokens): delete it there and restart the hub`
        : `no token named "${opts.name.slice(0, 80)}"`,
    );
  }
  delete file.tokens[opts.name];
  writeTokensFile(config.tokens, file);
  return { file: config.tokens };
}
