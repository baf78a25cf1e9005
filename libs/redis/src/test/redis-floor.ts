/**
 * The hand-written Redis floor of the order saga (a copy of examples/order-processing's
 * `redis-floor.ts`, which a lib may not import): per step XADD the command, XREADGROUP it, XADD
 * the result, XACK, and one state write (SET in MULTI with the next command). Compensations too.
 * Measured on the same private server as the backend, for the per-step comparison.
 */
import { Redis } from 'ioredis';

/** One order of the floor run. */
export interface FloorOrder {
  readonly orderId: string;
  readonly total: number;
  readonly failShipping: boolean;
}

interface State {
  step: number;
  undo: boolean;
  order: FloorOrder;
}

const STEPS = ['reserve', 'charge', 'ship'] as const;

/** Runs every order through the hand-written saga with `concurrency` in flight; returns the steps done. */
export async function runRedisFloor(
  url: string,
  orders: readonly FloorOrder[],
  concurrency: number,
): Promise<number> {
  const prefix = `floor:${Date.now()}:${Math.random().toString(36).slice(2, 6)}`;
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
  let steps = 0;
  let done!: () => void;
  const allDone = new Promise<void>((resolve) => (done = resolve));
  let running = true;

  const send = async (tx: string, state: State): Promise<void> => {
    const name = state.undo ? `${STEPS[state.step]}:undo` : STEPS[state.step];
    await producer
      .multi()
      .set(`${prefix}:state:${tx}`, JSON.stringify(state))
      .xadd(commands, '*', 'tx', tx, 'step', name ?? '', 'input', JSON.stringify(state.order))
      .exec();
  };
  const startNext = async (): Promise<void> => {
    if (next >= orders.length) return;
    const i = next++;
    const state: State = { step: 0, undo: false, order: orders[i] as FloorOrder };
    states.set(`t${i}`, state);
    await send(`t${i}`, state);
  };

  type Entries = [string, [string, string[]][]][] | null;
  const fields = (list: string[]): Record<string, string> => {
    const out: Record<string, string> = {};
    for (let i = 0; i + 1 < list.length; i += 2) out[list[i] as string] = list[i + 1] as string;
    return out;
  };

  const worker = (async () => {
    while (running) {
      const reply = (await workerConn.xreadgroup(
        'GROUP',
        'w',
        'c',
        'COUNT',
        200,
        'BLOCK',
        100,
        'STREAMS',
        commands,
        '>',
      )) as Entries;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      const pipeline = workerConn.pipeline();
      for (const [id, list] of entries) {
        const f = fields(list);
        const input = JSON.parse(f['input'] ?? '{}') as FloorOrder;
        const ok = !(f['step'] === 'ship' && input.failShipping);
        pipeline.xadd(results, '*', 'tx', f['tx'] ?? '', 'ok', ok ? '1' : '0');
        pipeline.xack(commands, 'w', id);
      }
      await pipeline.exec();
    }
  })();

  const orchestrator = (async () => {
    while (running) {
      const reply = (await orchestratorConn.xreadgroup(
        'GROUP',
        'o',
        'c',
        'COUNT',
        200,
        'BLOCK',
        100,
        'STREAMS',
        results,
        '>',
      )) as Entries;
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      await Promise.all(
        entries.map(async ([id, list]) => {
          const f = fields(list);
          const tx = f['tx'] ?? '';
          const state = states.get(tx) as State;
          steps += 1;
          await orchestratorConn.xack(results, 'o', id);
          if (!state.undo && f['ok'] === '1' && state.step < 2) state.step++;
          else if (!state.undo && f['ok'] === '0') {
            state.undo = true;
            state.step--;
          } else if (state.undo && state.step > 0) state.step--;
          else {
            await orchestratorConn.set(`${prefix}:state:${tx}`, JSON.stringify({ ...state, done: true }));
            finished++;
            if (finished === orders.length) done();
            else await startNext();
            return;
          }
          await send(tx, state);
        }),
      );
    }
  })();

  await Promise.all(Array.from({ length: Math.min(concurrency, orders.length) }, startNext));
  await allDone;
  running = false;
  await Promise.all([worker, orchestrator]);
  await producer.del(commands, results);
  producer.disconnect();
  workerConn.disconnect();
  orchestratorConn.disconnect();
  return steps;
}
