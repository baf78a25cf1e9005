import { ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import { parseDefinition } from './parse-definition';
import { WorkflowBuilder } from './workflow-builder';

const ORDER_YAML = `
id: order_processing
version: 1
steps:
  - name: reserve_inventory
    worker: inventory.reserve
    compensation: inventory.release
  - name: charge_payment
    worker: payment.charge
    compensation: payment.refund
    retry:
      maxAttempts: 3
  - name: ship_order
    worker: shipping.ship
    when: context.total > 0
    timeoutMs: 30000
`;

describe('WorkflowBuilder', () => {
  it('produces the SPEC §2 example, the same data as its YAML', () => {
    const order = new WorkflowBuilder('order_processing')
      .step('reserve_inventory', 'inventory.reserve', { compensation: 'inventory.release' })
      .step('charge_payment', 'payment.charge', { compensation: 'payment.refund', retry: { maxAttempts: 3 } })
      .step('ship_order', 'shipping.ship', { when: 'context.total > 0', timeoutMs: 30_000 })
      .build();
    const expected: WorkflowDefinition = {
      id: 'order_processing',
      version: 1,
      steps: [
        {
          name: 'reserve_inventory',
          kind: 'task',
          worker: 'inventory.reserve',
          compensation: 'inventory.release',
        },
        {
          name: 'charge_payment',
          kind: 'task',
          worker: 'payment.charge',
          compensation: 'payment.refund',
          retry: { maxAttempts: 3 },
        },
        {
          name: 'ship_order',
          kind: 'task',
          worker: 'shipping.ship',
          when: 'context.total > 0',
          timeoutMs: 30_000,
        },
      ],
    };
    expect(order).toStrictEqual(expected);
    expect(parseDefinition(ORDER_YAML)).toStrictEqual(order);
  });

  it('builds parallel, wait and sleep steps, defaults, version and description like YAML does', () => {
    const built = new WorkflowBuilder('onboarding')
      .version(3)
      .description('new customer')
      .defaults({ timeoutMs: 5_000, retry: { maxAttempts: 2 } })
      .step('create', 'crm.create', { compensation: 'crm.delete', output: 'customer' })
      .parallel('notify', [
        (b) => b.step('email', 'mail.send', { input: { to: 'context.customer.email' } }),
        (b) => b.step('sms', 'sms.send').sleep('cooldown', 1_000),
      ])
      .wait('approval', 'approved', { timeoutMs: 60_000, output: 'approval' })
      .sleep('settle', 250, { when: 'context.approval.ok' })
      .build();
    const yaml = `
id: onboarding
version: 3
description: new customer
defaults: { timeoutMs: 5000, retry: { maxAttempts: 2 } }
steps:
  - { name: create, worker: crm.create, compensation: crm.delete, output: customer }
  - name: notify
    kind: parallel
    branches:
      - - { name: email, worker: mail.send, input: { to: context.customer.email } }
      - - { name: sms, worker: sms.send }
        - { name: cooldown, kind: sleep, durationMs: 1000 }
  - { name: approval, kind: wait, signal: approved, timeoutMs: 60000, output: approval }
  - { name: settle, kind: sleep, durationMs: 250, when: context.approval.ok }
`;
    expect(parseDefinition(yaml)).toStrictEqual(built);
  });

  it('validates on build and lists every problem', () => {
    const builder = new WorkflowBuilder('bad').step('a', 'w.a').step('a', 'w.b', { when: 'context.x >' });
    expect(() => builder.build()).toThrow(ValidationError);
    try {
      builder.build({ knownWorkers: new Set(['w.a']) });
    } catch (err) {
      expect((err as ValidationError).problems).toEqual([
        'step "a": duplicate step name',
        expect.stringMatching(/^step "a": when "context\.x >" does not compile/),
        'step "a": worker names unknown worker "w.b"',
      ]);
    }
    expect.assertions(2);
  });

  it('returns independent definitions from repeated builds', () => {
    const builder = new WorkflowBuilder('twice').step('a', 'w');
    const first = builder.build();
    builder.step('b', 'w');
    expect(first.steps.map((s) => s.name)).toEqual(['a']);
    expect(builder.build().steps.map((s) => s.name)).toEqual(['a', 'b']);
  });
});
