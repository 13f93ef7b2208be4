import { isLoopbackHost } from '../protocol/index.js';
import { parseHostPort, type HubConfig } from './config.js';

/**
 * Whether a hub can do without `publicUrl`. Without one it tells devices and services to dial
 * https://localhost:<port> (config.ts `publicUrlOf`): right for a hub that listens on loopback only
 * (the one-machine quick start), wrong for one that listens where other machines reach it.
 * Loopback: protocol/loopback.ts isLoopbackHost (localhost, 127.0.0.0/8, ::1).
 */

/**
 * Why agent configs written for this hub would be wrong without publicUrl, as a problem naming the
 * field; null when publicUrl is set or the hub listens on loopback at a fixed port.
 */
export function publicUrlProblem(config: Pick<HubConfig, 'publicUrl' | 'listen'>): string | null {
  if (config.publicUrl) return null;
  const { host, port } = parseHostPort(config.listen)!;
  if (port === 0) return 'publicUrl: required when listen uses port 0 (the agent config needs the port devices dial)';
  if (isLoopbackHost(host)) return null;
  return (
    `publicUrl: required when listen (${config.listen}) is not a loopback address: without it the agent config would ` +
    `name wss://localhost:${port}, and the device would dial itself. Set publicUrl in this file to the https URL ` +
    `devices reach the hub at (e.g. publicUrl: https://hub.example.com:${port}; https://localhost:${port} only if ` +
    `they run on this machine), or make a new hub folder with \`devstreams hub init --public-url URL\``
  );
}

/** `hub init`'s warning for a listen address other machines reach and no --public-url; null otherwise. */
export function initPublicUrlWarning(listen: string, configFile: string): string | null {
  const { host } = parseHostPort(listen)!;
  if (isLoopbackHost(host)) return null;
  return (
    `warning: --listen ${listen} is reachable from other machines but no --public-url was given: devices and ` +
    `services elsewhere need publicUrl, and \`hub add-device\` refuses until it is set in ${configFile} ` +
    `(e.g. publicUrl: https://hub.example.com:${parseHostPort(listen)!.port})`
  );
}

/**
 * The running hub's warning when it listens where other machines reach it and has no publicUrl:
 * the URLs it hands out (relay URLs, `endpoints`) name localhost. Null otherwise.
 */
export function runningPublicUrlWarning(config: Pick<HubConfig, 'publicUrl' | 'listen'>): string | null {
  if (config.publicUrl) return null;
  const { host, port } = parseHostPort(config.listen)!;
  if (port === 0 || isLoopbackHost(host)) return null;
  return `listen ${config.listen} is reachable from other machines but hub.yaml has no publicUrl: relay URLs and endpoints name localhost:${port}, which only this machine reaches; set publicUrl to the https URL devices and services use`;
}
