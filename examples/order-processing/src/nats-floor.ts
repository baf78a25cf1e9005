/**
 * The NATS floor for `pnpm bench --backend nats`: the order saga's steps done by hand on
 * JetStream, no framework. Per step: publish the command to a stream (await its PubAck), a durable
 * pull consumer takes it (the "worker"), publishes the result to the results stream (await its
 * PubAck) and acks the command; a second durable pull consumer (the "orchestrator") takes the
 * result, acks it, writes the state once (KV put) and publishes the next command — what any
 * durable saga on JetStream must do at least. Compensations too, newest first, as in redis-floor.
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
import { connect } from '@nats-io/transport-node';
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

const STEPS = ['reserve', 'charge', 'ship'] as const;
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
  const orchestratorKv = await new Kvm(orchestratorJs).open(id);

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
  const send = async (tx: string, state: State, kvClient = kv, js = producerJs): Promise<void> => {
    const step = state.undo ? `${STEPS[state.step]}:undo` : (STEPS[state.step] as string);
    await Promise.all([
      kvClient.put(tx, encode(state)),
      js.publish(commandsSubject, encode({ tx, step, input: state.order } satisfies Command)),
    ]);
  };
  const startNext = async (kvClient = kv, js = producerJs): Promise<void> => {
    if (next >= orders.length) return;
    const i = next++;
    const state: State = { step: 0, undo: false, order: orders.at(i) as OrderInput };
    states.set(`t${i}`, state);
    await send(`t${i}`, state, kvClient, js);
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
    await workerJs.publish(resultsSubject, encode({ tx: command.tx, ok } satisfies Result));
    msg.ack();
  });

  // The orchestrator: take a result, ack it, write the state, publish the next command.
  const stopOrchestrator = await pull(await orchestratorJs.consumers.get(resultsStream, 'c'), async (msg) => {
    const result = decode<Result>(msg);
    const state = states.get(result.tx) as State;
    msg.ack();
    if (!state.undo && result.ok && state.step < 2) state.step++;
    else if (!state.undo && !result.ok) {
      state.undo = true;
      state.step--;
    } else if (state.undo && state.step > 0) state.step--;
    else {
      await orchestratorKv.put(result.tx, encode({ ...state, done: true }));
      finished++;
      if (finished === orders.length) done();
      else await startNext(orchestratorKv, orchestratorJs);
      return;
    }
    await send(result.tx, state, orchestratorKv, orchestratorJs);
  });

  const started = performance.now();
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, orders.length) }, () => startNext()));
    await allDone;
    return performance.now() - started;
  } finally {
    stopWorker();
    stopOrchestrator();
    await kv.destroy();
    await jsm.streams.delete(commandsStream);
    await jsm.streams.delete(resultsStream);
    await Promise.all([producerConnection, workerConnection, orchestratorConnection].map((c) => c.drain()));
  }
}
