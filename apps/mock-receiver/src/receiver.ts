import { randomUUID } from 'node:crypto';
import { listenHttp, readBodyCapped } from '@hookpost/runtime';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { verifyStandard, verifyTruto, verifyUnified } from '@hookpost/contract/signing';

/** What the receiver made of one signature: valid, invalid, or not present. */
export type SignatureCheck = 'valid' | 'invalid' | 'absent';

export interface ReceivedDelivery {
  id: string;
  received_at: string;
  method: string;
  path: string;
  /** The `webhook-id` header: stable across retries of one delivery. */
  webhook_id: string | null;
  headers: Record<string, string>;
  /** The body parsed as JSON (else its text). */
  body: unknown;
  /** The body exactly as received: what signatures are computed over. */
  raw_body: string;
  signatures: { standard: SignatureCheck; unified: SignatureCheck; truto: SignatureCheck };
  /** True when every signature present verified and at least one was present. */
  verified: boolean;
  status: number;
}

/** How the receiver answers: per path, or for every path (`*`). */
export interface Behaviour {
  /** Status to answer with (default 200). */
  status?: number;
  /** Delay before answering, in ms. */
  latency_ms?: number;
  /** Fraction (0–1) of requests answered with `failure_status` instead. */
  failure_rate?: number;
  failure_status?: number;
  /** Retry-After header value to send with non-2xx answers. */
  retry_after?: string;
  /** Answer with this text (as text/plain) instead of the usual JSON. */
  body?: string;
  /** Apply to this many requests only, then fall back to 200. */
  times?: number;
}

export interface ReceiverOptions {
  /** Secrets to verify with (a delivery verifies if any matches). */
  secrets?: string[];
  /** Deliveries kept in memory; older ones are dropped first. */
  capacity?: number;
  maxBodyBytes?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface Receiver {
  server: Server;
  url: string;
  deliveries(): ReceivedDelivery[];
  addSecret(secret: string): void;
  /** Sets how `path` (or every path, `*`) answers; `undefined` restores 200. */
  setBehaviour(path: string, behaviour: Behaviour | undefined): void;
  close(): Promise<void>;
}

const RECORDED_HEADERS = ['content-type', 'user-agent', 'webhook-id', 'webhook-timestamp', 'webhook-signature', 'x-truto-signature'];

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function check(result: { ok: boolean } | null): SignatureCheck {
  return result === null ? 'absent' : result.ok ? 'valid' : 'invalid';
}

/** Verifies whichever of the three signatures a delivery carries. */
export function verifyDelivery(secrets: readonly string[], headers: IncomingMessage['headers'], raw: Buffer, body: unknown) {
  const standard = check(headers['webhook-signature'] ? verifyStandard(secrets, headers, raw) : null);
  const payload = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const unified = check('sig256' in payload ? verifyUnified(secrets, payload) : null);
  const trutoHeader = headers['x-truto-signature'];
  const truto = check(typeof trutoHeader === 'string' ? verifyTruto(secrets, trutoHeader, raw) : null);
  const all = [standard, unified, truto];
  return { signatures: { standard, unified, truto }, verified: all.includes('valid') && !all.includes('invalid') };
}

/**
 * A webhook receiver for local use and tests. POST anything to any path; it verifies
 * signatures against its secrets, records the delivery, and answers 200.
 * `GET /deliveries` lists what arrived (filters: path, webhook_id, verified, limit).
 * `POST /_control/secrets {secret}` adds a secret; `DELETE /deliveries` forgets everything.
 * `POST /_control/behaviour {path?, status?, latency_ms?, failure_rate?, failure_status?, retry_after?, body?, times?}`
 * makes a path (default: every path) fail, slow down, send Retry-After or answer with a given
 * text; `{reset: true}` clears.
 */
export function createReceiver(options: ReceiverOptions = {}): Receiver {
  const secrets = [...(options.secrets ?? [])];
  const capacity = options.capacity ?? 100_000;
  const maxBody = options.maxBodyBytes ?? 5 * 1024 * 1024;
  const log = options.log ?? (() => undefined);
  let received: ReceivedDelivery[] = [];
  const behaviours = new Map<string, Behaviour>();

  /** The answer for one request to `path`, consuming a `times` budget. */
  const decide = (path: string): { status: number; latency: number; retryAfter?: string; body?: string } => {
    const key = behaviours.has(path) ? path : behaviours.has('*') ? '*' : undefined;
    const b = key ? behaviours.get(key) : undefined;
    if (!b || !key) return { status: 200, latency: 0 };
    if (b.times !== undefined) {
      if (b.times <= 0) {
        behaviours.delete(key);
        return { status: 200, latency: 0 };
      }
      b.times--;
    }
    const failing = b.failure_rate !== undefined && Math.random() < b.failure_rate;
    const status = failing ? (b.failure_status ?? 500) : (b.status ?? 200);
    return {
      status,
      latency: b.latency_ms ?? 0,
      ...(b.retry_after && (status < 200 || status >= 300) ? { retryAfter: b.retry_after } : {}),
      ...(b.body !== undefined ? { body: b.body } : {}),
    };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://receiver');
    if (req.method === 'GET' && url.pathname === '/healthz') return json(res, 200, { status: 'ok' });
    if (req.method === 'GET' && url.pathname === '/deliveries') {
      const q = url.searchParams;
      let list = received;
      if (q.get('path')) list = list.filter((d) => d.path === q.get('path'));
      if (q.get('webhook_id')) list = list.filter((d) => d.webhook_id === q.get('webhook_id'));
      if (q.get('verified')) list = list.filter((d) => String(d.verified) === q.get('verified'));
      const limit = Math.min(Number(q.get('limit') ?? 1000) || 1000, 10_000);
      return json(res, 200, { count: list.length, deliveries: list.slice(-limit) });
    }
    if (req.method === 'DELETE' && url.pathname === '/deliveries') {
      received = [];
      return json(res, 200, { count: 0 });
    }
    if (req.method === 'POST' && url.pathname === '/_control/behaviour') {
      const raw = await readBodyCapped(req, 64 * 1024);
      const body = (raw ? JSON.parse(raw.toString('utf8') || '{}') : {}) as Behaviour & { path?: string; reset?: boolean };
      const { path = '*', reset, ...behaviour } = body;
      if (reset) behaviours.clear();
      else behaviours.set(path, behaviour);
      return json(res, 200, { behaviours: Object.fromEntries(behaviours) });
    }
    if (req.method === 'POST' && url.pathname === '/_control/secrets') {
      const raw = await readBodyCapped(req, 64 * 1024);
      const body = raw ? (JSON.parse(raw.toString('utf8') || '{}') as { secret?: unknown }) : {};
      if (typeof body.secret !== 'string' || body.secret.length === 0) return json(res, 400, { error: { code: 'validation_failed', message: 'secret: required', field: 'body.secret' } });
      if (!secrets.includes(body.secret)) secrets.push(body.secret);
      return json(res, 200, { secrets: secrets.length });
    }
    if (req.method !== 'POST' && req.method !== 'PUT') return json(res, 405, { error: { code: 'method_not_allowed', message: 'deliver with POST' } });

    const raw = await readBodyCapped(req, maxBody);
    if (raw === null) return json(res, 413, { error: { code: 'payload_too_large', message: 'body too large' } });
    const text = raw.toString('utf8');
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    const { signatures, verified } = verifyDelivery(secrets, req.headers, raw, body);
    const headers = Object.fromEntries(
      RECORDED_HEADERS.flatMap((h) => (typeof req.headers[h] === 'string' ? [[h, req.headers[h] as string]] : [])),
    );
    const answer = decide(url.pathname);
    if (answer.latency > 0) await new Promise((r) => setTimeout(r, answer.latency));
    const delivery: ReceivedDelivery = {
      id: randomUUID(),
      received_at: new Date().toISOString(),
      method: req.method,
      path: url.pathname,
      webhook_id: typeof req.headers['webhook-id'] === 'string' ? req.headers['webhook-id'] : null,
      headers,
      body,
      raw_body: text,
      signatures,
      verified,
      status: answer.status,
    };
    received.push(delivery);
    if (received.length > capacity) received = received.slice(received.length - capacity);
    log('delivery received', { path: delivery.path, webhook_id: delivery.webhook_id, verified, signatures, status: answer.status });
    if (answer.retryAfter) res.setHeader('retry-after', answer.retryAfter);
    if (answer.body !== undefined) res.writeHead(answer.status, { 'content-type': 'text/plain; charset=utf-8' }).end(answer.body);
    else json(res, answer.status, { received: answer.status >= 200 && answer.status < 300 });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log('receiver error', { err: String(err) });
      if (!res.headersSent) json(res, 500, { error: { code: 'internal_error', message: 'receiver error' } });
    });
  });
  server.keepAliveTimeout = 65_000;

  const receiver: Receiver = {
    server,
    url: '',
    deliveries: () => received,
    addSecret: (s) => {
      if (!secrets.includes(s)) secrets.push(s);
    },
    setBehaviour: (path, behaviour) => {
      if (behaviour) behaviours.set(path, { ...behaviour });
      else behaviours.delete(path);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return receiver;
}

/** Starts a receiver listening on host:port (port 0: any free port). */
export async function startReceiver(host: string, port: number, options: ReceiverOptions = {}): Promise<Receiver> {
  const receiver = createReceiver(options);
  receiver.url = await listenHttp(receiver.server, host, port);
  return receiver;
}
