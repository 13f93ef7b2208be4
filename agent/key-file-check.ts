import { readFileSync, statSync } from 'node:fs';
import type { Logger } from '../protocol/index.js';

/**
 * Start-up check of the device key file: it holds the device's only secret, so it should be readable
 * by its owner alone (0600 or 0400). A group- or world-readable key file is logged as a warning
 * naming the file and its mode (never its content); the agent still starts, as sshd-style refusal
 * would turn a permissions slip into an outage of a remote device.
 */
export function keyFileExposure(file: string): string | null {
  const exposed = exposure(file);
  return exposed && `key file ${file} has mode ${exposed.mode}: readable or writable by ${exposed.who}; run chmod 600 ${file}`;
}

/**
 * The same check for a config file that holds the key itself (`hub.key`, no keyFile): the file is
 * then as secret as a key file.
 */
export function inlineKeyConfigExposure(file: string): string | null {
  const exposed = exposure(file);
  return (
    exposed &&
    `config file ${file} holds the device key (hub.key) and has mode ${exposed.mode}: readable or writable by ${exposed.who}; run chmod 600 ${file}, or move the key to a file of its own (hub.keyFile, mode 0600)`
  );
}

function exposure(file: string): { mode: string; who: string } | null {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return null; // reading it already succeeded or failed with its own error
  }
  if ((mode & 0o077) === 0) return null;
  const who = [mode & 0o070 ? 'its group' : '', mode & 0o007 ? 'other users' : ''].filter(Boolean).join(' and ');
  return { mode: mode.toString(8).padStart(4, '0'), who };
}

export function warnIfKeyFileExposed(file: string | undefined, log: Logger): void {
  if (file === undefined) return;
  const problem = keyFileExposure(file);
  if (problem) log.warn({ keyFile: file }, problem);
}

/** Start-up (agent/cli.ts, which knows the config file): a config holding hub.key gets the same warning. */
export function warnIfInlineKeyConfigExposed(configFile: string, keyFile: string | undefined, log: Logger): void {
  if (keyFile !== undefined) return; // the key is in keyFile, checked by warnIfKeyFileExposed
  const problem = inlineKeyConfigExposure(configFile);
  if (problem) log.warn({ config: configFile }, problem);
}

/** The most a key file holds (agent/config.ts reads it with the same bound). */
const MAX_KEY_FILE_BYTES = 1024;

/**
 * True when `file` now holds a key other than `key` (rotated on disk, the agent not reloaded).
 * Unreadable, too large or empty: false, the refusal's hint stays the usual one.
 */
export function keyFileDiffers(file: string, key: string): boolean {
  try {
    const buf = readFileSync(file);
    if (buf.length > MAX_KEY_FILE_BYTES) return false;
    const onDisk = buf.toString('utf8').trim();
    return onDisk !== '' && onDisk !== key;
  } catch {
    return false;
  }
}
