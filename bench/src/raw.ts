/**
 * (f) The raw HTTP ceiling: signed POSTs straight from memory to the receiver, no
 * database. Same envelope, same signing and same receiver checks as the systems.
 */
import { randomUUID } from 'node:crypto';
import { generateWebhookSecret, signStandardHeaders } from '@hookpost/contract/signing';
import { Pool } from 'undici';
import { envelope, eventData, log, nowUs } from './common.js';
import { closedLoop, describe, measurePhase, type DrainResult } from './load.js';
import type { Ctx } from './context.js';

export async function runRaw(ctx: Ctx): Promise<DrainResult> {
  const { cfg, receiver, run } = ctx;
  const webhookId = randomUUID();
  const secret = generateWebhookSecret();
  const pool = new Pool(receiver.url, { connections: cfg.rawConnections, pipelining: 1, keepAliveTimeout: 30_000 });
  const createdAt = new Date().toISOString();
  const send = (phase: string) => async (i: number) => {
    const body = envelope(randomUUID(), webhookId, eventData(run, phase, i, nowUs()), createdAt);
    const headers = { 'content-type': 'application/json', ...signStandardHeaders([secret], `msg_${phase}_${i}`, Math.floor(Date.now() / 1000), body) };
    const res = await pool.request({ path: '/h', method: 'POST', headers, body });
    await res.body.dump();
    if (res.statusCode !== 204) throw new Error(`receiver answered ${res.statusCode}`);
  };
  try {
    const limits = { timeoutMs: cfg.drainTimeoutMs, stallMs: cfg.stallMs };
    const warm = Math.min(cfg.warmup * 5, cfg.rawEvents);
    await measurePhase(receiver, { phase: 'raw-warmup', run, secrets: { [webhookId]: secret }, requireTruto: false, expected: warm, collectLatency: false }, limits, () =>
      closedLoop(warm, cfg.rawConnections, send('raw-warmup')),
    );
    const r = await measurePhase(
      receiver,
      { phase: 'raw', run, secrets: { [webhookId]: secret }, requireTruto: false, expected: cfg.rawEvents, collectLatency: false },
      limits,
      () => closedLoop(cfg.rawEvents, cfg.rawConnections, send('raw')),
    );
    log(`raw: ${cfg.rawEvents} in ${r.drainSeconds.toFixed(2)} s = ${Math.round(cfg.rawEvents / r.drainSeconds)}/s (${describe(r.stats)})`);
    return r;
  } finally {
    await pool.close();
  }
}
