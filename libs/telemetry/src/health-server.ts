import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Counters a service exposes at `/stats` (JSON). */
export type StatsSource = () => Record<string, number>;

/**
 * Liveness, readiness and counters over HTTP: `/healthz` answers while the process runs, `/readyz`
 * while it serves (not while it starts or drains), `/stats` the service's counters.
 */
export class HealthServer {
  private server: Server | undefined;
  private ready = false;
  private stats: StatsSource = () => ({});

  /** Marks the service as serving (true) or starting/draining (false). */
  setReady(ready: boolean): void {
    this.ready = ready;
  }

  /** Sets where `/stats` reads its counters. */
  setStats(source: StatsSource): void {
    this.stats = source;
  }

  /** Listens on `port` (0: any free port) and returns the port. */
  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    const server = createServer((req, res) => {
      let status = 404;
      let body: unknown = { status: 'not found' };
      if (req.url === '/healthz') [status, body] = [200, { status: 'ok' }];
      else if (req.url === '/readyz')
        [status, body] = this.ready ? [200, { status: 'ok' }] : [503, { status: 'not ready' }];
      else if (req.url === '/stats') [status, body] = [200, this.stats()];
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    return (server.address() as AddressInfo).port;
  }

  /** Stops listening. */
  async close(): Promise<void> {
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
