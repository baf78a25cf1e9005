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
});
