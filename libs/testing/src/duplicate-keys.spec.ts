import { duplicateJsonKeys } from './duplicate-keys';

describe('duplicateJsonKeys', () => {
  it('finds keys repeated in one object, at any depth, and nothing else', () => {
    expect(duplicateJsonKeys('{"a":1,"b":{"c":"x","c":"y"},"a":[{"d":1,"d":2}]}')).toEqual([
      '$.b.c',
      '$.a',
      '$.a[0].d',
    ]);
    expect(duplicateJsonKeys('{"a":{"k":1},"b":{"k":1},"s":"\\"a\\":1,\\"a\\":2","n":null,"e":[]}')).toEqual(
      [],
    );
    expect(() => duplicateJsonKeys('{"a":')).toThrow(SyntaxError);
  });
});
