import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValidationError } from '@multiagents/contracts';
import { loadWorkerModules } from './load-worker-modules';

function moduleFile(dir: string, name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

describe('loadWorkerModules', () => {
  const dir = mkdtempSync(join(tmpdir(), 'workers-'));
  const worker = (name: string): string => `{ name: '${name}', handler: () => ({}), options: {} }`;

  it('collects the workers every module exports', () => {
    const a = moduleFile(dir, 'a.js', `exports.workers = [${worker('a.one')}, ${worker('a.two')}];`);
    const b = moduleFile(dir, 'b.js', `module.exports = { default: [${worker('b.one')}] };`);
    expect(loadWorkerModules([a, b]).map((w) => w.name)).toEqual(['a.one', 'a.two', 'b.one']);
  });

  it('lists every bad module and duplicate at once', () => {
    const good = moduleFile(dir, 'good.js', `exports.workers = [${worker('x')}];`);
    const again = moduleFile(dir, 'again.js', `exports.workers = [${worker('x')}];`);
    const wrong = moduleFile(dir, 'wrong.js', `exports.workers = 'nope';`);
    let error: unknown;
    try {
      loadWorkerModules([good, again, wrong, join(dir, 'missing.js')]);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    const problems = (error as ValidationError).problems.join('\n');
    expect(problems).toMatch(/wrong\.js: must export "workers"/);
    expect(problems).toMatch(/missing\.js: cannot load/);
    expect(problems).toMatch(/worker x is defined twice/);
  });
});
