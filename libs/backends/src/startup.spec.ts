import { AlreadyExistsError, MultiAgentsError, ErrorCode, ValidationError } from '@multiagents/contracts';
import {
  describeStartupFailure,
  listenOrExplain,
  maskUrl,
  startWhenBrokerAllows,
  waitUntilReachable,
} from './startup';

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, child: () => silent };

describe('maskUrl', () => {
  it('hides passwords, keeps the rest, and masks every address of a list', () => {
    expect(maskUrl('redis://app:s3cret@host:6379/0')).toBe('redis://app:***@host:6379/0');
    expect(maskUrl('redis://:s3cret@127.0.0.1:6379')).toBe('redis://:***@127.0.0.1:6379');
    expect(maskUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(maskUrl('nats://u:p@a:4222, nats://u:q@b:4222')).toBe('nats://u:***@a:4222,nats://u:***@b:4222');
    expect(maskUrl('nats://averylongtokenvalue0123456789@a:4222')).toBe('nats://***@a:4222');
    // A NATS token of any length or alphabet (short, base64 with an escaped '=').
    expect(maskUrl('nats://s3cr3t@nats:4222')).toBe('nats://***@nats:4222');
    expect(maskUrl('tls://dG9rZW4%3D@nats:4222')).toBe('tls://***@nats:4222');
    // A Redis user without a password names an ACL user, not a secret.
    expect(maskUrl('redis://app@host:6379')).toBe('redis://app@host:6379');
  });
});

describe('describeStartupFailure', () => {
  it('lists a ValidationError one problem per line with exit code 78', () => {
    expect(describeStartupFailure('svc', new ValidationError('bad', ['a', 'b']))).toEqual({
      text: 'svc: bad:\n  - a\n  - b\n',
      exitCode: 78,
    });
  });

  it('keeps the stack only for the unexpected', () => {
    const { text, exitCode } = describeStartupFailure('svc', new Error('boom'));
    expect(exitCode).toBe(1);
    expect(text).toContain('svc failed to start: Error: boom');
  });
});

describe('listenOrExplain', () => {
  it('turns an address in use into a configuration error naming the port and variable', async () => {
    const inUse = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
    await expect(listenOrExplain(() => Promise.reject(inUse), 8080, 'HTTP_PORT')).rejects.toMatchObject({
      problems: [expect.stringContaining('HTTP_PORT=8080: the port is in use')],
    });
  });
});

describe('waitUntilReachable', () => {
  it('tries again with growing delays until the probe answers', async () => {
    let calls = 0;
    const delays: number[] = [];
    const logger = {
      ...silent,
      warn: (fields: Record<string, unknown>) => void delays.push(fields['nextDelayMs'] as number),
    };
    const ok = await waitUntilReachable(
      async () => {
        if (++calls < 4) throw new Error('down');
      },
      { logger, address: 'redis://:pw@h:1', initialDelayMs: 1, maxDelayMs: 3 },
    );
    expect(ok).toBe(true);
    expect(delays).toEqual([1, 2, 3]);
  });

  it('gives up when told to stop', async () => {
    const stop = new AbortController();
    stop.abort();
    expect(
      await waitUntilReachable(() => Promise.reject(new Error('down')), {
        logger: silent,
        address: 'x',
        signal: stop.signal,
      }),
    ).toBe(false);
  });
});

describe('startWhenBrokerAllows', () => {
  it('starts again after the broker refused or timed out, logging what it was doing', async () => {
    const lines: string[] = [];
    const logger = { ...silent, warn: (_: unknown, msg: string) => void lines.push(msg) };
    let tries = 0;
    const started = await startWhenBrokerAllows(
      'subscribing',
      async () => {
        tries += 1;
        if (tries === 1) throw new Error('TIMEOUT');
        if (tries === 2) throw new MultiAgentsError(ErrorCode.Unavailable, 'no leader', { retryable: true });
      },
      { logger, initialDelayMs: 1 },
    );
    expect(started).toBe(true);
    expect(tries).toBe(3);
    expect(lines).toEqual([
      'subscribing: the broker refused or timed out; retrying',
      'subscribing: the broker refused or timed out; retrying',
    ]);
  });

  it('throws a configuration error at once instead of waiting', async () => {
    for (const err of [
      new ValidationError('definition', ['steps: required']),
      new AlreadyExistsError('x@1'),
    ]) {
      let tries = 0;
      await expect(
        startWhenBrokerAllows(
          'registering',
          async () => {
            tries += 1;
            throw err;
          },
          { logger: silent, initialDelayMs: 1 },
        ),
      ).rejects.toBe(err);
      expect(tries).toBe(1);
    }
  });
});
