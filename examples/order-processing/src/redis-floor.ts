/**
 * The Redis floor for `pnpm bench --backend redis`: the order saga's steps done by hand on Redis
 * Streams, no framework, written the way a careful engineer would (reads batched with COUNT,
 * every batch's acks, state writes and publishes pipelined in one round trip). Per step: XADD the
 * command, XREADGROUP it, XADD the result, XACK it, XREADGROUP the result, XACK, and one state
 * write (SET) — what any durable saga on Streams must do at least. Compensations too.
 */
import Redis from 'ioredis';
import type { OrderInput, OrderList } from './order-workers';

interface State {
  step: number;
  undo: boolean;
  order: OrderInput;
}

const STEPS = ['reserve', 'charge', 'ship'] as const;
/** Entries one XREADGROUP takes at most. */
const COUNT = 200;

type Entries = [string, [string, string[]][]][] | null;

function fields(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < list.length; i += 2) out[list[i] as string] = list[i + 1] as string;
  return out;
}

/** Runs every order through the hand-written saga with `concurrency` in flight; returns wall ms. */
export async function measureRedisFloor(
  url: string,
  orders: OrderList,
  concurrency: number,
): Promise<number> {
  const prefix = `floor:${Date.now()}`;
  const producer = new Redis(url);
  const workerConn = new Redis(url);
  const orchestratorConn = new Redis(url);
  const commands = `${prefix}:commands`;
  const results = `${prefix}:results`;
  await producer.xgroup('CREATE', commands, 'w', '$', 'MKSTREAM');
  await producer.xgroup('CREATE', results, 'o', '$', 'MKSTREAM');
  const states = new Map<string, State>();
  let next = 0;
  let finished = 0;
  let done!: () => void;
  const allDone = new Promise<void>((resolve) => (done = resolve));
  let running = true;

  const send = (pipeline: ReturnType<Redis['pipeline']>, tx: string, state: State): void => {
    const name = state.undo ? `${STEPS[state.step]}:undo` : STEPS[state.step];
    pipeline.set(`${prefix}:state:${tx}`, JSON.stringify(state));
    pipeline.xadd(commands, '*', 'tx', tx, 'step', name ?? '', 'input', JSON.stringify(state.order));
  };
  const startNext = (pipeline: ReturnType<Redis['pipeline']>): void => {
    if (next >= orders.length) return;
    const i = next++;
    const state: State = { step: 0, undo: false, order: orders.at(i) as OrderInput };
    states.set(`t${i}`, state);
    send(pipeline, `t${i}`, state);
  };

  // The worker: read a batch of commands, "run" them, write every result and ack in one round trip.
  const worker = (async () => {
    while (running) {
      const reply = (await workerConn.xreadgroup(
        'GROUP',
        'w',
        'c',
        'COUNT',
        COUNT,
        'BLOCK',
        100,
        'STREAMS',
        commands,
        '>',
      )) as Entries;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      const pipeline = workerConn.pipeline();
      for (const [, list] of entries) {
        const f = fields(list);
        const input = JSON.parse(f['input'] ?? '{}') as OrderInput;
        const ok = !(f['step'] === 'ship' && input.failShipping);
        pipeline.xadd(results, '*', 'tx', f['tx'] ?? '', 'ok', ok ? '1' : '0');
      }
      pipeline.xack(commands, 'w', ...entries.map(([id]) => id));
      await pipeline.exec();
    }
  })();

  // The orchestrator: read a batch of results; ack them, write the states and send the next
  // commands, all in one round trip.
  const orchestrator = (async () => {
    while (running) {
      const reply = (await orchestratorConn.xreadgroup(
        'GROUP',
        'o',
        'c',
        'COUNT',
        COUNT,
        'BLOCK',
        100,
        'STREAMS',
        results,
        '>',
      )) as Entries;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      const pipeline = orchestratorConn.pipeline();
      pipeline.xack(results, 'o', ...entries.map(([id]) => id));
      for (const [, list] of entries) {
        const f = fields(list);
        const tx = f['tx'] ?? '';
        const state = states.get(tx) as State;
        if (!state.undo && f['ok'] === '1' && state.step < 2) state.step++;
        else if (!state.undo && f['ok'] === '0') {
          state.undo = true;
          state.step--;
        } else if (state.undo && state.step > 0) state.step--;
        else {
          pipeline.set(`${prefix}:state:${tx}`, JSON.stringify({ ...state, done: true }));
          finished++;
          if (finished === orders.length) done();
          else startNext(pipeline);
          continue;
        }
        send(pipeline, tx, state);
      }
      await pipeline.exec();
    }
  })();

  const started = performance.now();
  const first = producer.pipeline();
  for (let i = 0; i < Math.min(concurrency, orders.length); i++) startNext(first);
  await first.exec();
  await allDone;
  const wallMs = performance.now() - started;
  running = false;
  await Promise.all([worker, orchestrator]);
  const stateKeys = [...states.keys()].map((tx) => `${prefix}:state:${tx}`);
  for (let i = 0; i < stateKeys.length; i += 1_000) await producer.del(...stateKeys.slice(i, i + 1_000));
  await producer.del(commands, results);
  producer.disconnect();
  workerConn.disconnect();
  orchestratorConn.disconnect();
  return wallMs;
}
