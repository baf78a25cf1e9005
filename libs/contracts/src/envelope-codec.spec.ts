import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { Envelope as EnvelopeMessage } from '@multiagents/proto';
import {
  decodeEnvelope,
  encodeEnvelope,
  EnvelopeRejection,
  MAX_ENVELOPE_BYTES,
  SIGNATURE_HEADER,
} from './envelope-codec';
import type { Envelope } from './envelope';
import { ErrorCode, PoisonMessageError } from './errors';
import { EventType } from './event-types';

const full: Envelope = {
  id: 'msg-1',
  type: EventType.StepCommand,
  txId: 'tx-42',
  workflowId: 'order_processing',
  step: 'charge_payment',
  attempt: 3,
  time: 1_717_171_717_171,
  headers: {
    traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    tracestate: 'vendor=ünïcode',
  },
  payload: {
    commandId: 'tx-42:charge_payment:3',
    worker: 'payment.charge',
    input: { amount: 12.5, items: [1, 2, 3], note: 'naïve ✓ 🚀', nothing: null, nested: { ok: true } },
    idempotencyKey: 'tx-42:charge_payment',
    compensation: false,
  },
};

const minimal: Envelope = {
  id: 'msg-2',
  type: EventType.WorkflowCompleted,
  txId: 'tx-1',
  workflowId: 'wf',
  time: 5,
  headers: {},
  payload: { ok: true },
};

/** Encodes a raw protobuf Envelope, bypassing the domain encoder (to build malformed messages). */
function rawEnvelope(fields: Partial<EnvelopeMessage>): Uint8Array {
  const base: EnvelopeMessage = {
    id: 'm',
    type: EventType.StepResult,
    txId: 't',
    workflowId: 'w',
    timeMs: 1,
    headers: {},
    payload: Buffer.from('{}'),
  };
  return EnvelopeMessage.encode({ ...base, ...fields }).finish();
}

/** Runs `fn`, expects a PoisonMessageError and returns it. */
function rejectionOf(fn: () => unknown): PoisonMessageError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(PoisonMessageError);
  const error = thrown as PoisonMessageError;
  expect(error.code).toBe(ErrorCode.PoisonMessage);
  expect(error.retryable).toBe(false);
  return error;
}

describe('encodeEnvelope / decodeEnvelope', () => {
  it('round-trips every field', () => {
    const bytes = encodeEnvelope(full);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(decodeEnvelope(bytes)).toEqual(full);
  });

  it('writes protobuf that the generated Envelope message reads, payload as UTF-8 JSON', () => {
    const message = EnvelopeMessage.decode(encodeEnvelope(full));
    expect(message).toMatchObject({
      id: full.id,
      type: full.type,
      txId: full.txId,
      workflowId: full.workflowId,
      step: full.step,
      attempt: full.attempt,
      timeMs: full.time,
      headers: full.headers,
    });
    expect(JSON.parse(message.payload.toString('utf8'))).toEqual(full.payload);
  });

  it('keeps absent optional fields absent, not 0 or ""', () => {
    const decoded = decodeEnvelope(encodeEnvelope(minimal));
    expect(decoded).toEqual(minimal);
    expect(decoded).not.toHaveProperty('step');
    expect(decoded).not.toHaveProperty('attempt');
    expect(decoded.headers).toEqual({});
  });

  it('keeps present zero values present', () => {
    const decoded = decodeEnvelope(encodeEnvelope({ ...minimal, step: '', attempt: 0, time: 0 }));
    expect(decoded).toHaveProperty('step', '');
    expect(decoded).toHaveProperty('attempt', 0);
    expect(decoded.time).toBe(0);
  });

  it('round-trips scalar and empty payloads; undefined stays undefined', () => {
    for (const payload of [null, 0, 'text', false, [], {}, [{ a: [null] }]]) {
      expect(decodeEnvelope(encodeEnvelope({ ...minimal, payload })).payload).toEqual(payload);
    }
    expect(decodeEnvelope(encodeEnvelope({ ...minimal, payload: undefined })).payload).toBeUndefined();
  });

  it('round-trips arbitrary envelopes', () => {
    const envelopes = fc.record(
      {
        id: fc.string({ minLength: 1, unit: 'binary' }),
        type: fc.constantFrom(...Object.values(EventType)),
        txId: fc.string({ minLength: 1 }),
        workflowId: fc.string({ minLength: 1 }),
        step: fc.string({ unit: 'binary' }),
        attempt: fc.nat({ max: 0xffff_ffff }),
        time: fc.maxSafeInteger(),
        headers: fc.dictionary(
          fc.string().filter((key) => key !== SIGNATURE_HEADER && key !== '__proto__'),
          fc.string(),
        ),
        payload: fc.jsonValue().map((value) => JSON.parse(JSON.stringify(value)) as unknown),
      },
      { requiredKeys: ['id', 'type', 'txId', 'workflowId', 'time', 'headers', 'payload'] },
    );
    fc.assert(
      fc.property(envelopes, (envelope) => {
        expect(decodeEnvelope(encodeEnvelope(envelope))).toEqual(envelope);
      }),
      { numRuns: 300 },
    );
  });

  describe('rejects malformed messages with PoisonMessageError', () => {
    it('bytes that are not a protobuf Envelope', () => {
      // Field 1 (id), length-delimited, claims 100 bytes but 1 follows.
      const truncated = rejectionOf(() => decodeEnvelope(Uint8Array.from([0x0a, 100, 0x41])));
      expect(truncated.message).toMatch(/not a protobuf Envelope/);
      expect(truncated.details).toMatchObject({ reason: EnvelopeRejection.Malformed });
      expect(truncated.cause).toBeInstanceOf(Error);
      // Wire type 7 does not exist.
      const badWireType = rejectionOf(() => decodeEnvelope(Uint8Array.from([0x0f, 0x00])));
      expect(badWireType.details).toMatchObject({ reason: EnvelopeRejection.Malformed });
    });

    it('JSON instead of protobuf', () => {
      const error = rejectionOf(() => decodeEnvelope(Buffer.from(JSON.stringify(full))));
      expect(error.message).toMatch(/not a protobuf Envelope|envelope has no/);
    });

    it('missing id, type, txId or workflowId, naming every missing field', () => {
      for (const field of ['id', 'type', 'txId', 'workflowId'] as const) {
        const error = rejectionOf(() => decodeEnvelope(rawEnvelope({ [field]: '' })));
        expect(error.message).toBe(`envelope has no ${field}`);
        expect(error.details).toMatchObject({ reason: EnvelopeRejection.MissingFields, missing: [field] });
      }
      const empty = rejectionOf(() => decodeEnvelope(new Uint8Array(0)));
      expect(empty.message).toBe('envelope has no id, type, txId, workflowId');
    });

    it('an unknown type', () => {
      const error = rejectionOf(() => decodeEnvelope(rawEnvelope({ id: 'e9', type: 'step.exploded' })));
      expect(error.message).toBe('envelope e9 has unknown type "step.exploded"');
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.UnknownType, id: 'e9' });
    });

    it('a payload that is not valid JSON', () => {
      const error = rejectionOf(() =>
        decodeEnvelope(rawEnvelope({ id: 'e7', payload: Buffer.from('{"commandId": ') })),
      );
      expect(error.message).toMatch(/^envelope e7 \(step\.result\) has a payload that is not UTF-8 JSON: /);
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.BadPayload, id: 'e7' });
    });

    it('a payload that is not valid UTF-8', () => {
      // "{"a":"<0xff>"}": JSON.parse would accept the U+FFFD a lenient decoder puts there.
      const payload = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff]), Buffer.from('"}')]);
      const error = rejectionOf(() => decodeEnvelope(rawEnvelope({ payload })));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.BadPayload });
    });

    it('more bytes than MAX_ENVELOPE_BYTES, before parsing them', () => {
      expect(MAX_ENVELOPE_BYTES).toBe(1024 * 1024);
      const error = rejectionOf(() => decodeEnvelope(new Uint8Array(MAX_ENVELOPE_BYTES + 1)));
      expect(error.message).toBe(
        `envelope is ${MAX_ENVELOPE_BYTES + 1} bytes, more than the 1048576-byte limit`,
      );
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.TooLarge });
    });

    it('more bytes than a configured maxBytes', () => {
      const bytes = encodeEnvelope(full);
      expect(decodeEnvelope(bytes, { maxBytes: bytes.length })).toEqual(full);
      const error = rejectionOf(() => decodeEnvelope(bytes, { maxBytes: bytes.length - 1 }));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.TooLarge });
    });

    it('random bytes: decoding never throws anything but PoisonMessageError', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
          try {
            decodeEnvelope(bytes);
          } catch (err) {
            expect(err).toBeInstanceOf(PoisonMessageError);
          }
          try {
            decodeEnvelope(bytes, { signingKey: 'k', maxBytes: 300 });
          } catch (err) {
            expect(err).toBeInstanceOf(PoisonMessageError);
          }
        }),
        { numRuns: 500 },
      );
    });

    it('corrupted valid messages: decoding either succeeds or throws PoisonMessageError', () => {
      const valid = encodeEnvelope(full);
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.nat({ max: valid.length }),
          (edits, cut) => {
            const bytes = Uint8Array.from(valid);
            for (const [at, value] of edits) bytes[at] = value;
            try {
              decodeEnvelope(bytes.subarray(0, cut));
            } catch (err) {
              expect(err).toBeInstanceOf(PoisonMessageError);
            }
          },
        ),
        { numRuns: 500 },
      );
    });
  });

  describe('encoding refuses envelopes nobody could decode', () => {
    it('larger than maxBytes: ResourceExhaustedError', () => {
      const big = { ...minimal, payload: 'x'.repeat(MAX_ENVELOPE_BYTES) };
      expect(() => encodeEnvelope(big)).toThrow(
        expect.objectContaining({ code: ErrorCode.ResourceExhausted }),
      );
      expect(() => encodeEnvelope(minimal, { maxBytes: 10 })).toThrow(/more than the 10-byte limit/);
    });

    it('a payload that is not JSON-serialisable: ValidationError', () => {
      const cyclic: Record<string, unknown> = {};
      cyclic['self'] = cyclic;
      expect(() => encodeEnvelope({ ...minimal, payload: cyclic })).toThrow(
        expect.objectContaining({ code: ErrorCode.InvalidArgument }),
      );
      expect(() => encodeEnvelope({ ...minimal, payload: { n: 1n } })).toThrow(
        /cannot encode envelope msg-2/,
      );
    });
  });

  describe('signing', () => {
    const signingKey = 'super-secret-key';

    it('round-trips, and the signature header is not part of the decoded envelope', () => {
      const bytes = encodeEnvelope(full, { signingKey });
      const decoded = decodeEnvelope(bytes, { signingKey });
      expect(decoded).toEqual(full);
      expect(decoded.headers).not.toHaveProperty(SIGNATURE_HEADER);
    });

    it('works with binary keys too', () => {
      const key = Buffer.from('00ff10ee', 'hex');
      expect(decodeEnvelope(encodeEnvelope(minimal, { signingKey: key }), { signingKey: key })).toEqual(
        minimal,
      );
    });

    it('is the hex HMAC-SHA256 of the unsigned encoding, carried as the x-signature header', () => {
      const unsigned = encodeEnvelope(full);
      const signed = encodeEnvelope(full, { signingKey });
      const expected = createHmac('sha256', signingKey).update(unsigned).digest('hex');
      // Any protobuf decoder sees the signature as an ordinary header.
      expect(EnvelopeMessage.decode(signed).headers[SIGNATURE_HEADER]).toBe(expected);
      expect(Buffer.from(signed.subarray(0, unsigned.length)).equals(Buffer.from(unsigned))).toBe(true);
      // Deterministic: the same envelope gives the same bytes.
      expect(Buffer.from(encodeEnvelope(full, { signingKey })).equals(Buffer.from(signed))).toBe(true);
    });

    it('decodes a signed message without a key (the signature is not checked and not returned)', () => {
      const decoded = decodeEnvelope(encodeEnvelope(full, { signingKey }));
      expect(decoded).toEqual(full);
    });

    it('ignores an x-signature header already in the envelope (re-signing a decoded message)', () => {
      const stale = { ...full, headers: { ...full.headers, [SIGNATURE_HEADER]: 'f'.repeat(64) } };
      expect(decodeEnvelope(encodeEnvelope(stale, { signingKey }), { signingKey })).toEqual(full);
      expect(decodeEnvelope(encodeEnvelope(stale))).toEqual(full);
    });

    it('rejects a tampered payload', () => {
      const bytes = Buffer.from(encodeEnvelope(full, { signingKey }));
      const at = bytes.indexOf('payment.charge');
      expect(at).toBeGreaterThan(0);
      bytes.write('pAyment', at, 'latin1');
      const error = rejectionOf(() => decodeEnvelope(bytes, { signingKey }));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.BadSignature });
      expect(error.message).toMatch(/x-signature does not match/);
    });

    it('rejects a forged signature before parsing the payload', () => {
      // Bad JSON would be BadPayload if the payload were parsed first.
      const forged = encodeEnvelope(full, { signingKey: 'attacker' });
      const bytes = Buffer.from(forged);
      bytes.write('{', bytes.indexOf('{"commandId"') + 1, 'latin1');
      const error = rejectionOf(() => decodeEnvelope(bytes, { signingKey }));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.BadSignature });
    });

    it('rejects a message signed with another key', () => {
      const bytes = encodeEnvelope(full, { signingKey: 'other-key' });
      const error = rejectionOf(() => decodeEnvelope(bytes, { signingKey }));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.BadSignature });
    });

    it('rejects a message without a signature', () => {
      const error = rejectionOf(() => decodeEnvelope(encodeEnvelope(full), { signingKey }));
      expect(error.message).toMatch(/not signed/);
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.Unsigned });
      rejectionOf(() => decodeEnvelope(new Uint8Array(0), { signingKey }));
    });

    it('rejects a signature header that is not the last entry', () => {
      const signature = createHmac('sha256', signingKey).update(encodeEnvelope(full)).digest('hex');
      const bytes = rawEnvelope({
        ...EnvelopeMessage.decode(encodeEnvelope(full)),
        headers: { [SIGNATURE_HEADER]: signature },
      });
      const error = rejectionOf(() => decodeEnvelope(bytes, { signingKey }));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.Unsigned });
    });

    it('rejects a truncated signature', () => {
      const bytes = encodeEnvelope(full, { signingKey });
      rejectionOf(() => decodeEnvelope(bytes.subarray(0, bytes.length - 1), { signingKey }));
    });
  });
});
