import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // End-to-end files start real processes; two at a time on this 2-core machine.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
