/**
 * Issue 12 item 7: no input can leave a run unfinished. 2,000 hostile start inputs (prototype
 * names as keys, deep nesting around the limits, odd numbers and strings), each of which also
 * decides what the worker answers (so worker outputs are just as hostile), go through the whole
 * engine: CEL conditions and mappings read them, workers echo them into the context. Every start
 * is either refused with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, or accepted and then finishes.
 */
import {
  ErrorCode,
  MultiAgentsError,
  isTerminalRunState,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import { WorkflowBuilder } from '@multiagents/core';
import { defineWorker } from '@multiagents/worker-sdk';
import fc from 'fast-check';
import { startEmbedded } from './embedded-stack';

/**
 * Whole runs, not a function call each: 2,000 keep it to a few seconds. The four pure fuzz targets
 * (envelope codec, definition loader, CEL, gRPC mappers) run 10,000 cases each beside their code.
 */
const CASES = 2_000;
const PROTO_NAMES = [
  'constructor',
  '__proto__',
  'prototype',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
];

const hostileKey = fc.oneof(fc.constantFrom(...PROTO_NAMES), fc.string({ maxLength: 8 }));
const leaf = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    1e308,
    -1e-308,
    Number.MAX_SAFE_INTEGER,
    2 ** 53 + 1,
    '',
    '\u0000',
    '\ud800',
    'a'.repeat(200),
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 20 }),
  fc.boolean(),
  fc.constant(null),
);
const { value: hostileValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(hostileKey, tie('value'), { maxKeys: 4 }),
  ),
}));
/** Nested `depth` levels deep: below, at and above the 64-level limit. */
const deep = fc.integer({ min: 1, max: 90 }).map((depth) => {
  let value: unknown = 'bottom';
  for (let i = 0; i < depth; i += 1) value = i % 2 === 0 ? [value] : { constructor: value };
  return value;
});
const hostileInput = fc.record({
  total: fc.oneof(fc.integer(), fc.string({ maxLength: 5 }), fc.constant(null), hostileValue),
  items: fc.array(hostileValue, { maxLength: 20 }),
  extra: fc.oneof(hostileValue, deep),
  reply: fc.oneof(hostileValue, deep, fc.dictionary(hostileKey, hostileValue, { maxKeys: 5 })),
});
/** Sometimes with a top-level key named like a prototype property (refused as an input field). */
const startInput = fc
  .tuple(hostileInput, fc.option(fc.constantFrom(...PROTO_NAMES), { freq: 5 }), hostileValue)
  .map(([input, key, value]) => (key === null ? input : { ...input, [key]: value }));

const workflow: WorkflowDefinition = new WorkflowBuilder('hostile')
  .step('echo', 'h.echo', { input: 'input', output: 'echo', compensation: 'h.undo' })
  .step('merge', 'h.merge', {
    input: 'input',
    when:
      'has(context.echo) && (type(input.total) == int ? input.total > 0 : size(input.items) >= 0) && ' +
      "input.items.all(i, type(i) != string || i.matches('^a+$'))",
  })
  .build();

describe('hostile input never leaves a run unfinished (fuzz, 2,000 whole runs)', () => {
  it('refuses with INVALID_ARGUMENT or RESOURCE_EXHAUSTED, or finishes', async () => {
    const stack = await startEmbedded({
      workers: [
        defineWorker<{ reply?: unknown }, unknown>('h.echo', (input) => input.reply ?? null),
        // Shallow-merged into the context: its keys (constructor, __proto__…) become context keys.
        defineWorker<{ reply?: unknown }, unknown>('h.merge', (input) =>
          typeof input.reply === 'object' && input.reply !== null && !Array.isArray(input.reply)
            ? input.reply
            : {},
        ),
        defineWorker('h.undo', () => ({})),
      ],
      definitions: [workflow],
    });
    try {
      const inputs = fc.sample(startInput, { numRuns: CASES, seed: 12 });
      const accepted: string[] = [];
      const refusals = new Map<string, number>();
      for (let from = 0; from < inputs.length; from += 500) {
        await Promise.all(
          inputs.slice(from, from + 500).map(async (input) => {
            try {
              accepted.push((await stack.orchestrator.startWorkflow('hostile', input)).txId);
            } catch (err) {
              const code =
                err instanceof MultiAgentsError ? err.code : `not a MultiAgentsError: ${String(err)}`;
              refusals.set(code, (refusals.get(code) ?? 0) + 1);
            }
          }),
        );
      }
      expect(
        [...refusals.keys()].filter(
          (code) => code !== ErrorCode.InvalidArgument && code !== ErrorCode.ResourceExhausted,
        ),
      ).toEqual([]);
      // Deep inputs are refused, the rest accepted: both paths are exercised.
      expect(refusals.size).toBeGreaterThan(0);
      expect(accepted.length).toBeGreaterThan(CASES / 10);
      const finals = await Promise.all(
        accepted.map((txId) => stack.orchestrator.waitForTerminal(txId, { timeoutMs: 60_000 })),
      );
      expect(finals.filter((run) => !isTerminalRunState(run.state))).toEqual([]);
      const states = new Map<string, number>();
      for (const run of finals) states.set(run.state, (states.get(run.state) ?? 0) + 1);
      expect(states.get('completed')).toBeGreaterThan(0);
    } finally {
      await stack.close();
    }
  }, 120_000);
});
