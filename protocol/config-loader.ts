import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type * as z from './zod.js';
import { ConfigError, deepFreeze } from './config-error.js';

const MAX_CONFIG_BYTES = 256 * 1024;

/**
 * Loads one YAML config file: read, parse, apply the schema's defaults, validate (every problem is
 * reported with its path), then deep-freeze. Throws ConfigError and changes nothing on failure.
 */
export function loadConfigFile<S extends z.ZodMiniType>(file: string, schema: S): Readonly<z.output<S>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [`cannot read file (${(err as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfigText(file, text, schema);
}

export function parseConfigText<S extends z.ZodMiniType>(file: string, text: string, schema: S): Readonly<z.output<S>> {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) throw new ConfigError(file, [`file is larger than ${MAX_CONFIG_BYTES} bytes`]);
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // The first is where the parser lost its way; those after it mostly follow from it (a key
    // indented wrong makes every line after it in that mapping an error too), so they are counted.
    const first = doc.errors[0]!;
    const more = doc.errors.length - 1;
    const what = first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError(file, [`${yamlLines(first.linePos)}: ${what}${more > 0 ? ` (and ${more} more YAML error${more > 1 ? 's' : ''} after it)` : ''}`]);
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

/**
 * Where the YAML parser found a problem: `line N`, or `lines N-M` when what it could not read spans
 * lines. A key indented one space too far is found at the end of the line before it (the parser
 * reads the two as one multi-line key), so the range names both.
 */
function yamlLines(pos: readonly [{ line: number }, { line: number }] | readonly [{ line: number }] | undefined): string {
  const from = pos?.[0]?.line;
  const to = pos?.[1]?.line;
  if (from === undefined) return 'line ?';
  return to !== undefined && to > from ? `lines ${from}-${to}` : `line ${from}`;
}
