import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Liveness and readiness over HTTP: `/healthz` answers while the process runs, `/readyz` while it serves. */
export class HealthServer {
  private server: Server | undefined;
  private ready = false;

  setReady(ready: boolean): void {
    this.ready = ready;
  }

  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    this.server = createServer((req, res) => {
      const ok = req.url === '/healthz' || (req.url === '/readyz' && this.ready);
      const known = req.url === '/healthz' || req.url === '/readyz';
      res.writeHead(known ? (ok ? 200 : 503) : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: known ? (ok ? 'ok' : 'not ready') : 'not found' }));
    });
    const server = this.server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, resolve);
    });
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
