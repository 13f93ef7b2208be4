import { statSync } from 'node:fs';
import type { Logger } from '../protocol/index.js';

/**
 * Start-up check of the device key file: it holds the device's only secret, so it should be readable
 * by its owner alone (0600 or 0400). A group- or world-readable key file is logged as a warning
 * naming the file and its mode (never its content); the agent still starts, as sshd-style refusal
 * would turn a permissions slip into an outage of a remote device.
 */
export function keyFileExposure(file: string): string | null {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return null; // reading it already succeeded or failed with its own error
  }
  if ((mode & 0o077) === 0) return null;
  const who = [mode & 0o070 ? 'its group' : '', mode & 0o007 ? 'other users' : ''].filter(Boolean).join(' and ');
  return `key file ${file} has mode ${mode.toString(8).padStart(4, '0')}: readable or writable by ${who}; run chmod 600 ${file}`;
}

export function warnIfKeyFileExposed(file: string | undefined, log: Logger): void {
  if (file === undefined) return;
  const problem = keyFileExposure(file);
  if (problem) log.warn({ keyFile: file }, problem);
}
