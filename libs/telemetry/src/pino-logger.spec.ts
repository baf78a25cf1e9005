import { Writable } from 'node:stream';
import { duplicateJsonKeys } from '@multiagents/testing';
import { createPinoLogger, LogFormat } from './pino-logger';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    stream,
    text: () => chunks.join(''),
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

  it("writes each key once per line: the most specific value wins, pino's own keys are kept apart", () => {
    const out = capture();
    const logger = createPinoLogger({
      base: { service: 'orchestrator' },
      destination: out.stream,
      format: 'json',
    });
    const grpc = logger.child({ component: 'grpc' });
    // Services hand their child loggers on, and libraries add their own component.
    const bus = grpc.child({ component: 'event-bus', topic: 'results' });
    bus.info({ topic: 'events', attempt: 1 }, 'subscribed');
    logger.child({ service: 'worker-manager' }).warn({}, 'renamed');
    grpc.info({ msg: 'a field called msg', level: 'custom', time: 5, port: 1 }, 'listening');
    bus.child({ msg: 'bound' }).error({ component: 'nested' }, 'failed');
    const raw = out.text().trim().split('\n');
    expect(raw).toHaveLength(4);
    for (const line of raw) expect(duplicateJsonKeys(line)).toEqual([]);
    const [subscribed, renamed, listening, failed] = out.lines();
    expect(subscribed).toMatchObject({
      service: 'orchestrator',
      component: 'event-bus',
      topic: 'events',
      attempt: 1,
    });
    expect(renamed).toMatchObject({ service: 'worker-manager', msg: 'renamed' });
    expect(listening).toMatchObject({
      component: 'grpc',
      msg: 'listening',
      level: 30,
      msg_: 'a field called msg',
      level_: 'custom',
      time_: 5,
      port: 1,
    });
    expect(failed).toMatchObject({
      component: 'nested',
      topic: 'results',
      msg_: 'bound',
      msg: 'failed',
      level: 50,
    });
  });

  it('keeps secrets out of lines written through merged bindings too', () => {
    const out = capture();
    const logger = createPinoLogger({ base: { service: 's' }, destination: out.stream, format: 'json' });
    logger.child({ component: 'a' }).warn({ component: 'b', config: { password: 'hunter2' } }, 'config');
    expect(out.text()).not.toContain('hunter2');
  });

  it('writes readable lines, not JSON, in the pretty format', () => {
    const out = capture();
    const logger = createPinoLogger({
      base: { service: 'orchestrator' },
      destination: out.stream,
      format: LogFormat.Pretty,
    });
    logger.child({ component: 'grpc' }).info({ port: 50051 }, 'gRPC control plane listening');
    const text = out.text();
    expect(text).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: orchestrator\/grpc: gRPC control plane listening \{"port":50051\}\n$/,
    );
  });

  it('writes JSON to any destination unless told otherwise', () => {
    const out = capture();
    createPinoLogger({ destination: out.stream }).info({}, 'hello');
    expect(out.lines()[0]).toMatchObject({ msg: 'hello' });
  });
});
