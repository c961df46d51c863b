export * from './adapter.js';
export * from './changes.js';
export * from './http-adapter.js';
export * from './registry.js';
