import fc from 'fast-check';
import { BinaryWriter, Envelope as EnvelopeMessage } from '@multiagents/proto';
import { decodeWireEnvelope, encodeWireEnvelope, type WireEnvelope } from './envelope-wire';

// The hand-written codec against the generated one (ts-proto over @bufbuild/protobuf): the same
// bytes out, the same message back, on random envelopes and on bytes laid out differently.

/** Any string, lone surrogates included (both encoders write them as U+FFFD). */
const text = fc.string({ unit: 'binary', maxLength: 40 });
const time = fc.oneof(
  fc.constant(0),
  fc.integer({ min: 0, max: 2 ** 31 }),
  fc.maxSafeInteger(),
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: -1 }),
  fc.constantFrom(
    1_796_552_589_358,
    Number.MAX_SAFE_INTEGER,
    Number.MIN_SAFE_INTEGER,
    2 ** 53,
    2 ** 60,
    -(2 ** 62),
  ),
);
const envelope: fc.Arbitrary<WireEnvelope> = fc.record(
  {
    id: text,
    type: text,
    txId: text,
    workflowId: text,
    step: text,
    attempt: fc.oneof(
      fc.integer({ min: 0, max: 300 }),
      fc.constantFrom(0xffff_ffff, 2 ** 31, 127, 128, 16_384),
    ),
    timeMs: time,
    headers: fc.dictionary(text, text, { maxKeys: 4 }),
    payload: fc.uint8Array({ maxLength: 300 }),
  },
  { requiredKeys: ['id', 'type', 'txId', 'workflowId', 'timeMs', 'headers', 'payload'] },
);

function generated(message: WireEnvelope): Buffer {
  return Buffer.from(EnvelopeMessage.encode({ ...message, payload: Buffer.from(message.payload) }).finish());
}

/** What the generated decoder reads, in this codec's shape. */
function readByGenerated(bytes: Uint8Array): WireEnvelope {
  const decoded = EnvelopeMessage.decode(bytes);
  return { ...decoded, payload: new Uint8Array(decoded.payload) };
}

function normalised(message: WireEnvelope): WireEnvelope {
  return { ...message, payload: new Uint8Array(message.payload) };
}

describe('envelope wire codec', () => {
  it('writes the bytes the generated encoder writes', () => {
    fc.assert(
      fc.property(envelope, (message) => {
        expect(encodeWireEnvelope(message).equals(generated(message))).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('writes a payload given as text as its UTF-8 bytes', () => {
    fc.assert(
      fc.property(
        envelope,
        fc.json(),
        fc.string({ unit: 'grapheme', maxLength: 200 }),
        (message, json, prose) => {
          for (const payload of [json, prose, '']) {
            const bytes = encodeWireEnvelope({ ...message, payload });
            expect(bytes.equals(generated({ ...message, payload: Buffer.from(payload, 'utf8') }))).toBe(true);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('reads back what the generated decoder reads', () => {
    fc.assert(
      fc.property(envelope, (message) => {
        const bytes = generated(message);
        if (!Number.isSafeInteger(message.timeMs)) {
          // Written, but no JavaScript number holds it: neither decoder reads it.
          expect(() => readByGenerated(bytes)).toThrow(/SAFE_INTEGER/);
          expect(() => decodeWireEnvelope(bytes)).toThrow(/not a safe integer/);
          return;
        }
        const ours = normalised(decodeWireEnvelope(bytes));
        expect(ours).toEqual(readByGenerated(bytes));
        // A plain Uint8Array (what NATS hands over) reads the same as a Buffer.
        expect(normalised(decodeWireEnvelope(new Uint8Array(bytes)))).toEqual(ours);
      }),
      { numRuns: 2_000 },
    );
  });

  it('writes and reads fields whose lengths take two and three bytes', () => {
    const long = (n: number): string => 'é✓x'.repeat(n);
    const message: WireEnvelope = {
      id: long(50),
      type: 't',
      txId: long(6_000),
      workflowId: 'w',
      step: long(43),
      attempt: 300,
      timeMs: 1_796_552_589_358,
      headers: { [long(30)]: long(2_000), short: '', '': 'v' },
      payload: new Uint8Array(20_000).fill(7),
    };
    const bytes = encodeWireEnvelope(message);
    expect(bytes.equals(generated(message))).toBe(true);
    expect(normalised(decodeWireEnvelope(bytes))).toEqual(readByGenerated(bytes));
  });

  it('reads fields in any order, repeated ones, and skips unknown fields', () => {
    const w = new BinaryWriter();
    w.uint32((99 << 3) | 0).uint64(12345678901234n); // unknown varint
    w.uint32(34).string('wf');
    w.uint32(10).string('first-id');
    w.uint32((98 << 3) | 1).fixed64(7n); // unknown fixed64
    w.uint32(66).fork().uint32(18).string('v1').uint32(10).string('k').join(); // value before key
    w.uint32(26).string('tx');
    w.uint32((97 << 3) | 2).bytes(new Uint8Array([1, 2, 3])); // unknown length-delimited
    w.uint32(18).string('workflow.started');
    w.uint32((96 << 3) | 5).fixed32(9); // unknown fixed32
    w.uint32(10).string('last-id'); // a repeated scalar: the last wins
    w.uint32(66).fork().uint32(10).string('k').uint32(18).string('v2').join(); // a map entry again: merges
    w.uint32(56).int64(-5n);
    w.uint32(18 + 24).string('not an attempt'); // field 5 (step) is a string: fine
    w.uint32(48).uint32(7);
    w.uint32(8 << 3).uint32(1); // field 8 with the wrong wire type: skipped
    const bytes = w.finish();
    const ours = normalised(decodeWireEnvelope(bytes));
    expect(ours).toEqual(readByGenerated(bytes));
    expect(ours).toMatchObject({
      id: 'last-id',
      type: 'workflow.started',
      txId: 'tx',
      workflowId: 'wf',
      step: 'not an attempt',
      attempt: 7,
      timeMs: -5,
      headers: { k: 'v2' },
    });
  });

  it('refuses what is not an envelope', () => {
    const bytes = generated({
      id: 'm',
      type: 't',
      txId: 'x',
      workflowId: 'w',
      timeMs: 1_796_552_589_358,
      headers: { a: 'b' },
      payload: new Uint8Array([123, 125]),
    });
    // Cut anywhere inside a field: every prefix that does not end on a field boundary is refused.
    const boundaries = new Set<number>();
    for (let at = 0; at < bytes.length; at = nextFieldEnd(bytes, at)) boundaries.add(at);
    for (let cut = 1; cut < bytes.length; cut++) {
      if (boundaries.has(cut)) expect(() => decodeWireEnvelope(bytes.subarray(0, cut))).not.toThrow();
      else expect(() => decodeWireEnvelope(bytes.subarray(0, cut))).toThrow(/premature end/);
    }
    expect(() => decodeWireEnvelope(Buffer.from([0x00]))).toThrow(/illegal tag/);
    expect(() => decodeWireEnvelope(Buffer.from([0x0b]))).toThrow(/wire type 3/); // a group
    expect(() => decodeWireEnvelope(Buffer.from([0x0e, 0x00]))).toThrow(/wire type 6/);
    expect(() => decodeWireEnvelope(Buffer.from([0x30, ...Array(10).fill(0xff), 0x01]))).toThrow(
      /invalid varint/,
    );
    // A time no JavaScript number holds exactly.
    const w = new BinaryWriter();
    w.uint32(56).int64(2n ** 60n);
    expect(() => decodeWireEnvelope(w.finish())).toThrow(/not a safe integer/);
  });

  it('refuses to write what the envelope cannot hold', () => {
    const base: WireEnvelope = {
      id: 'm',
      type: 't',
      txId: 'x',
      workflowId: 'w',
      timeMs: 0,
      headers: {},
      payload: new Uint8Array(),
    };
    for (const attempt of [-1, 1.5, 2 ** 32, Number.NaN]) {
      expect(() => encodeWireEnvelope({ ...base, attempt })).toThrow(/invalid uint32/);
    }
    for (const timeMs of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 63, 2 ** 64]) {
      expect(() => encodeWireEnvelope({ ...base, timeMs })).toThrow(/invalid int64/);
    }
  });
});

/** Where the field starting at `at` ends (this message has only varint and length-delimited fields). */
function nextFieldEnd(bytes: Uint8Array, at: number): number {
  const readVarint = (): number => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[at++] as number;
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  const tag = readVarint();
  const value = readVarint();
  return (tag & 7) === 0 ? at : at + value;
}
