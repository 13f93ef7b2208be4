import { pino, destination, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * The root logger of one process: pino JSON, one line per event. Daemons log to stdout (journald keeps
 * it); the service CLI logs to stderr, since its stdout may carry stream bytes. Secrets are redacted
 * by key wherever they appear.
 */
export function createLogger(opts: { name: string; level?: LogLevel; destination?: DestinationStream | 1 | 2 }): Logger {
  const dest = opts.destination ?? 1;
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      base: { pid: process.pid },
      redact: {
        paths: ['token', 'key', 'password', 'secret', 'authorization', '*.token', '*.key', '*.password', '*.authorization'],
        censor: '[redacted]',
      },
    },
    typeof dest === 'number' ? destination({ fd: dest, sync: true }) : dest,
  );
}

/** A logger that drops everything, for library use without a logger. */
export const silentLogger: Logger = pino({ level: 'silent' });
