import { resolveNatsBackendOptions } from './nats-backend-options';
import { NatsContext, untilAnswered } from './nats-context';
import { freshPrefix, TEST_REQUEST_TIMEOUT_MS, useNatsTestServer } from './testing/nats-test-backend';

jest.setTimeout(30 * TEST_REQUEST_TIMEOUT_MS);

const nats = useNatsTestServer();

describe('a KV bucket made on first use', () => {
  it('is opened, and answers from the first request, by every process creating it at once', async () => {
    // The server refuses all but one of simultaneous creations ("subjects overlap"; without the
    // retry a few hundred rounds hit it in nearly every run) and can hand out a fresh stream
    // before it listens on its subjects (no responders; rarer, seen on a loaded machine). None of
    // the rounds may fail.
    const prefix = freshPrefix();
    const options = resolveNatsBackendOptions({
      servers: nats().url,
      prefix,
      requestTimeoutMs: TEST_REQUEST_TIMEOUT_MS,
    });
    const processes = await Promise.all([NatsContext.open(options), NatsContext.open(options)]);
    const jsm = await nats().jsm();
    try {
      for (let round = 0; round < 300; round += 1) {
        const bucket = `${prefix}-race${round}`;
        const kvs = await Promise.all(processes.map((ctx) => ctx.lazyBucket(bucket, 60_000)()));
        const writes = await Promise.allSettled(
          kvs.map(async (kv) => {
            // A read first (direct get: its own subscription), as a compare-and-set would.
            await untilAnswered(() => kv.get('mark'));
            return untilAnswered(() => kv.create('mark', new Uint8Array([1])));
          }),
        );
        // Exactly one compare-and-set won; the other was refused by the stream, not unheard.
        expect(writes.filter((w) => w.status === 'fulfilled')).toHaveLength(1);
        expect(writes.find((w) => w.status === 'rejected')?.reason).toMatchObject({
          message: expect.stringMatching(/wrong last sequence/),
        });
        await jsm.streams.delete(`KV_${bucket}`);
      }
    } finally {
      await Promise.all(processes.map((ctx) => ctx.close()));
      await nats().destroy(prefix);
    }
  });
});

describe('the streams made at start', () => {
  it('are created or checked by every process starting at once on a fresh prefix', async () => {
    // The server refuses all but one of simultaneous creations of a stream, some with "stream name
    // already in use", some with "subjects overlap with an existing stream" (the winner's
    // subjects): both mean another process made it first. Rounds of five at once, fresh prefixes.
    for (let round = 0; round < 150; round += 1) {
      const prefix = freshPrefix();
      const options = resolveNatsBackendOptions({
        servers: nats().url,
        prefix,
        requestTimeoutMs: TEST_REQUEST_TIMEOUT_MS,
      });
      const opened = await Promise.allSettled([0, 1, 2, 3, 4].map(() => NatsContext.open(options)));
      await Promise.all(opened.map((o) => (o.status === 'fulfilled' ? o.value.close() : Promise.resolve())));
      await nats().destroy(prefix);
      expect(opened.map((o) => (o.status === 'fulfilled' ? 'opened' : String(o.reason)))).toEqual(
        Array(5).fill('opened'),
      );
    }
  });
});
