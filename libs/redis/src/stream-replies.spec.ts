import { compareStreamIds, fieldValue, parseEntryQuads, parseReadGroupReply } from './stream-replies';

const b = (s: string): Buffer => Buffer.from(s);

describe('stream replies', () => {
  it('reads XREADGROUP replies as first deliveries, with or without a d field', () => {
    const reply = [
      [
        b('k'),
        [
          [b('1-0'), [b('d'), Buffer.of(1, 2)]],
          [b('1-1'), [b('x'), b('y')]],
          [b('1-2'), null],
        ],
      ],
    ];
    expect(parseReadGroupReply(reply)).toEqual([
      { stream: 'k', id: '1-0', deliveryCount: 1, data: Buffer.of(1, 2), group: undefined },
      { stream: 'k', id: '1-1', deliveryCount: 1, data: undefined, group: undefined },
    ]);
    expect(parseReadGroupReply(null)).toEqual([]);
    // RESP3's map as ioredis' legacy mapping flattens it.
    expect(parseReadGroupReply([b('k'), [[b('1-3'), [b('d'), b('q')]]]])).toEqual([
      { stream: 'k', id: '1-3', deliveryCount: 1, data: b('q'), group: undefined },
    ]);
  });

  it('names the stream of each entry when one read covers several partitions', () => {
    const reply = [
      [b('p0'), [[b('1-0'), [b('d'), b('a')]]]],
      [b('p1'), [[b('1-0'), [b('d'), b('b')]]]],
    ];
    expect(parseReadGroupReply(reply).map((e) => [e.stream, e.id, e.data?.toString()])).toEqual([
      ['p0', '1-0', 'a'],
      ['p1', '1-0', 'b'],
    ]);
  });

  it("reads a replayed dead letter's group, and no group on a published entry", () => {
    const reply = [
      [
        b('k'),
        [
          [b('1-0'), [b('d'), b('a'), b('group'), b('g1')]],
          [b('1-1'), [b('d'), b('b')]],
          [b('1-2'), [b('d'), b('c'), b('other'), b('x')]],
          [b('1-3'), [b('d'), b('e'), b('group'), b('')]],
        ],
      ],
    ];
    expect(parseReadGroupReply(reply).map((e) => e.group?.toString())).toEqual([
      'g1',
      undefined,
      undefined,
      '',
    ]);
  });

  it('reads flat id/count/data/group quads', () => {
    expect(parseEntryQuads([b('2-0'), 3, b('z'), null, b('2-1'), 2, null, b('g')])).toEqual([
      { stream: '', id: '2-0', deliveryCount: 3, data: b('z'), group: undefined },
      { stream: '', id: '2-1', deliveryCount: 2, data: undefined, group: b('g') },
    ]);
    expect(fieldValue([b('a'), b('1'), b('d'), b('2')], 'd')).toEqual(b('2'));
  });

  it('orders stream entry ids as Redis does, however many digits each part has', () => {
    const ids = ['10-0', '9-10', '9-9', '1700000000000-2', '1700000000000-10', '0-1', '99-0', '9-100'];
    const sorted = [...ids].sort(compareStreamIds);
    expect(sorted).toEqual([
      '0-1',
      '9-9',
      '9-10',
      '9-100',
      '10-0',
      '99-0',
      '1700000000000-2',
      '1700000000000-10',
    ]);
    expect(compareStreamIds('5-5', '5-5')).toBe(0);
    expect(Math.sign(compareStreamIds('5-5', '5-6'))).toBe(-1);
    expect(Math.sign(compareStreamIds('12-0', '9-99'))).toBe(1);
  });
});
