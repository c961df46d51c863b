import type { Server } from 'node:http';
import type { Readable } from 'node:stream';
import type { AddressInfo } from 'node:net';

/** Small helpers for the plain node:http servers (mock receiver, mock provider). */

/** Starts `server` on host:port (port 0: any free port) and returns its base URL. */
export async function listenHttp(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
}

/**
 * Reads a body (request or response) of at most `max` bytes; null (and the stream dropped)
 * when larger. Rejects when the stream fails or closes before its end (an aborted upload).
 */
export function readBodyCapped(req: Readable, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        resolve(null);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('close', () => reject(new Error('the body ended early: its stream closed'))); // no-op once settled
  });
}
