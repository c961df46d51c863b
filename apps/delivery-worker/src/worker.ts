import { createDb, createSecretBox, migrateToLatest } from '@hookpost/db';
import { createAddressPolicy, retryPolicyFrom, Sender, TargetLoader } from '@hookpost/delivery';
import type { Config, Logger } from '@hookpost/runtime';
import pg from 'pg';
import { DeliveryEngine } from './delivery/engine.js';
import { startLeaseReaper } from './maintenance/lease-reaper.js';
import { startRetention } from './maintenance/retention.js';

/** Channels the API and ingest notify on; the worker sleeps until one fires. */
export const WAKE_CHANNELS = ['hookpost_deliveries', 'hookpost_runs'] as const;

export interface WorkerOptions {
  config: Readonly<Config>;
  databaseUrl: string;
  logger: Logger;
}

export interface RunningWorker {
  engine: DeliveryEngine;
  /** Notifications received since start, per channel. */
  wakeups: Record<string, number>;
  stop(): Promise<void>;
}

/**
 * The worker process: migrations, one LISTEN connection (reconnecting if Postgres goes
 * away), the delivery engine, the lease reaper and attempt retention.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { logger, config } = options;
  const db = createDb({ connectionString: options.databaseUrl, poolMax: 6, applicationName: 'hookpost-worker' });
  await migrateToLatest(db);

  const sender = new Sender({
    policy: createAddressPolicy(config.ssrfAllowlist),
    timeoutMs: config.delivery.timeoutMs,
    connectTimeoutMs: config.delivery.connectTimeoutMs,
    // Several webhooks can share a host: the per-endpoint cap lives in the engine, not in
    // the pool, or one slow webhook would take every connection to its origin.
    connectionsPerOrigin: config.delivery.concurrency,
  });
  const engine = new DeliveryEngine({
    db,
    sender,
    targets: new TargetLoader(db, createSecretBox(config.encryptionKey)),
    retry: retryPolicyFrom(config.retry),
    health: { failureThreshold: config.health.failureThreshold, pauseAfterSeconds: config.health.pauseAfterSeconds },
    logger,
    concurrency: config.delivery.concurrency,
    perEndpoint: config.delivery.perEndpointConcurrency,
    batchSize: config.delivery.batchSize,
    leaseMs: config.delivery.leaseMs,
    timeoutMs: config.delivery.timeoutMs,
  });

  const wakeups: Record<string, number> = Object.fromEntries(WAKE_CHANNELS.map((c) => [c, 0]));
  let stopped = false;
  let listener: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: options.databaseUrl, application_name: 'hookpost-worker-listen' });
    client.on('notification', (n) => {
      wakeups[n.channel] = (wakeups[n.channel] ?? 0) + 1;
      logger.trace({ channel: n.channel, payload: n.payload }, 'wake-up');
      if (n.channel === 'hookpost_deliveries') engine.wake();
    });
    client.on('error', (err) => {
      logger.warn({ err }, 'listen connection lost; reconnecting');
      scheduleReconnect();
    });
    await client.connect();
    for (const channel of WAKE_CHANNELS) await client.query(`listen ${channel}`);
    listener = client;
    engine.wake(); // anything that arrived while we were not listening
  };

  const scheduleReconnect = () => {
    if (stopped || reconnectTimer) return;
    listener?.end().catch(() => undefined);
    listener = undefined;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      connect().catch((err: unknown) => {
        logger.warn({ err }, 'reconnect failed');
        scheduleReconnect();
      });
    }, 1000);
  };

  await connect();
  engine.start();
  const stopReaper = startLeaseReaper(db, logger, Math.max(1000, Math.floor(config.delivery.leaseMs / 2)), () => engine.wake());
  const stopRetention = startRetention(db, logger, config.retention.attemptDays * 86_400_000, config.retention.intervalMs);
  logger.info({ channels: WAKE_CHANNELS, workerId: engine.workerId }, 'worker ready');

  return {
    engine,
    wakeups,
    async stop() {
      stopped = true;
      stopReaper();
      stopRetention();
      if (reconnectTimer) clearTimeout(reconnectTimer);
      await engine.stop();
      await listener?.end().catch(() => undefined);
      await sender.close();
      await db.destroy();
      logger.info({ stats: engine.stats }, 'worker stopped');
    },
  };
}
