/** Settings are parsed once, and a bad one stops the process naming the variable (config.ts). */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

const issuesOf = (env: Record<string, string>) => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.issues.map((i) => i.variable);
  }
};

describe('RETRY_SCHEDULE', () => {
  it.each(['fibonacci', 'fibonacci:5', '5,30,300', ' 1, 2 ,3 ', '0.5,1'])('takes %j', (spec) => {
    expect(loadConfig({ RETRY_SCHEDULE: spec }).retry.schedule).toBe(spec);
  });

  it.each(['5,,30', '5,', ',', 'abc', '5;30', '-5', 'Infinity', 'fibonacci:x', 'fibonacci:'])('refuses %j, naming the variable', (spec) => {
    expect(issuesOf({ RETRY_SCHEDULE: spec })).toEqual(['RETRY_SCHEDULE']);
  });

  it('unset or empty: unified.to\'s schedule', () => {
    expect(loadConfig({}).retry.schedule).toBe('fibonacci');
    expect(loadConfig({ RETRY_SCHEDULE: '' }).retry.schedule).toBe('fibonacci');
  });
});

describe('DATABASE_QUERY_TIMEOUT_MS', () => {
  it('defaults to 120 s and refuses what is not a positive number of ms', () => {
    expect(loadConfig({}).databaseQueryTimeoutMs).toBe(120_000);
    expect(loadConfig({ DATABASE_QUERY_TIMEOUT_MS: '1000' }).databaseQueryTimeoutMs).toBe(1000);
    expect(issuesOf({ DATABASE_QUERY_TIMEOUT_MS: '0' })).toEqual(['DATABASE_QUERY_TIMEOUT_MS']);
    expect(issuesOf({ DATABASE_QUERY_TIMEOUT_MS: 'soon' })).toEqual(['DATABASE_QUERY_TIMEOUT_MS']);
  });
});

describe('DELIVERY_LEASE_MS', () => {
  it('defaults to 3 × DELIVERY_TIMEOUT_MS + 30 s and refuses a lease a send could outlive', () => {
    expect(loadConfig({}).delivery.leaseMs).toBe(75_000);
    expect(loadConfig({ DELIVERY_TIMEOUT_MS: '1000', DELIVERY_LEASE_MS: '2000' }).delivery.leaseMs).toBe(2000);
    expect(issuesOf({ DELIVERY_TIMEOUT_MS: '15000', DELIVERY_LEASE_MS: '20000' })).toEqual(['DELIVERY_LEASE_MS']);
    expect(issuesOf({ DELIVERY_LEASE_MS: '1500' })).toEqual(['DELIVERY_LEASE_MS']);
  });
});
