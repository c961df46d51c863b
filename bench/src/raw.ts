/**
 * (f) The raw HTTP ceiling: signed POSTs straight from memory to the receiver, no
 * database. Same envelope, same signing and same receiver checks as the systems.
 */
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateWebhookSecret, signStandardHeaders } from '@hookpost/contract/signing';
import { Pool } from 'undici';
import { envelope, eventData, log, nowUs, type PhaseConfig } from './common.js';
import type { Ctx } from './context.js';
import { ApiClient } from './hookpost.js';
import { closedLoop, describe, measurePhase, type DrainResult } from './load.js';
import { CpuMeter, readyMessage, ServiceProc } from './procs.js';

const here = path.dirname(fileURLToPath(import.meta.url));

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
    // The driver is the sender here: its CPU over the phase is what a bare sign-and-POST costs.
    const limits = { timeoutMs: cfg.drainTimeoutMs, stallMs: cfg.stallMs, cpu: () => CpuMeter.start({ receiver: receiver.child.pid ?? 0 }, ctx.serverUrl) };
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

/**
 * (f) The relay ceiling for (b): one event per request, `cfg.clients` clients, through a
 * process that answers 202 and forwards each event signed to the receiver — the same
 * two HTTP hops as (b), the same client and the same receiver checks, no database.
 */
export async function runRelay(ctx: Ctx): Promise<DrainResult> {
  const { cfg, receiver, run } = ctx;
  const webhookId = randomUUID();
  const secret = generateWebhookSecret();
  const relay = ServiceProc.forkNode('relay', path.join(here, 'relay.js'), { ...process.env, RECEIVER_URL: receiver.url, RELAY_SECRET: secret, RELAY_WEBHOOK_ID: webhookId }, ctx.logDir);
  const { port } = await readyMessage<{ port: number }>(relay.child, 'relay', 30_000, () => `:\n${relay.lastLines()}`);
  const client = new ApiClient(`http://127.0.0.1:${port}`, Math.max(cfg.clients, 64));
  const send = (phase: string) => async (i: number) => {
    const r = await client.expect(202, 'POST', '/v1/events', 'relay', { type: 'record:created', object_type: 'crm_contact', data: eventData(run, phase, i, nowUs()) });
    if (r.deliveries !== 1) throw new Error(`relay answered ${JSON.stringify(r)}`);
  };
  const phaseCfg = (phase: string, expected: number): PhaseConfig => ({ phase, run, secrets: { [webhookId]: secret }, requireTruto: true, expected, collectLatency: false });
  try {
    const limits = {
      timeoutMs: cfg.drainTimeoutMs,
      stallMs: cfg.stallMs,
      isAlive: relay.alive,
      cpu: () => CpuMeter.start({ relay: relay.pid, receiver: receiver.child.pid ?? 0 }, ctx.serverUrl),
    };
    await measurePhase(receiver, phaseCfg('relay-warmup', cfg.warmup), limits, () => closedLoop(cfg.warmup, cfg.clients, send('relay-warmup')));
    const r = await measurePhase(receiver, phaseCfg('relay', cfg.singleEvents), limits, () => closedLoop(cfg.singleEvents, cfg.clients, send('relay')));
    log(`relay: ${cfg.singleEvents} in ${r.drainSeconds.toFixed(2)} s = ${Math.round(cfg.singleEvents / r.drainSeconds)}/s (${describe(r.stats)})`);
    return r;
  } finally {
    await client.pool.close().catch(() => undefined);
    await relay.stop();
  }
}
