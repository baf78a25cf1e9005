import type { WorkflowDefinition } from '@multiagents/contracts';
import { LabelBounds, OTHER_LABEL } from './label-bounds';

const definition = (id: string, steps: number): WorkflowDefinition => ({
  id,
  version: 1,
  steps: Array.from({ length: steps }, (_, i) => ({
    name: `s${i}`,
    kind: 'task' as const,
    worker: `${id}.w${i}`,
    compensation: `${id}.undo${i}`,
  })),
});

describe('LabelBounds', () => {
  it('names what the definitions declare (parallel branches too) and nothing else', () => {
    const bounds = new LabelBounds();
    bounds.learn({
      id: 'wf',
      version: 1,
      steps: [
        { name: 'a', kind: 'task', worker: 'w.a' },
        {
          name: 'p',
          kind: 'parallel',
          branches: [[{ name: 'b', kind: 'task', worker: 'w.b', compensation: 'w.b.undo' }]],
        },
        { name: 'nap', kind: 'sleep', durationMs: 5 },
      ],
    });
    expect(bounds.workflow('wf')).toBe('wf');
    expect(bounds.workflow('forged')).toBe(OTHER_LABEL);
    expect(['a', 'p', 'b', 'nap', 'c'].map((s) => bounds.step('wf', s))).toEqual([
      'a',
      'p',
      'b',
      'nap',
      'other',
    ]);
    expect(bounds.step('forged', 'a')).toBe(OTHER_LABEL);
    expect(bounds.step('wf', undefined)).toBe(OTHER_LABEL);
    expect(bounds.workers).toEqual(['w.a', 'w.b', 'w.b.undo']);
    expect(bounds.worker('w.zzz')).toBe(OTHER_LABEL);
  });

  it('caps workflows, steps per workflow and workers, first learned first named', () => {
    const bounds = new LabelBounds({ maxWorkflows: 2, maxStepsPerWorkflow: 3, maxWorkers: 4 });
    for (const id of ['one', 'two', 'three']) bounds.learn(definition(id, 5));
    expect(['one', 'two', 'three'].map((id) => bounds.workflow(id))).toEqual(['one', 'two', 'other']);
    expect(bounds.workflowsFull).toBe(true);
    expect(['s0', 's2', 's3'].map((s) => bounds.step('one', s))).toEqual(['s0', 's2', 'other']);
    expect(bounds.workers).toEqual(['one.w0', 'one.undo0', 'one.w1', 'one.undo1']);
  });

  it("names the services' consumer groups always and others up to the cap", () => {
    const bounds = new LabelBounds({ maxOtherGroups: 2 });
    expect(['x', 'y', 'z', 'x'].map((g) => bounds.group(g))).toEqual(['x', 'y', 'other', 'x']);
    expect(
      ['orchestrators', 'workers', 'metrics-collector', 'event-monitor'].map((g) => bounds.group(g)),
    ).toEqual(['orchestrators', 'workers', 'metrics-collector', 'event-monitor']);
  });
});
