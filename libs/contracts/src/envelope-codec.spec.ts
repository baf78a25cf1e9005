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
import { ErrorCode, PoisonMessageError, ValidationError } from './errors';
import { EventType } from './event-types';
import { createKeyRing } from './key-ring';

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

  describe('signing with key ids (rotation)', () => {
    const k1 = Buffer.alloc(32, 1);
    const k2 = Buffer.alloc(32, 2);
    const old = createKeyRing([['k1', k1]]);
    const rotating = createKeyRing([
      ['k2', k2],
      ['k1', k1],
    ]);
    const rotated = createKeyRing([['k2', k2]]);

    it('round-trips and carries the key id next to the signature', () => {
      const bytes = encodeEnvelope(full, { keys: rotating });
      expect(decodeEnvelope(bytes, { keys: rotating })).toEqual(full);
      expect(EnvelopeMessage.decode(bytes).headers[SIGNATURE_HEADER]).toMatch(/^k2:[0-9a-f]{64}$/);
      // Still the wire trick: the unsigned encoding, then one trailing headers entry.
      const unsigned = encodeEnvelope(full);
      expect(Buffer.from(bytes.subarray(0, unsigned.length)).equals(Buffer.from(unsigned))).toBe(true);
    });

    it('the MAC covers the body and the key id', () => {
      const bytes = encodeEnvelope(minimal, { keys: old });
      const hex = Buffer.from(bytes.subarray(bytes.length - 64)).toString('latin1');
      expect(
        createHmac('sha256', k1)
          .update(bytes.subarray(0, bytes.length - 64))
          .digest('hex'),
      ).toBe(hex);
    });

    it('rotates without a stop: old messages still verify, new ones use the new key', () => {
      const before = encodeEnvelope(full, { keys: old });
      // Step 1: everyone accepts k2 while still signing with k1.
      const accepting = createKeyRing([
        ['k1', k1],
        ['k2', k2],
      ]);
      expect(decodeEnvelope(before, { keys: accepting })).toEqual(full);
      expect(decodeEnvelope(encodeEnvelope(full, { keys: rotating }), { keys: accepting })).toEqual(full);
      // Step 2: everyone signs with k2; what k1 signed is still accepted.
      expect(decodeEnvelope(before, { keys: rotating })).toEqual(full);
      // Step 3: k1 retired.
      const error = rejectionOf(() => decodeEnvelope(before, { keys: rotated }));
      expect(error.details).toMatchObject({ reason: EnvelopeRejection.UnknownKey, keyId: 'k1' });
    });

    it('key ids of every length from 1 to 32 are found from the end', () => {
      for (let length = 1; length <= 32; length++) {
        const id = 'B'.repeat(length);
        const ring = createKeyRing([[id, k1]]);
        expect(decodeEnvelope(encodeEnvelope(minimal, { keys: ring }), { keys: ring })).toEqual(minimal);
      }
    });

    it('rejects a wrong key under a known id, a changed key id, and unsigned or legacy messages', () => {
      const forged = encodeEnvelope(full, { keys: createKeyRing([['k1', k2]]) });
      expect(rejectionOf(() => decodeEnvelope(forged, { keys: old })).details).toMatchObject({
        reason: EnvelopeRejection.BadSignature,
      });
      // Relabel a k2 signature as k1 (same length): the MAC covers the id.
      const relabelled = Buffer.from(encodeEnvelope(full, { keys: rotated }));
      relabelled.write('k1', relabelled.length - 64 - 3, 'latin1');
      expect(rejectionOf(() => decodeEnvelope(relabelled, { keys: rotating })).details).toMatchObject({
        reason: EnvelopeRejection.BadSignature,
      });
      expect(rejectionOf(() => decodeEnvelope(encodeEnvelope(full), { keys: old })).details).toMatchObject({
        reason: EnvelopeRejection.Unsigned,
      });
      const legacy = encodeEnvelope(full, { signingKey: k1 });
      expect(rejectionOf(() => decodeEnvelope(legacy, { keys: old })).details).toMatchObject({
        reason: EnvelopeRejection.Unsigned,
      });
    });

    it('verificationKeys narrows what decoding accepts: a worker-manager takes commands from orchestrators only', () => {
      const orchestratorRing = createKeyRing([['orch-1', k1]]);
      const workerRing = createKeyRing([['wm-1', k2]]);
      const workerManager = { keys: workerRing, verificationKeys: orchestratorRing.keys };
      // A command the orchestrator signed is accepted...
      const command = encodeEnvelope(full, { keys: orchestratorRing });
      expect(decodeEnvelope(command, workerManager)).toEqual(full);
      // ...one a worker-manager signed (its own key, or a peer's) is not, and neither is an unsigned one.
      const fromWorker = encodeEnvelope(full, workerManager);
      expect(EnvelopeMessage.decode(fromWorker).headers[SIGNATURE_HEADER]).toMatch(/^wm-1:/);
      expect(rejectionOf(() => decodeEnvelope(fromWorker, workerManager)).details).toMatchObject({
        reason: EnvelopeRejection.UnknownKey,
        keyId: 'wm-1',
      });
      expect(rejectionOf(() => decodeEnvelope(encodeEnvelope(full), workerManager)).details).toMatchObject({
        reason: EnvelopeRejection.Unsigned,
      });
      // A consumer that only verifies.
      expect(decodeEnvelope(command, { verificationKeys: orchestratorRing.keys })).toEqual(full);
      expect(() =>
        decodeEnvelope(command, { verificationKeys: orchestratorRing.keys, signingKey: k1 }),
      ).toThrow(ValidationError);
    });

    it('refuses options with both signingKey and keys', () => {
      expect(() => encodeEnvelope(full, { keys: old, signingKey: k1 })).toThrow(ValidationError);
      expect(() => decodeEnvelope(encodeEnvelope(full), { keys: old, signingKey: k1 })).toThrow(
        ValidationError,
      );
    });

    it('fuzz: any edit of a signed message is refused before parsing, never crashes (10,000 cases)', () => {
      const signed = encodeEnvelope(full, { keys: rotating });
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat({ max: signed.length - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          fc.nat({ max: signed.length }),
          (edits, cut) => {
            const bytes = Uint8Array.from(signed);
            for (const [at, value] of edits) bytes[at] = value;
            const edited = bytes.subarray(0, cut);
            const same = Buffer.from(edited).equals(Buffer.from(signed));
            try {
              const decoded = decodeEnvelope(edited, { keys: rotating });
              expect(same).toBe(true);
              expect(decoded).toEqual(full);
            } catch (err) {
              expect(same).toBe(false);
              expect(err).toBeInstanceOf(PoisonMessageError);
            }
          },
        ),
        { numRuns: 10_000 },
      );
    });

    it('fuzz: arbitrary envelopes round-trip and arbitrary bytes only ever poison (10,000 cases)', () => {
      const envelopes = fc.record({
        id: fc.string({ minLength: 1 }),
        type: fc.constantFrom(...Object.values(EventType)),
        txId: fc.string({ minLength: 1 }),
        workflowId: fc.string({ minLength: 1 }),
        time: fc.maxSafeNat(),
        headers: fc.dictionary(
          fc.string().filter((key) => key !== SIGNATURE_HEADER && key !== '__proto__'),
          fc.string(),
          { maxKeys: 3 },
        ),
        payload: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.parse(JSON.stringify(value)) as unknown),
      });
      fc.assert(
        fc.property(envelopes, fc.uint8Array({ maxLength: 300 }), (envelope, noise) => {
          expect(decodeEnvelope(encodeEnvelope(envelope, { keys: rotating }), { keys: rotating })).toEqual(
            envelope,
          );
          try {
            decodeEnvelope(noise, { keys: rotating });
          } catch (err) {
            expect(err).toBeInstanceOf(PoisonMessageError);
          }
        }),
        { numRuns: 10_000 },
      );
    });
  });

  describe('encrypted payloads (payloadKeys)', () => {
    const p1 = createKeyRing([['p1', Buffer.alloc(32, 3)]]);
    const p2 = createKeyRing([
      ['p2', Buffer.alloc(32, 4)],
      ['p1', Buffer.alloc(32, 3)],
    ]);
    const secret = { ...full, payload: { card: '4111111111111111', nested: { a: [1, 2] } } };

    it('round-trips, and the bytes on the wire hold no plaintext', () => {
      const bytes = encodeEnvelope(secret, { payloadKeys: p1 });
      expect(Buffer.from(bytes).includes('4111111111111111')).toBe(false);
      expect(EnvelopeMessage.decode(bytes).payload[0]).toBe(0);
      expect(decodeEnvelope(bytes, { payloadKeys: p1 })).toEqual(secret);
      // Signed and encrypted together.
      const both = { keys: createKeyRing([['s', Buffer.alloc(32, 5)]]), payloadKeys: p1 };
      expect(decodeEnvelope(encodeEnvelope(secret, both), both)).toEqual(secret);
    });

    it('rotates: what the old key encrypted still decrypts, new payloads use the new key', () => {
      const old = encodeEnvelope(secret, { payloadKeys: p1 });
      expect(decodeEnvelope(old, { payloadKeys: p2 })).toEqual(secret);
      const fresh = encodeEnvelope(secret, { payloadKeys: p2 });
      expect(rejectionOf(() => decodeEnvelope(fresh, { payloadKeys: p1 })).details).toMatchObject({
        reason: EnvelopeRejection.Undecryptable,
        keyId: 'p2',
      });
    });

    it('refuses a plaintext payload, a tampered one, one moved to another envelope, and one without keys', () => {
      expect(
        rejectionOf(() => decodeEnvelope(encodeEnvelope(secret), { payloadKeys: p1 })).details,
      ).toMatchObject({
        reason: EnvelopeRejection.Unencrypted,
      });
      const message = EnvelopeMessage.decode(encodeEnvelope(secret, { payloadKeys: p1 }));
      const tampered = Buffer.from(message.payload);
      tampered.writeUInt8((tampered.at(-20) ?? 0) ^ 1, tampered.length - 20);
      const reencode = (patch: Partial<EnvelopeMessage>): Uint8Array =>
        EnvelopeMessage.encode({ ...message, ...patch }).finish();
      for (const bytes of [
        reencode({ payload: tampered }),
        reencode({ txId: 'another-run' }),
        reencode({ id: 'x' }),
      ]) {
        expect(rejectionOf(() => decodeEnvelope(bytes, { payloadKeys: p1 })).details).toMatchObject({
          reason: EnvelopeRejection.Undecryptable,
        });
      }
      expect(rejectionOf(() => decodeEnvelope(reencode({}))).details).toMatchObject({
        reason: EnvelopeRejection.Undecryptable,
      });
    });

    it('fuzz: arbitrary payloads round-trip encrypted, arbitrary bytes only ever poison (10,000 cases)', () => {
      fc.assert(
        fc.property(fc.jsonValue({ maxDepth: 4 }), fc.uint8Array({ maxLength: 200 }), (payload, junk) => {
          const envelope = { ...full, payload };
          const bytes = encodeEnvelope(envelope, { payloadKeys: p2 });
          expect(decodeEnvelope(bytes, { payloadKeys: p2 })).toEqual(
            decodeEnvelope(encodeEnvelope(envelope)),
          );
          const forged = EnvelopeMessage.encode({
            ...EnvelopeMessage.decode(bytes),
            payload: Buffer.concat([Buffer.from([0]), junk]),
          }).finish();
          try {
            decodeEnvelope(forged, { payloadKeys: p2 });
          } catch (err) {
            expect(err).toBeInstanceOf(PoisonMessageError);
          }
        }),
        { numRuns: 10_000 },
      );
    });
  });
});
