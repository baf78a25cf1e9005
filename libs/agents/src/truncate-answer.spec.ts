import fc from 'fast-check';
import { truncateAnswer } from './truncate-answer';

const bytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value), 'utf8');

describe('truncateAnswer', () => {
  it('leaves an answer within the limit alone', () => {
    const answer = { answer: 'Paris', sources: ['atlas'] };
    expect(truncateAnswer(answer, 1_000)).toEqual({ answer, truncated: false, truncatedFields: [] });
  });

  it('cuts the longest text first, keeps short fields whole, and does not touch its input', () => {
    const answer = { answer: 'x'.repeat(5_000), title: 'Short', sources: ['a', 'b'] };
    const cut = truncateAnswer(answer, 1_024);
    expect(cut.truncated).toBe(true);
    expect(cut.truncatedFields).toEqual(['answer']);
    expect(bytes(cut.answer)).toBeLessThanOrEqual(1_024);
    expect(cut.answer['title']).toBe('Short');
    expect(cut.answer['sources']).toEqual(['a', 'b']);
    expect((cut.answer['answer'] as string).length).toBeGreaterThan(900);
    expect(answer.answer).toHaveLength(5_000);
  });

  it('never cuts inside a character', () => {
    const cut = truncateAnswer({ answer: '🚀é'.repeat(1_000) }, 301);
    const text = cut.answer['answer'] as string;
    expect(text).not.toContain('\uFFFD');
    expect(Buffer.from(text, 'utf8').toString('utf8')).toBe(text);
    expect(bytes(cut.answer)).toBeLessThanOrEqual(301);
  });

  it('drops array items when there is no text left to cut, keeping the array an array', () => {
    const cut = truncateAnswer({ scores: Array.from({ length: 1_000 }, (_, i) => i) }, 300);
    expect(Array.isArray(cut.answer['scores'])).toBe(true);
    expect(bytes(cut.answer)).toBeLessThanOrEqual(300);
    expect(cut.truncatedFields).toEqual(['scores']);
  });

  it('always fits, keeps every field and its type', () => {
    fc.assert(
      fc.property(
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__'),
          fc.oneof(
            fc.string({ maxLength: 2_000 }),
            fc.array(fc.string({ maxLength: 200 }), { maxLength: 30 }),
          ),
          { maxKeys: 6 },
        ),
        fc.integer({ min: 256, max: 4_096 }),
        (answer, maxBytes) => {
          const cut = truncateAnswer(answer, maxBytes);
          if (bytes(answer) > maxBytes) expect(bytes(cut.answer)).toBeLessThanOrEqual(maxBytes);
          expect(cut.truncated).toBe(bytes(answer) > maxBytes);
          expect(Object.keys(cut.answer).sort()).toEqual(Object.keys(answer).sort());
          for (const key of Object.keys(answer)) {
            expect(Array.isArray(cut.answer[key])).toBe(Array.isArray(answer[key]));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
