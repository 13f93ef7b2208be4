/**
 * The schema library every config file and message schema is written with: Zod Mini, with Zod's
 * English messages. Import it as `import * as z from '../protocol/zod.js'`, never from 'zod'
 * itself, so the messages are always set (test/protocol/contract.test.ts checks).
 *
 * Why Mini and not Zod's classic API (issue 6): classic gives every schema its methods as own
 * properties and cannot be tree-shaken, so it was 596 KB of each role's 0.8-2.7 MB program in the
 * single executable; compiling and running it at start cost every command, `devstreams connect`
 * (once per ssh session) included, and it stayed in the agent's heap. Mini is the same validator
 * (the same issues and, with the English locale below, the same messages) with functions instead
 * of methods: `z.optional(s)`, `s.check(z.maxLength(9))`.
 *
 * Re-exported name by name (`export *`) and imported as a namespace (`import * as z`), the bundler
 * keeps only what is used through `z.name`. A namespace object handed on as a value (`export * as
 * z`, or `export { z }`) would keep all of Zod, its forty-odd locales included. For the same reason
 * protocol/index.ts does not re-export this module.
 */
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

// Mini sets no locale: without this every message would read "Invalid input".
config(en());

export * from 'zod/mini';
