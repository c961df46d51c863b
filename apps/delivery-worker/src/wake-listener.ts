import { FailureStreak, type Logger } from '@hookpost/runtime';
import { TCP_KEEP_ALIVE } from '@hookpost/db';
import pg from 'pg';

export interface WakeListenerOptions {
  databaseUrl: string;
  channels: readonly string[];
  logger: Logger;
  /** A notification on one of `channels`. */
  onNotification: (channel: string, payload: string | undefined) => void;
  /** Listening (again): anything notified while nobody listened must be looked for. */
  onListening: () => void;
  /**
   * How often the idle connection is asked `select 1`; no answer within the same time
   * and it is replaced. A connection dropped silently (a NAT or load balancer forgetting
   * an idle flow, a host gone without a FIN) raises no error: without this, the worker
   * would learn of new work only from its idle re-check, up to 30 s late.
   */
  heartbeatMs: number;
  /** Wait before connecting again after a loss or a failed attempt. */
  reconnectDelayMs?: number;
}

/**
 * The worker's one LISTEN connection: reconnects after an error, an end or an unanswered
 * heartbeat, and ignores whatever a connection it has given up on still says.
 */
export class WakeListener {
  private client: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private beating = false;
  private stopped = false;

  private readonly reconnectFailures: FailureStreak;

  constructor(private readonly o: WakeListenerOptions) {
    this.reconnectFailures = new FailureStreak(o.logger, { failing: 'reconnect failed', recovered: 'listen connection back', level: 'warn' });
  }

  /** Connects and listens; rejects if the first attempt fails. */
  async start(): Promise<void> {
    await this.connect();
    this.heartbeat = setInterval(() => void this.beat(), this.o.heartbeatMs);
    this.heartbeat.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.o.databaseUrl, application_name: 'hookpost-worker-listen', ...TCP_KEEP_ALIVE });
    const current = () => this.client === client;
    client.on('notification', (n) => {
      if (current()) this.o.onNotification(n.channel, n.payload);
    });
    client.on('error', (err) => {
      if (current()) this.lost('listen connection lost; reconnecting', err);
    });
    client.on('end', () => {
      if (current()) this.lost('listen connection ended; reconnecting');
    });
    try {
      await client.connect();
      for (const channel of this.o.channels) await client.query(`listen ${channel}`);
    } catch (err) {
      client.end().catch(() => undefined);
      throw err;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.o.onListening();
  }

  /** Asks the connection for a sign of life; no answer in time counts as lost. */
  private async beat(): Promise<void> {
    const client = this.client;
    if (!client || this.beating) return;
    this.beating = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      const silent = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer to a heartbeat within ${this.o.heartbeatMs} ms`)), this.o.heartbeatMs);
      });
      await Promise.race([client.query('select 1'), silent]);
    } catch (err) {
      if (this.client === client) this.lost('listen connection unresponsive; reconnecting', err);
    } finally {
      clearTimeout(timer);
      this.beating = false;
    }
  }

  private lost(message: string, err?: unknown): void {
    const client = this.client;
    this.client = undefined;
    // Not awaited: on a connection that went silent the goodbye may never be answered.
    client?.end().catch(() => undefined);
    if (this.stopped) return;
    this.o.logger.warn({ err }, message);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().then(
        () => this.reconnectFailures.succeeded(),
        (err: unknown) => {
          this.reconnectFailures.failed(err);
          this.scheduleReconnect();
        },
      );
    }, this.o.reconnectDelayMs ?? 1000);
  }
}
