import { setFlagsFromString } from 'node:v8';

/** V8's own view of objects' hidden classes, for tests of hot-path data shapes. */
export interface V8Shapes {
  /** Whether the two objects share one hidden class. */
  sameHiddenClass(a: object, b: object): boolean;
  /** False for an object in dictionary mode (its properties in a hash table of its own). */
  hasFastProperties(value: object): boolean;
}

/**
 * V8's intrinsics `%HaveSameMap` and `%HasFastProperties`, which only parse in code compiled after
 * `--allow-natives-syntax` is set (so they are compiled here, from strings).
 *
 * @example
 * const shapes = v8Shapes();
 * expect(shapes.hasFastProperties(ctx)).toBe(true);
 */
export function v8Shapes(): V8Shapes {
  setFlagsFromString('--allow-natives-syntax');
  /* eslint-disable @typescript-eslint/no-implied-eval -- the intrinsics only parse in code compiled after the flag */
  const same = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
  const fast = new Function('o', 'return %HasFastProperties(o)') as (o: object) => boolean;
  /* eslint-enable @typescript-eslint/no-implied-eval */
  return { sameHiddenClass: same, hasFastProperties: fast };
}
