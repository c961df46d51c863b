import { createDb, migrateToLatest } from '@hookpost/db';
import type { Logger } from '@hookpost/runtime';
import pg from 'pg';

/** Channels the API and ingest notify on; the worker sleeps until one fires. */
export const WAKE_CHANNELS = ['hookpost_deliveries', 'hookpost_runs'] as const;

export interface WorkerOptions {
  databaseUrl: string;
  logger: Logger;
}

export interface RunningWorker {
  /** Notifications received since start, per channel. */
  wakeups: Record<string, number>;
  stop(): Promise<void>;
}

/**
 * The worker's outer loop: holds one LISTEN connection and idles on it (no polling),
 * reconnecting if Postgres goes away. Delivery and polling attach to the wake-ups.
 */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { logger } = options;
  const db = createDb({ connectionString: options.databaseUrl, poolMax: 4, applicationName: 'hookpost-worker' });
  await migrateToLatest(db);

  const wakeups: Record<string, number> = Object.fromEntries(WAKE_CHANNELS.map((c) => [c, 0]));
  let stopped = false;
  let listener: pg.Client | undefined;
  let reconnectTimer: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const client = new pg.Client({ connectionString: options.databaseUrl, application_name: 'hookpost-worker-listen' });
    client.on('notification', (n) => {
      wakeups[n.channel] = (wakeups[n.channel] ?? 0) + 1;
      logger.debug({ channel: n.channel, payload: n.payload }, 'wake-up');
    });
    client.on('error', (err) => {
      logger.warn({ err }, 'listen connection lost; reconnecting');
      scheduleReconnect();
    });
    await client.connect();
    for (const channel of WAKE_CHANNELS) await client.query(`listen ${channel}`);
    listener = client;
    logger.info({ channels: WAKE_CHANNELS }, 'worker ready');
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

  return {
    wakeups,
    async stop() {
      stopped = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      await listener?.end().catch(() => undefined);
      await db.destroy();
    },
  };
}
