export * from './config.js';
export * from './logger.js';
export * from './shutdown.js';
export * from './http.js';
export * from './node-flags.js';
export * from './storable-text.js';
export * from './json-depth.js';
export * from './failure-streak.js';
