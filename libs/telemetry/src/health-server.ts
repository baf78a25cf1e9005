import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Counters a service exposes at `/stats` (JSON). */
export type StatsSource = () => Record<string, number>;

/** What a route added with {@link HealthServer.setRoute} answers. */
export interface HttpReply {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

/** Answers one GET of a route; a rejection answers 500. */
export type RouteHandler = (request: IncomingMessage) => Promise<HttpReply>;

/**
 * Answers any request no route or probe matched (the event-monitor's dashboard: pages, posts and
 * event streams). It owns the response: it must end it, or keep it open for a stream.
 */
export type FallbackHandler = (request: IncomingMessage, response: ServerResponse) => void;

/**
 * Liveness, readiness and counters over HTTP: `/healthz` answers while the process runs, `/readyz`
 * while it serves (not while it starts or drains), `/stats` the service's counters, and any
 * route a service adds (the metrics-collector's `/metrics`).
 */
export class HealthServer {
  private server: Server | undefined;
  private ready = false;
  private brokerConnected: () => boolean = () => true;
  private stats: StatsSource = () => ({});
  private readonly routes = new Map<string, RouteHandler>();
  private fallback: FallbackHandler | undefined;

  /** Marks the service as serving (true) or starting/draining (false). */
  setReady(ready: boolean): void {
    this.ready = ready;
  }

  /**
   * Adds a check of the broker to readiness: `/readyz` answers 503 (`broker unreachable`) while
   * it says false, even when the service is serving, so a replica that lost its broker is taken
   * out of rotation until it is back.
   */
  setBrokerCheck(connected: () => boolean): void {
    this.brokerConnected = connected;
  }

  /** Sets where `/stats` reads its counters. */
  setStats(source: StatsSource): void {
    this.stats = source;
  }

  /** Serves `path` (e.g. `/metrics`) with `handler`, on the same port as the probes. */
  setRoute(path: string, handler: RouteHandler): void {
    this.routes.set(path, handler);
  }

  /** Hands every request that is not a route or a probe to `handler` (instead of a 404). */
  setFallback(handler: FallbackHandler): void {
    this.fallback = handler;
  }

  /**
   * Listens on `port` (0: any free port) of `host` and returns the port. The default host is the
   * loopback interface: nothing here asks for credentials, so reaching it from other machines is
   * the operator's choice (HTTP_HOST).
   */
  private readiness(): [number, unknown] {
    if (!this.ready) return [503, { status: 'not ready' }];
    return this.brokerConnected() ? [200, { status: 'ok' }] : [503, { status: 'broker unreachable' }];
  }

  async listen(port: number, host = '127.0.0.1'): Promise<number> {
    const server = createServer((req, res) => {
      const route = this.routes.get((req.url ?? '').split('?')[0] ?? '');
      if (route !== undefined) {
        route(req).then(
          (reply) => {
            res.writeHead(reply.status, { 'content-type': reply.contentType });
            res.end(reply.body);
          },
          (err: unknown) => {
            res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
            res.end(`${err instanceof Error ? err.message : String(err)}\n`);
          },
        );
        return;
      }
      const path = (req.url ?? '').split('?')[0] ?? '';
      if (this.fallback !== undefined && !['/healthz', '/readyz', '/stats'].includes(path)) {
        this.fallback(req, res);
        return;
      }
      let status = 404;
      let body: unknown = { status: 'not found' };
      if (req.url === '/healthz') [status, body] = [200, { status: 'ok' }];
      else if (req.url === '/readyz') [status, body] = this.readiness();
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
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // A fallback's open event streams (the dashboard's) would otherwise hold close() forever;
    // without one, requests in flight finish as before.
    if (this.fallback !== undefined) server.closeAllConnections();
    await closed;
  }
}
