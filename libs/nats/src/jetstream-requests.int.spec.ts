import { JetStreamApiError, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import {
  DirectGetError,
  JetStreamRequests,
  NoRespondersError,
  RequestTimeoutError,
} from './jetstream-requests';
import { freshPrefix, TEST_REQUEST_TIMEOUT_MS, useNatsTestServer } from './testing/nats-test-backend';
import { TurnWrites } from './turn-writes';

jest.setTimeout(6 * TEST_REQUEST_TIMEOUT_MS);

const nats = useNatsTestServer();

describe('JetStreamRequests', () => {
  let connection: NatsConnection;
  let requests: JetStreamRequests;
  let stream: string;

  beforeEach(async () => {
    connection = await connect({ servers: nats().url, noAsyncTraces: true });
    requests = new JetStreamRequests(connection, TEST_REQUEST_TIMEOUT_MS, new TurnWrites());
    stream = freshPrefix('req');
    const jsm = await jetstreamManager(connection);
    await jsm.streams.add({
      name: stream,
      subjects: [`${stream}.>`],
      allow_direct: true,
      max_msgs_per_subject: 1,
    });
  });

  afterEach(async () => {
    requests.close();
    await (await jetstreamManager(connection)).streams.delete(stream).catch(() => undefined);
    await connection.close();
  });

  it('publishes with the stored sequence, and a repeated message id is a duplicate', async () => {
    const h = headers();
    h.set('Nats-Msg-Id', 'm-1');
    const first = await requests.publish(`${stream}.a`, new TextEncoder().encode('one'), h);
    const again = await requests.publish(`${stream}.a`, new TextEncoder().encode('one'), h);
    expect(first).toEqual({ stream, seq: 1, duplicate: false });
    expect(again).toEqual({ stream, seq: 1, duplicate: true });
  });

  it("stores one turn's publishes in the order they were made, and never sends one failed before its turn ended", async () => {
    const sent = jest.spyOn(connection, 'publish');
    const published = Array.from({ length: 50 }, (_, i) =>
      requests.publish(`${stream}.n${i}`, new TextEncoder().encode(String(i))),
    );
    // Nothing is written until the turn ends; then all fifty at once.
    expect(sent).not.toHaveBeenCalled();
    const acks = await Promise.all(published);
    expect(acks.map((ack) => ack.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(sent).toHaveBeenCalledTimes(50);

    const dropped = requests.publish(`${stream}.dropped`, new Uint8Array([1]));
    requests.failAll('disconnected from NATS');
    await expect(dropped).rejects.toThrow(/disconnected from NATS/);
    const after = await requests.publish(`${stream}.after`, new Uint8Array([2]));
    // The failed one was never written: the next publish took the next sequence.
    expect(after.seq).toBe(51);
    expect(sent).toHaveBeenCalledTimes(51);
    sent.mockRestore();
  });

  it('refuses a publish the stream rejects with its API error', async () => {
    const h = headers();
    h.set('Nats-Expected-Last-Subject-Sequence', '42');
    await expect(requests.publish(`${stream}.a`, new Uint8Array([1]), h)).rejects.toBeInstanceOf(
      JetStreamApiError,
    );
  });

  it('reads the last message of a subject, and the next by subject from a sequence', async () => {
    const before = Date.now();
    await requests.publish(`${stream}.a`, new TextEncoder().encode('a1'));
    await requests.publish(`${stream}.b`, new TextEncoder().encode('b1'));
    await requests.publish(`${stream}.a`, new TextEncoder().encode('a2'));

    const last = await requests.directGet(stream, { last_by_subj: `${stream}.a` });
    expect(last).toMatchObject({ seq: 3 });
    expect(new TextDecoder().decode(last?.data)).toBe('a2');
    // The server's clock and ours are the same machine's, to the millisecond rounding.
    expect(last?.storedAt).toBeGreaterThanOrEqual(before - 1);
    expect(last?.headers.last('Nats-Subject')).toBe(`${stream}.a`);

    const next = await requests.directGet(stream, { seq: 0, next_by_subj: `${stream}.b` });
    expect(next?.seq).toBe(2);
    expect(await requests.directGet(stream, { seq: 3, next_by_subj: `${stream}.b` })).toBeNull();
    expect(await requests.directGet(stream, { last_by_subj: `${stream}.none` })).toBeNull();
  });

  it('fails a direct get the server refuses, with its status', async () => {
    // Neither a sequence nor a subject: the server answers 408 (bad request).
    const refused = requests.directGet(stream, { seq: 0, next_by_subj: '' });
    await expect(refused).rejects.toBeInstanceOf(DirectGetError);
    await expect(refused).rejects.toMatchObject({ status: 408 });
  });

  it('fails a publish at once when no stream takes its subject', async () => {
    await expect(requests.publish(`nobody-${stream}.a`, new Uint8Array([1]))).rejects.toBeInstanceOf(
      NoRespondersError,
    );
  });

  it('fails what is still unanswered when told the connection dropped, and after close', async () => {
    // A plain subscriber that never answers stands in for a server that went away mid-request.
    const silent = connection.subscribe(`silent-${stream}`);
    const waiting = requests.publish(`silent-${stream}`, new Uint8Array([1]));
    await connection.flush();
    requests.failAll('disconnected from NATS');
    await expect(waiting).rejects.toBeInstanceOf(RequestTimeoutError);
    await expect(waiting).rejects.toThrow(/disconnected from NATS/);
    const other = new JetStreamRequests(connection, TEST_REQUEST_TIMEOUT_MS, new TurnWrites());
    const atClose = other.publish(`silent-${stream}`, new Uint8Array([1]));
    other.close();
    await expect(atClose).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });

  it('expires a request with no answer after its timeout: a direct get from a missing stream', async () => {
    // The server's JetStream API takes the subject and does not answer it (no 503 either).
    const short = new JetStreamRequests(connection, 50, new TurnWrites());
    try {
      await expect(short.directGet(`${stream}-missing`, { last_by_subj: 'x' })).rejects.toThrow(
        /no answer within 50 ms/,
      );
      await expect(short.directGet(`${stream}-missing`, { last_by_subj: 'x' })).rejects.toBeInstanceOf(
        RequestTimeoutError,
      );
    } finally {
      short.close();
    }
  });
});
