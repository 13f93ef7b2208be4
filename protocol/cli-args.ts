/**
 * The one line for a command line that Node's parseArgs refused, in our words: its own messages
 * carry advice for other cases ("To specify a positional argument starting with a '-', place it at
 * the end of the command after '--'") and call a negative number "ambiguous". By the error's code;
 * within ERR_PARSE_ARGS_INVALID_OPTION_VALUE, which covers three cases, by Node's wording, best
 * effort: wording it does not recognise keeps Node's first line, as does an error of another kind.
 */
export function argsProblem(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const message = String(e?.message ?? err);
  // "'--bytes'", "'--bytes <value>'", "'-l, --listen <value>'": the long form.
  const option = /'(?:-\w, )?(--?[^' ,]+)/.exec(message)?.[1];
  switch (e?.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return option ? `unknown option ${option}` : firstLine(message);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (option && /ambiguous/.test(message)) return `${option} needs a value (one that starts with '-' is written ${option}=VALUE)`;
      if (option && /argument missing/.test(message)) return `${option} needs a value`;
      if (option && /does not take an argument/.test(message)) return `${option} takes no value`;
      return firstLine(message);
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? firstLine(message)}`;
    default:
      return firstLine(message);
  }
}

function firstLine(text: string): string {
  return (text.split('\n')[0] ?? '').replace(/\. To specify a positional.*$/, '');
}
