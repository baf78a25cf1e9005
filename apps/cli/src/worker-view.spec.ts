import { workerListLines } from './worker-view';

describe('worker view', () => {
  it('prints each hosted worker with its lingering handlers beside its attempts in flight', () => {
    expect(
      workerListLines({
        managerId: 'wm-1',
        draining: true,
        workers: [
          { name: 'payment.charge', inFlight: 0, capacity: 1, circuit: 'closed', lingering: 1 },
          { name: 'inventory.reserve', inFlight: 2, capacity: 8, circuit: 'half-open', lingering: 0 },
        ],
      }),
    ).toEqual([
      'worker-manager wm-1 (draining)',
      'WORKER             IN FLIGHT  LINGERING  CAPACITY  CIRCUIT',
      'payment.charge     0          1          1         closed',
      'inventory.reserve  2          0          8         half-open',
    ]);
  });
});
