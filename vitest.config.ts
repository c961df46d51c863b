import { defineConfig } from 'vitest/config';

/**
 * One run over every package. The global setup provides one Postgres (DATABASE_URL /
 * TEST_DATABASE_URL, else embedded) and a migrated template; each test file clones it.
 */
export default defineConfig({
  test: {
    include: ['apps/*/test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    globalSetup: ['packages/testkit/src/global-setup.ts'],
    reporters: ['default', './packages/testkit/src/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
  },
});
