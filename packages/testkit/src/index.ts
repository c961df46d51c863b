export * from './test-database.js';
export * from './logged-process.js';
