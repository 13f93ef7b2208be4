import { statSync } from 'node:fs';
import type { HubConfig } from './config.js';

/**
 * Start-up check of the hub's files that hold secrets: the registry (signing keys, enough to
 * impersonate devices), the service tokens file, the TLS key, the broker password file, and
 * hub.yaml itself when it holds mqtt.password. Each should be readable by its owner alone (0600 or
 * 0400). One warning per exposed file, naming the file, its mode and the fix; never its content.
 * The hub still starts, as the agent does with its key file.
 */
export function secretFileWarnings(config: Readonly<HubConfig>, configFile?: string): string[] {
  const files: Array<[string, string]> = [
    [config.registry, 'the device registry (signing keys)'],
    [config.tokens, 'the service tokens'],
    [config.tls.key, 'the TLS private key'],
  ];
  if (config.mqtt?.passwordFile !== undefined) files.push([config.mqtt.passwordFile, 'the broker password (mqtt.passwordFile)']);
  if (config.mqtt?.password !== undefined && configFile !== undefined) files.push([configFile, 'the broker password (mqtt.password)']);
  const warnings: string[] = [];
  for (const [file, what] of files) {
    let mode: number;
    try {
      mode = statSync(file).mode & 0o777;
    } catch {
      continue; // a missing file has its own message (or is created 0600)
    }
    if ((mode & 0o077) === 0) continue;
    const who = [mode & 0o070 ? 'its group' : '', mode & 0o007 ? 'other users' : ''].filter(Boolean).join(' and ');
    warnings.push(`${file} holds ${what} and has mode ${mode.toString(8).padStart(4, '0')}: readable or writable by ${who}; run chmod 600 ${file}`);
  }
  return warnings;
}
