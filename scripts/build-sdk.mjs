// The SDK as a package export (`import { DevstreamsClient } from 'devstreams/service'`):
// dist/service.mjs, service/index.ts bundled with the CLI's esbuild options (npm packages stay in
// node_modules but Zod), and its type declarations in dist/types/ (tsc, tsconfig.sdk.json).
// package.json's `exports` names both. Called by scripts/build.mjs.
import { build } from 'esbuild';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The declarations' entry point; package.json's `exports["./service"].types`. */
const TYPES_ENTRY = join(ROOT, 'dist/types/service/index.d.ts');

/**
 * Builds dist/service.mjs with the CLI's esbuild options (`common`: bundling, target, externals,
 * defines), and dist/types/ unless it is newer than every source it comes from.
 */
export async function buildSdk(common) {
  await build({
    entryPoints: { service: join(ROOT, 'service/index.ts') },
    outdir: join(ROOT, 'dist'),
    outExtension: { '.js': '.mjs' },
    ...common,
  });
  // tsc takes seconds (esbuild milliseconds): only when a source changed since the last run.
  if (newestSource() > mtimeOf(TYPES_ENTRY)) emitDeclarations();
}

function emitDeclarations() {
  const configFile = join(ROOT, 'tsconfig.sdk.json');
  const { config, error } = ts.readConfigFile(configFile, ts.sys.readFile);
  if (error) throw new Error(`${configFile}: ${ts.flattenDiagnosticMessageText(error.messageText, '\n')}`);
  const parsed = ts.parseJsonConfigFileContent(config, ts.sys, ROOT, undefined, configFile);
  rmSync(join(ROOT, 'dist/types'), { recursive: true, force: true }); // no declarations of removed files
  const program = ts.createProgram(parsed.fileNames, parsed.options);
  const result = program.emit();
  // Type errors are `tsc --noEmit`'s to report (npm test); here only what stops the emit.
  const problems = result.diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (problems.length > 0 || result.emitSkipped) {
    const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
    rmSync(join(ROOT, 'dist/types'), { recursive: true, force: true });
    throw new Error(`SDK type declarations not built:\n${ts.formatDiagnostics(problems, host)}`);
  }
}

/** The newest modification time of what the declarations are made from. */
function newestSource() {
  let newest = 0;
  const visit = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, mtimeOf(p));
    }
  };
  visit(join(ROOT, 'service'));
  visit(join(ROOT, 'protocol'));
  for (const f of ['tsconfig.json', 'tsconfig.sdk.json', 'package.json', 'scripts/build-sdk.mjs']) newest = Math.max(newest, mtimeOf(join(ROOT, f)));
  return newest;
}

function mtimeOf(file) {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
