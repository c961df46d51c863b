import { createDb, createSecretBox, deliveries, migrateDatabase, QUEUE_SESSION_SETTINGS } from '@hookpost/db';
import { createAddressPolicy, maxAttempts, retryPolicyFrom, Sender, TargetLoader } from '@hookpost/delivery';
import type { Config, Logger } from '@hookpost/runtime';
import { createSourceAdapters } from '@hookpost/sources';
import { DeliveryEngine } from './delivery/engine.js';
import { emptyPollStats, type PollStats } from './polling/context.js';
import { Poller } from './polling/poller.js';
import { RunEvents } from './polling/run-events.js';
import { startLeaseReaper } from './maintenance/lease-reaper.js';
import { startRetention } from './maintenance/retention.js';
import { WakeListener } from './wake-listener.js';

/** Channels the API and ingest notify on; the worker sleeps until one fires. */
export const WAKE_CHANNELS = [deliveries.DELIVERIES_CHANNEL, 'hookpost_runs', deliveries.WEBHOOKS_STOPPED_CHANNEL, deliveries.WEBHOOKS_DELETED_CHANNEL] as const;

export interface WorkerOptions {
  config: Readonly<Config>;
  databaseUrl: string;
  logger: Logger;
}

export interface RunningWorker {
  engine: DeliveryEngine;
  poller: Poller;
  pollStats: PollStats;
  /** Notifications received since start, per channel. */
  wakeups: Record<string, number>;
  stop(): Promise<void>;
}

/**
 * The worker process: migrations, one LISTEN connection (reconnecting if Postgres goes
 * away), the delivery engine, the poller of virtual webhooks, the lease reaper and
 * retention.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { logger, config } = options;
  await migrateDatabase(options.databaseUrl, 'hookpost-worker-migrate');
  const db = createDb({
    connectionString: options.databaseUrl,
    poolMax: 8,
    applicationName: 'hookpost-worker',
    settings: QUEUE_SESSION_SETTINGS,
    answerTimeoutMs: config.databaseQueryTimeoutMs,
  });

  const policy = createAddressPolicy(config.ssrfAllowlist);
  const box = createSecretBox(config.encryptionKey);
  const sender = new Sender({
    policy,
    timeoutMs: config.delivery.timeoutMs,
    connectTimeoutMs: config.delivery.connectTimeoutMs,
    // Several webhooks can share a host: the per-endpoint cap lives in the engine, not in
    // the pool, or one slow webhook would take every connection to its origin.
    connectionsPerOrigin: config.delivery.concurrency,
  });
  const retry = retryPolicyFrom(config.retry);
  const engine = new DeliveryEngine({
    db,
    sender,
    targets: new TargetLoader(db, box),
    retry,
    health: { failureThreshold: config.health.failureThreshold, pauseAfterSeconds: config.health.pauseAfterSeconds },
    logger,
    concurrency: config.delivery.concurrency,
    perEndpoint: config.delivery.perEndpointConcurrency,
    claimExcludeMax: config.delivery.claimExcludeMax,
    batchSize: config.delivery.batchSize,
    leaseMs: config.delivery.leaseMs,
    timeoutMs: config.delivery.timeoutMs,
  });

  const adapters = createSourceAdapters({ policy, timeoutMs: config.polling.requestTimeoutMs, maxRetryAfterMs: config.retry.maxRetryAfterSeconds * 1000 });
  const pollStats = emptyPollStats();
  const stopPolling = new AbortController();
  // The poller has its own pool (it cannot starve deliveries of connections, nor they it),
  // committing asynchronously: what it writes without `synchronous_commit = on` is redone
  // after a Postgres crash (see packages/db/src/repositories/polling.ts).
  const pollDb = createDb({
    connectionString: options.databaseUrl,
    poolMax: 10,
    applicationName: 'hookpost-poller',
    synchronousCommit: false,
    answerTimeoutMs: config.databaseQueryTimeoutMs,
  });
  const poller = new Poller(
    {
      db: pollDb,
      logger: logger.child({ component: 'poller' }),
      workerId: engine.workerId,
      adapters,
      box,
      settings: { ...config.polling, minIntervalMinutes: config.minIntervalMinutes, pauseAfterSeconds: config.health.pauseAfterSeconds, deliveryFailureThreshold: config.health.failureThreshold },
      runEvents: new RunEvents(),
      stats: pollStats,
      signal: stopPolling.signal,
    },
    config.polling.concurrency,
  );

  // Before the listener: a delete's NOTIFY asks it for a purge.
  const retention = startRetention(
    db,
    logger,
    {
      attemptsMs: config.retention.attemptDays * 86_400_000,
      deliveriesMs: config.retention.deliveryDays * 86_400_000,
      idempotencyKeysMs: config.retention.idempotencyKeyHours * 3_600_000,
      pollRunsMs: config.retention.pollRunHours * 3_600_000,
    },
    config.retention.intervalMs,
  );

  const wakeups: Record<string, number> = Object.fromEntries(WAKE_CHANNELS.map((c) => [c, 0]));
  const listener = new WakeListener({
    databaseUrl: options.databaseUrl,
    channels: WAKE_CHANNELS,
    logger,
    heartbeatMs: config.delivery.listenHeartbeatMs,
    onNotification: (channel, payload) => {
      wakeups[channel] = (wakeups[channel] ?? 0) + 1;
      logger.trace({ channel, payload }, 'wake-up');
      if (channel === deliveries.DELIVERIES_CHANNEL) engine.wake();
      else if (channel === 'hookpost_runs') poller.wake();
      else if (channel === deliveries.WEBHOOKS_STOPPED_CHANNEL) engine.webhooksStopped((payload ?? '').split(',').filter(Boolean));
      else if (channel === deliveries.WEBHOOKS_DELETED_CHANNEL) retention.purgeDeleted();
    },
    // Anything that arrived, or changed, while we were not listening.
    onListening: () => {
      engine.listenGap();
      engine.wake();
      poller.wake();
    },
  });

  await listener.start();
  engine.start();
  poller.start();
  const stopReaper = startLeaseReaper(db, logger, Math.max(1000, Math.floor(config.delivery.leaseMs / 2)), maxAttempts(retry), () => engine.wake());
  logger.info({ channels: WAKE_CHANNELS, workerId: engine.workerId }, 'worker ready');

  return {
    engine,
    poller,
    pollStats,
    wakeups,
    async stop() {
      stopReaper();
      retention.stop();
      stopPolling.abort();
      // Both at once: the engine stops claiming now, not after the poller's runs end.
      // Every send ends within DELIVERY_TIMEOUT_MS: wait for that, so each is recorded before
      // the pools close (the process's own grace, in main.ts, is 5 s longer).
      await Promise.all([poller.stop(), engine.stop(config.delivery.timeoutMs + 1_000)]);
      await listener.stop();
      await sender.close();
      await Promise.all([...adapters.values()].map((a) => a.close()));
      await pollDb.destroy();
      await db.destroy();
      logger.info({ stats: engine.stats, polling: pollStats }, 'worker stopped');
    },
  };
}
