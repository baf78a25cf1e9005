/**
 * Test support: the embedded stack with small order-saga workers, a gate to hold a step in flight,
 * and the control plane on a random loopback port.
 */
import { NonRetryableError, type WorkflowDefinition } from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { startEmbedded, type EmbeddedStack } from '@multiagents/embedded';
import { defineWorker, type WorkerDefinition } from '@multiagents/worker-sdk';
import { ControlPlaneServer, type ControlPlaneServerOptions } from './control-plane-server';

/** A promise-based gate: `gated.work` waits until `open()`. */
export class Gate {
  private waiting: (() => void)[] = [];
  private opened = false;
  entered = 0;

  wait(): Promise<void> {
    this.entered++;
    if (this.opened) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  open(): void {
    this.opened = true;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  close(): void {
    this.opened = false;
  }
}

/** order_processing as SPEC §8 has it: ship_order fails when the input says `fail: true`. */
export const orderWorkflow: WorkflowDefinition = new WorkflowBuilder('order_processing')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('charge_payment', 'payment.charge', { compensation: 'payment.refund' })
  .step('ship_order', 'shipping.ship')
  .build();

/** A step held by the gate, then a wait for the `approved` signal. */
export const gatedWorkflow: WorkflowDefinition = new WorkflowBuilder('gated')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('hold', 'gated.work')
  .wait('approve', 'approved', { output: 'approval' })
  .build();

/** The order saga with a gated step after the reservation: a test can watch it from the start. */
export const gatedOrderWorkflow: WorkflowDefinition = new WorkflowBuilder('gated_order')
  .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
  .step('hold', 'gated.work')
  .step('charge_payment', 'payment.charge', { compensation: 'payment.refund' })
  .step('ship_order', 'shipping.ship')
  .build();

/** A running stack with the control plane. */
export interface TestControlPlane {
  readonly stack: EmbeddedStack;
  readonly server: ControlPlaneServer;
  readonly address: string;
  readonly gate: Gate;
  close(): Promise<void>;
}

/** Workers and definitions a test adds to the stack's own. */
export interface TestStackExtras {
  readonly workers?: readonly WorkerDefinition<never, unknown>[];
  readonly definitions?: readonly WorkflowDefinition[];
}

/** Starts the embedded stack and the control plane on 127.0.0.1, port 0. */
export async function startTestControlPlane(
  options: Partial<Omit<ControlPlaneServerOptions, 'orchestrator' | 'workerManager'>> = {},
  extras: TestStackExtras = {},
): Promise<TestControlPlane> {
  const gate = new Gate();
  const workers = [
    defineWorker('inventory.reserve', (input: { orderId?: string }) => ({
      reservationId: `res-${input.orderId ?? 'x'}`,
    })),
    defineWorker('inventory.release', () => ({ released: true })),
    defineWorker('payment.charge', (input: { total?: number }, ctx) => ({
      paymentId: ctx.idempotencyKey,
      amount: input.total ?? 0,
    })),
    defineWorker('payment.refund', () => ({ refunded: true })),
    defineWorker('shipping.ship', (input: { orderId?: string; fail?: boolean }) => {
      if (input.fail) throw new NonRetryableError('carrier refused', { code: 'CARRIER_REFUSED' });
      return { trackingId: `trk-${input.orderId ?? 'x'}` };
    }),
    defineWorker('gated.work', async () => {
      await gate.wait();
      return { held: true };
    }),
  ];
  const stack = await startEmbedded({
    workers: [...workers, ...(extras.workers ?? [])],
    definitions: [orderWorkflow, gatedWorkflow, gatedOrderWorkflow, ...(extras.definitions ?? [])],
    workerManager: { drainTimeoutMs: 5_000 },
  });
  const server = new ControlPlaneServer({
    orchestrator: stack.orchestrator,
    workerManager: stack.workerManager,
    host: '127.0.0.1',
    port: 0,
    ...options,
  });
  const { address } = await server.start();
  return {
    stack,
    server,
    address,
    gate,
    async close() {
      gate.open();
      await server.close();
      await stack.close();
    },
  };
}
