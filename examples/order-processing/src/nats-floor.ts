/**
 * The NATS floor for `pnpm bench --backend nats`: the order saga's steps done by hand on
 * JetStream, no framework. Per step: publish the command to a stream (await its PubAck), a durable
 * pull consumer takes it (the "worker"), publishes the result to the results stream (await its
 * PubAck) and acks the command; a second durable pull consumer (the "orchestrator") takes the
 * result, acks it, writes the state once (KV put) and publishes the next command — what any
 * durable saga on JetStream must do at least. Compensations too, newest first, as in redis-floor.
 *
 * Written to be fast, as issue 8 asks of a floor: the stored publishes (commands, results, the KV
 * puts) go as plain PUBs with a reply subject on one wildcard inbox per connection, their PubAcks
 * matched by number ({@link leanPublisher}), instead of through the client's per-request
 * machinery (a timer, a mux entry and two error objects per request), as the framework's own
 * NATS backend does; and, as it does, every publish and ack of one event-loop turn is written
 * together on the next `setImmediate` ({@link TurnWrites}), so a turn's messages leave in one
 * socket write instead of about one each.
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type JsMsg,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { TurnWrites } from '@multiagents/nats';
import { connect, createInbox, type NatsConnection } from '@nats-io/transport-node';
import type { OrderInput, OrderList } from './order-workers';

interface State {
  step: number;
  undo: boolean;
  order: OrderInput;
}

interface Command {
  tx: string;
  step: string;
  input: OrderInput;
}

interface Result {
  tx: string;
  ok: boolean;
}

type Publish = (subject: string, data: Uint8Array) => Promise<void>;

/** A connection and the writes it makes at the end of the turn. */
interface Writer {
  connection: NatsConnection;
  writes: TurnWrites;
}

const STEPS = ['reserve', 'charge', 'ship'] as const;
/** A stored publish unanswered this long fails (the floor must end by itself). */
const PUBLISH_TIMEOUT_MS = 30_000;

/**
 * Publishes to a stream (or a KV bucket's subject) and resolves on its PubAck: a plain PUB whose
 * reply subject is `<inbox>.<n>` on one wildcard subscription, the answer matched by `n`. Refused
 * (a PubAck with an error, a 503 with no stream to take it) or unanswered in time: rejected.
 * The PUB itself is made at the end of the turn, with the turn's other writes.
 */
function leanPublisher({ connection: nc, writes }: Writer): Publish {
  const prefix = `${createInbox()}.`;
  const pending = new Map<number, { resolve: () => void; reject: (err: Error) => void; at: number }>();
  let last = 0;
  nc.subscribe(`${prefix}*`, {
    callback: (_err, msg) => {
      const id = Number(msg.subject.slice(prefix.length));
      const waiter = pending.get(id);
      if (waiter === undefined) return;
      pending.delete(id);
      if (msg.data.length === 0) {
        waiter.reject(new Error(`no stream took the publish (status ${msg.headers?.code ?? '?'})`));
        return;
      }
      const ack = JSON.parse(Buffer.from(msg.data).toString('utf8')) as { error?: { description?: string } };
      if (ack.error) waiter.reject(new Error(`publish refused: ${ack.error.description ?? 'unknown'}`));
      else waiter.resolve();
    },
  });
  const expiry = setInterval(() => {
    const oldest = Date.now() - PUBLISH_TIMEOUT_MS;
    for (const [id, waiter] of pending) {
      if (waiter.at > oldest) break;
      pending.delete(id);
      waiter.reject(new Error(`no PubAck within ${PUBLISH_TIMEOUT_MS} ms`));
    }
  }, 1_000);
  expiry.unref();
  void nc.closed().then(() => {
    clearInterval(expiry);
    for (const waiter of pending.values()) waiter.reject(new Error('connection closed'));
    pending.clear();
  });
  return (subject, data) =>
    new Promise<void>((resolve, reject) => {
      last += 1;
      const reply = `${prefix}${last}`;
      pending.set(last, { resolve, reject, at: Date.now() });
      writes.add(() => nc.publish(subject, data, { reply }));
    });
}
/** Most unacknowledged messages one pull consumer holds (the Redis floor reads 200 at a time). */
const BATCH = 256;

/** Runs every order through the hand-written saga with `concurrency` in flight; returns wall ms. */
export async function measureNatsFloor(url: string, orders: OrderList, concurrency: number): Promise<number> {
  const id = `floor_${Date.now()}`;
  const commandsStream = `${id}_commands`;
  const resultsStream = `${id}_results`;
  const commandsSubject = `${id}.commands`;
  const resultsSubject = `${id}.results`;
  // One connection per role, as the Redis floor uses one per role.
  const [producerConnection, workerConnection, orchestratorConnection] = await Promise.all([
    connect({ servers: url }),
    connect({ servers: url }),
    connect({ servers: url }),
  ]);
  const jsm = await jetstreamManager(producerConnection);
  for (const [name, subject] of [
    [commandsStream, commandsSubject],
    [resultsStream, resultsSubject],
  ] as const) {
    // The bus's choices: file storage, limits retention, one replica on a single server.
    await jsm.streams.add({
      name,
      subjects: [subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.New,
      num_replicas: 1,
    });
    await jsm.consumers.add(name, {
      durable_name: 'c',
      filter_subject: subject,
      ack_policy: AckPolicy.Explicit,
      ack_wait: 30_000_000_000,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
      max_ack_pending: -1,
    });
  }
  const producerJs = jetstream(producerConnection);
  const workerJs = jetstream(workerConnection);
  const orchestratorJs = jetstream(orchestratorConnection);
  const kv = await new Kvm(producerJs).create(id, { history: 1, replicas: 1 });
  const writers = [producerConnection, workerConnection, orchestratorConnection].map(
    (connection): Writer => ({ connection, writes: new TurnWrites() }),
  ) as [Writer, Writer, Writer];
  const [producer, worker, orchestrator] = writers.map(leanPublisher) as [Publish, Publish, Publish];
  const [, { writes: workerWrites }, { writes: orchestratorWrites }] = writers;
  /** A KV put is a stored publish on the bucket's subject for the key. */
  const put = (publish: Publish, key: string, value: Uint8Array): Promise<void> =>
    publish(`$KV.${id}.${key}`, value);

  const states = new Map<string, State>();
  let next = 0;
  let finished = 0;
  let done!: () => void;
  let fail!: (err: unknown) => void;
  const allDone = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));
  const decode = <T>(msg: JsMsg): T => JSON.parse(Buffer.from(msg.data).toString('utf8')) as T;

  /** The state write and the command, sent together: a KV put and a publish, both awaited to their acks. */
  const send = async (tx: string, state: State, publish: Publish): Promise<void> => {
    const step = state.undo ? `${STEPS[state.step]}:undo` : (STEPS[state.step] as string);
    await Promise.all([
      put(publish, tx, encode(state)),
      publish(commandsSubject, encode({ tx, step, input: state.order } satisfies Command)),
    ]);
  };
  const startNext = async (publish: Publish): Promise<void> => {
    if (next >= orders.length) return;
    const i = next++;
    const state: State = { step: 0, undo: false, order: orders.at(i) as OrderInput };
    states.set(`t${i}`, state);
    await send(`t${i}`, state, publish);
  };

  /** Pulls from a durable consumer and handles each message as it arrives, concurrently. */
  const pull = async (consumer: Consumer, handle: (msg: JsMsg) => Promise<void>): Promise<() => void> => {
    const messages = await consumer.consume({ max_messages: BATCH });
    const loop = (async () => {
      for await (const msg of messages) handle(msg).catch(fail);
    })();
    loop.catch(fail);
    return () => messages.stop();
  };

  // The worker: take a command, "run" it, publish the result (PubAck awaited), ack the command.
  const stopWorker = await pull(await workerJs.consumers.get(commandsStream, 'c'), async (msg) => {
    const command = decode<Command>(msg);
    const ok = !(command.step === 'ship' && command.input.failShipping);
    await worker(resultsSubject, encode({ tx: command.tx, ok } satisfies Result));
    workerWrites.add(() => msg.ack());
  });

  // The orchestrator: take a result, ack it, write the state, publish the next command.
  const stopOrchestrator = await pull(await orchestratorJs.consumers.get(resultsStream, 'c'), async (msg) => {
    const result = decode<Result>(msg);
    const state = states.get(result.tx) as State;
    orchestratorWrites.add(() => msg.ack());
    if (!state.undo && result.ok && state.step < 2) state.step++;
    else if (!state.undo && !result.ok) {
      state.undo = true;
      state.step--;
    } else if (state.undo && state.step > 0) state.step--;
    else {
      await put(orchestrator, result.tx, encode({ ...state, done: true }));
      finished++;
      if (finished === orders.length) done();
      else await startNext(orchestrator);
      return;
    }
    await send(result.tx, state, orchestrator);
  });

  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: Math.min(concurrency, orders.length) }, () => startNext(producer)),
    );
    await allDone;
    return performance.now() - started;
  } finally {
    stopWorker();
    stopOrchestrator();
    for (const { writes } of writers) writes.flush();
    await kv.destroy();
    await jsm.streams.delete(commandsStream);
    await jsm.streams.delete(resultsStream);
    await Promise.all([producerConnection, workerConnection, orchestratorConnection].map((c) => c.drain()));
  }
}
