// Loggers are made here and passed in; nothing else calls pino() directly.
// JSON on stdout (journald picks it up); children carry agentId, tenant, etc.
import { pino, destination, stdTimeFunctions, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(opts: { name: string; level?: LogLevel; destination?: DestinationStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level ?? 'info',
      base: { name: opts.name },
      timestamp: stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? destination({ dest: 1, sync: true }),
  );
}

/** A logger that drops everything (unit tests that do not assert on logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
