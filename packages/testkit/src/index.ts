export * from './test-database.js';
export * from './logged-process.js';
export * from './fixtures.js';
export * from './statement-hooks.js';
