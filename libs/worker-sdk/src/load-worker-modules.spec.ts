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

  it('checks workers built by hand as defineWorker does, and resolves their options', () => {
    const plain = moduleFile(dir, 'by-hand.js', `exports.workers = [{ name: 'p', handler: () => ({}) }];`);
    const [loaded] = loadWorkerModules([plain]);
    // Without resolved options a manager would wait for a free slot for ever (concurrency undefined).
    expect(loaded?.options).toMatchObject({ concurrency: 16 });
    const bad = moduleFile(
      dir,
      'bad.js',
      `exports.workers = [{ name: 'has space', handler: () => ({}), options: { concurrency: 0 } }];`,
    );
    let error: unknown;
    try {
      loadWorkerModules([bad]);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      expect.stringMatching(/bad\.js: worker "has space": name "has space" must be/),
      'bad.js: worker "has space": concurrency must be a positive integer (got 0)'.replace('bad.js', bad),
    ]);
  });

  it('calls createWorkers(services) once with the host services, beside modules that export workers', () => {
    const memo = { get: async () => undefined, put: async <T>(_key: string, record: T) => record };
    const factory = moduleFile(
      dir,
      'factory.js',
      `let calls = 0;
       exports.createWorkers = (services) => {
         calls += 1;
         return [{ name: 'f.agent', handler: () => ({}), options: {}, memo: services.memo, calls }];
       };`,
    );
    const plain = moduleFile(dir, 'plain.js', `exports.workers = [${worker('p.one')}];`);
    const workers = loadWorkerModules([factory, plain], { memo });
    expect(workers.map((w) => w.name)).toEqual(['f.agent', 'p.one']);
    expect(workers[0]).toMatchObject({ memo, calls: 1 });
  });

  it('says what is wrong with a createWorkers module, every problem at once', () => {
    const memo = { get: async () => undefined, put: async <T>(_key: string, record: T) => record };
    const both = moduleFile(dir, 'both.js', `exports.workers = []; exports.createWorkers = () => [];`);
    const notFunction = moduleFile(dir, 'not-function.js', `exports.createWorkers = [];`);
    const throws = moduleFile(
      dir,
      'throws.js',
      `exports.createWorkers = () => { throw new Error('no key'); };`,
    );
    const promise = moduleFile(dir, 'promise.js', `exports.createWorkers = async () => [];`);
    const junk = moduleFile(dir, 'junk.js', `exports.createWorkers = () => [{ name: 1 }];`);
    let error: unknown;
    try {
      loadWorkerModules([both, notFunction, throws, promise, junk], { memo });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).problems).toEqual([
      `${both}: export either "workers" or "createWorkers", not both`,
      `${notFunction}: "createWorkers" must be a function (services) => an array of defineWorker(...) results`,
      `${throws}: createWorkers threw: no key`,
      `${promise}: createWorkers must return the array itself, not a promise`,
      `${junk}: createWorkers must return an array of defineWorker(...) results`,
    ]);
  });

  it('refuses a createWorkers module where the host gives no services', () => {
    const factory = moduleFile(dir, 'needs-services.js', `exports.createWorkers = () => [];`);
    expect(() => loadWorkerModules([factory])).toThrow(/gives no services: export "workers" instead/);
  });
});
