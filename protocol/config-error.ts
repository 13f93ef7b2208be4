// ConfigError and deepFreeze, apart from the YAML loader (config-loader.ts): the service commands
// use these and must not load the YAML parser at start-up (every ssh ProxyCommand runs one).

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

/** Freezes a parsed config and everything in it (configs are passed in, never changed). */
export function deepFreeze<T>(value: T): Readonly<T> {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
