import type { Run } from '@multiagents/contracts';
import { RunWatchHub } from './run-watch-hub';

function feed(): {
  source: { onRunChanged: jest.Mock; getRun: jest.Mock };
  emit: (run: Run) => void;
  active: () => number;
} {
  const listeners = new Set<(run: Run) => void>();
  const source = {
    onRunChanged: jest.fn((listener: (run: Run) => void) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    }),
    getRun: jest.fn(),
  };
  return { source, emit: (run) => listeners.forEach((l) => l(run)), active: () => listeners.size };
}

const run = (txId: string, state = 'running'): Run => ({ txId, state }) as unknown as Run;

describe('RunWatchHub', () => {
  it('holds one orchestrator listener while anyone watches, and none after', () => {
    const { source, emit, active } = feed();
    const hub = new RunWatchHub(source);
    expect(active()).toBe(0);
    const a: string[] = [];
    const b: string[] = [];
    const stopA = hub.watch('t-1', (r) => a.push(r.state));
    const stopB = hub.watch('t-2', (r) => b.push(r.state));
    expect(source.onRunChanged).toHaveBeenCalledTimes(1);
    expect(active()).toBe(1);
    emit(run('t-1', 'running'));
    emit(run('t-2', 'waiting'));
    emit(run('t-3', 'completed'));
    expect(a).toEqual(['running']);
    expect(b).toEqual(['waiting']);
    stopA();
    stopA(); // idempotent
    expect(hub.size).toBe(1);
    expect(active()).toBe(1);
    stopB();
    expect(hub.size).toBe(0);
    expect(active()).toBe(0);
    hub.watch('t-1', () => undefined);
    expect(active()).toBe(1);
  });

  it('lets a listener stop itself while being called', () => {
    const { source, emit } = feed();
    const hub = new RunWatchHub(source);
    const seen: string[] = [];
    const stop = hub.watch('t-1', (r) => {
      seen.push(`first:${r.state}`);
      stop();
    });
    hub.watch('t-1', (r) => seen.push(`second:${r.state}`));
    emit(run('t-1', 'completed'));
    emit(run('t-1', 'completed'));
    expect(seen).toEqual(['first:completed', 'second:completed', 'second:completed']);
  });

  it('reads a watched run again when some process moved it, and follows no other run', async () => {
    const { source } = feed();
    const moved = new Set<(txId: string) => void>();
    const stored = new Map([['t-1', run('t-1', 'compensating')]]);
    const withMoves = {
      ...source,
      onRunMoved: (listener: (txId: string) => void) => {
        moved.add(listener);
        return () => moved.delete(listener);
      },
      getRun: jest.fn(async (txId: string) => stored.get(txId) as Run),
    };
    const hub = new RunWatchHub(withMoves);
    const seen: string[] = [];
    const stop = hub.watch('t-1', (r) => seen.push(r.state));
    expect(moved.size).toBe(1);
    for (const listener of moved) listener('t-2');
    for (const listener of moved) listener('t-1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(withMoves.getRun.mock.calls).toEqual([['t-1']]);
    expect(seen).toEqual(['compensating']);
    stop();
    expect(moved.size).toBe(0);
  });

  it('reads every watched run again once the feed of moves has opened (it missed what moved before)', async () => {
    const { source } = feed();
    let opened: (() => void) | undefined;
    const withMoves = {
      ...source,
      onRunMoved: (_listener: (txId: string) => void, onOpened?: () => void) => {
        opened = onOpened;
        return () => undefined;
      },
      getRun: jest.fn(async (txId: string) => run(txId, 'completed')),
    };
    const hub = new RunWatchHub(withMoves);
    const seen: string[] = [];
    hub.watch('t-1', (r) => seen.push(`${r.txId}:${r.state}`));
    hub.watch('t-2', (r) => seen.push(`${r.txId}:${r.state}`));
    expect(withMoves.getRun).not.toHaveBeenCalled();
    opened?.();
    await new Promise((resolve) => setImmediate(resolve));
    expect(withMoves.getRun.mock.calls).toEqual([['t-1'], ['t-2']]);
    expect(seen).toEqual(['t-1:completed', 't-2:completed']);
  });
});
