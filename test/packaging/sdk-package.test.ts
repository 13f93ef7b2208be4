import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/proc.js';
import { Stack } from '../helpers/stack.js';

const run = promisify(execFile);

/**
 * The SDK as its README says to use it: a project of its own with the package in node_modules
 * (linked to this checkout, as `npm install /path/to/devstreams` does), importing
 * `devstreams/service` (package.json `exports`: dist/service.mjs and dist/types/, built by
 * scripts/build.mjs) from plain JavaScript and from type-checked TypeScript.
 */
describe('the SDK package export devstreams/service', () => {
  const stack = new Stack();
  const project = mkdtempSync(join(tmpdir(), 'devstreams-sdk-user-'));

  beforeAll(async () => {
    for (const f of ['dist/service.mjs', 'dist/types/service/index.d.ts']) {
      if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run node scripts/build.mjs first`);
    }
    mkdirSync(join(project, 'node_modules'));
    symlinkSync(ROOT, join(project, 'node_modules', 'devstreams'), 'dir');
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'sdk-user', private: true, type: 'module' }));
    await stack.start([{ id: 'pi-sdk', allow: ['echo'] }]);
  });
  afterAll(async () => {
    await stack.stop();
    rmSync(project, { recursive: true, force: true });
  });

  it('imports from an .mjs file in another process, lists devices and echoes bytes through a stream', async () => {
    writeFileSync(
      join(project, 'app.mjs'),
      `import { readFileSync } from 'node:fs';
import { DevstreamsClient, HubRefusalError, StreamClosedError } from 'devstreams/service';

const client = new DevstreamsClient({ hub: process.env.DEVSTREAMS_HUB, token: process.env.DEVSTREAMS_TOKEN, ca: readFileSync(process.env.DEVSTREAMS_CA) });
const devices = (await client.listDevices()).map((d) => d.id);
const stream = await client.openStream('pi-sdk', 'echo');
const chunks = [];
stream.on('data', (c) => chunks.push(c));
const ended = new Promise((r) => stream.once('end', r));
stream.end('hello through the sdk');
await ended;
let refusal;
try {
  await client.openStream('no-such-device', 'echo');
} catch (err) {
  refusal = { isRefusal: err instanceof HubRefusalError, code: err.code };
}
client.close();
console.log(JSON.stringify({ devices, echoed: Buffer.concat(chunks).toString(), refusal, closedErrorName: new StreamClosedError(4502, 'x').name }));
`,
    );
    const { stdout } = await run(process.execPath, ['app.mjs'], { cwd: project, env: { ...process.env, ...stack.env }, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({
      devices: ['pi-sdk'],
      echoed: 'hello through the sdk',
      refusal: { isRefusal: true, code: 'DEVICE_UNKNOWN' },
      closedErrorName: 'StreamClosedError',
    });
  });

  it('type-checks a TypeScript file that imports it, and its types are not any', async () => {
    const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        types: ['node'],
        // The project has no node_modules of its own but the link: @types/node from this checkout's.
        typeRoots: [join(ROOT, 'node_modules/@types')],
      },
      files: ['good.ts', 'bad.ts'],
    };
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(tsconfig));
    const good = `import { DevstreamsClient, HubRefusalError, type DeviceInfo, type OpenStreamOptions } from 'devstreams/service';

const client = new DevstreamsClient({ hub: 'https://hub.example.com', token: 't', tlsCipher: 'auto' });
const opts: OpenStreamOptions = { timeoutMs: 30_000 };
export async function ids(): Promise<string[]> {
  const devices: DeviceInfo[] = await client.listDevices();
  try {
    const stream = await client.openStream('pi', 'ssh', opts);
    stream.end();
  } catch (err) {
    if (err instanceof HubRefusalError && err.code === 'DEVICE_OFFLINE') return [];
  }
  return devices.map((d) => d.id);
}
`;
    writeFileSync(join(project, 'good.ts'), good);
    // A typo in a code and a wrong option are compile errors: the types are the SDK's, not any.
    writeFileSync(join(project, 'bad.ts'), good.replace("'DEVICE_OFFLINE'", "'DEVICE_OFLINE'").replace("tlsCipher: 'auto'", "tlsCipher: 'fast'"));
    // One tsc run for both files (it takes seconds): errors in bad.ts only.
    const out = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project, timeout: 60_000 }).then(
      () => 'no errors',
      (err: { stdout: string }) => err.stdout,
    );
    const errors = out.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors.every((l) => l.startsWith('bad.ts(')), out).toBe(true);
    expect(errors.join('\n')).toMatch(/'"DEVICE_OFLINE"'/);
    expect(errors.join('\n')).toMatch(/'"fast"' is not assignable/);
    expect(errors).toHaveLength(2);
  });
});
