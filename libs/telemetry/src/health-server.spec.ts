import { HealthServer } from './health-server';

describe('HealthServer', () => {
  it('answers liveness always and readiness only while ready, over real HTTP', async () => {
    const health = new HealthServer();
    const port = await health.listen(0, '127.0.0.1');
    try {
      const get = async (path: string): Promise<number> =>
        (await fetch(`http://127.0.0.1:${port}${path}`)).status;
      expect(await get('/healthz')).toBe(200);
      expect(await get('/readyz')).toBe(503);
      health.setReady(true);
      expect(await get('/readyz')).toBe(200);
      expect(await get('/nope')).toBe(404);
      health.setStats(() => ({ ignoredResults: 3 }));
      expect(await (await fetch(`http://127.0.0.1:${port}/stats`)).json()).toEqual({ ignoredResults: 3 });
    } finally {
      await health.close();
    }
  });

  it('is not ready while its broker is unreachable, and ready again once it is back', async () => {
    const health = new HealthServer();
    let connected = true;
    health.setBrokerCheck(() => connected);
    const port = await health.listen(0, '127.0.0.1');
    try {
      const readyz = async (): Promise<[number, unknown]> => {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`);
        return [res.status, await res.json()];
      };
      health.setReady(true);
      expect(await readyz()).toEqual([200, { status: 'ok' }]);
      connected = false;
      expect(await readyz()).toEqual([503, { status: 'broker unreachable' }]);
      connected = true;
      expect(await readyz()).toEqual([200, { status: 'ok' }]);
      // A draining service stays not ready whatever its broker.
      health.setReady(false);
      expect(await readyz()).toEqual([503, { status: 'not ready' }]);
    } finally {
      await health.close();
    }
  });

  it('serves added routes (query strings ignored) and answers 500 when one fails', async () => {
    const health = new HealthServer();
    health.setRoute('/metrics', async (req) => ({
      status: 200,
      contentType: 'text/plain; version=0.0.4',
      body: `accept=${req.headers.accept ?? ''}\n`,
    }));
    health.setRoute('/broken', () => Promise.reject(new Error('store down')));
    const port = await health.listen(0, '127.0.0.1');
    try {
      const res = await fetch(`http://127.0.0.1:${port}/metrics?x=1`, { headers: { accept: 'text/plain' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4');
      expect(await res.text()).toBe('accept=text/plain\n');
      const broken = await fetch(`http://127.0.0.1:${port}/broken`);
      expect([broken.status, await broken.text()]).toEqual([500, 'store down\n']);
    } finally {
      await health.close();
    }
  });

  it('hands other paths to the fallback, keeps the probes, and closes with a stream still open', async () => {
    const health = new HealthServer();
    health.setReady(true);
    health.setFallback((req, res) => {
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': open\n\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`fallback ${req.method ?? ''} ${req.url ?? ''}`);
    });
    const port = await health.listen(0, '127.0.0.1');
    const res = await fetch(`http://127.0.0.1:${port}/runs/x?y=1`);
    expect(await res.text()).toBe('fallback GET /runs/x?y=1');
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    const stream = await fetch(`http://127.0.0.1:${port}/stream`);
    expect(stream.status).toBe(200);
    // close() ends open streams instead of waiting for them forever.
    await health.close();
    await stream.body?.cancel().catch(() => undefined);
  });
});
