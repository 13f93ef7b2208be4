// The command-line option helper of the bench's scripts.

/** The value after `--name` on the command line, or `def` when the option is absent. */
export function option(name, def) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
}
