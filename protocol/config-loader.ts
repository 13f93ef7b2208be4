import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { z } from 'zod';

/** A config file that cannot be used. `message` is one line naming the file, each bad field and why. */
export class ConfigError extends Error {
  readonly file: string;
  readonly problems: string[];
  constructor(file: string, problems: string[]) {
    super(`${file}: ${problems.join('; ')}`);
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

const MAX_CONFIG_BYTES = 256 * 1024;

/**
 * Loads one YAML config file: read, parse, apply the schema's defaults, validate (every problem is
 * reported with its path), then deep-freeze. Throws ConfigError and changes nothing on failure.
 */
export function loadConfigFile<S extends z.ZodType>(file: string, schema: S): Readonly<z.output<S>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read file (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfigText(file, text, schema);
}

export function parseConfigText<S extends z.ZodType>(file: string, text: string, schema: S): Readonly<z.output<S>> {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) throw new ConfigError(file, [`file is larger than ${MAX_CONFIG_BYTES} bytes`]);
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS() ?? {};
  } catch (err) {
    // Unresolved aliases, alias bombs (yaml's maxAliasCount): YAML that parses but cannot be built.
    throw new ConfigError(file, [`(top level): ${(err as Error).message.split('\n')[0]}`]);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      file,
      parsed.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`),
    );
  }
  return deepFreeze(parsed.data);
}

export function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
