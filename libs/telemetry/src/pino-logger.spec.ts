import { Writable } from 'node:stream';
import { createPinoLogger } from './pino-logger';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('createPinoLogger', () => {
  it('writes structured JSON lines with child bindings and the level filter', () => {
    const out = capture();
    const logger = createPinoLogger({ level: 'info', base: { service: 'test' }, destination: out.stream });
    logger.child({ txId: 't-1' }).info({ step: 'a' }, 'step started');
    logger.debug({}, 'hidden');
    const [line, ...rest] = out.lines();
    expect(rest).toHaveLength(0);
    expect(line).toMatchObject({ service: 'test', txId: 't-1', step: 'a', msg: 'step started', level: 30 });
  });

  it('redacts secrets', () => {
    const out = capture();
    const logger = createPinoLogger({ destination: out.stream });
    logger.warn({ apiKey: 'sk-123', config: { password: 'hunter2' } }, 'config');
    const [line] = out.lines();
    expect(JSON.stringify(line)).not.toContain('sk-123');
    expect(JSON.stringify(line)).not.toContain('hunter2');
  });
});
