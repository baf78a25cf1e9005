import { ProviderCallRecorder } from './provider-call-recorder';

/** A fetch that answers with `parts` as the body, delivered in exactly those pieces. */
function fakeFetch(parts: readonly string[], init: ResponseInit & { contentType: string }): typeof fetch {
  return async () => {
    const encoder = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of parts) controller.enqueue(encoder.encode(part));
        controller.close();
      },
    });
    return new Response(body, { status: init.status ?? 200, headers: { 'content-type': init.contentType } });
  };
}

const sse = (json: unknown): string => `data: ${JSON.stringify(json)}\n\n`;

describe('ProviderCallRecorder', () => {
  it('reads a streamed answer and its usage from a copy, even with events split across reads', async () => {
    const stream =
      sse({ choices: [{ index: 0, delta: { content: 'answer: Pa' } }] }) +
      sse({ choices: [{ index: 0, delta: { content: 'ris' } }] }) +
      sse({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 4 } }) +
      'data: [DONE]\n\n';
    // Cut in awkward places: inside a JSON payload and inside "data:".
    const parts = [stream.slice(0, 17), stream.slice(17, 70), stream.slice(70, 73), stream.slice(73)];
    const recorder = new ProviderCallRecorder({
      maxContentChars: 1_000,
      fetch: fakeFetch(parts, { contentType: 'text/event-stream' }),
    });
    const response = await recorder.fetch('http://x/v1/chat/completions');
    // The caller reads the body unchanged.
    expect(await response.text()).toBe(stream);
    await recorder.settled();
    expect(recorder.calls).toEqual([
      {
        status: 200,
        content: 'answer: Paris',
        toolCalls: [],
        promptTokens: 12,
        completionTokens: 4,
        usageSeen: true,
      },
    ]);
    expect(recorder.totals()).toEqual({ promptTokens: 12, completionTokens: 4 });
    expect(recorder.lastContent()).toBe('answer: Paris');
  });

  it('reads a plain JSON answer with tool calls', async () => {
    const body = JSON.stringify({
      choices: [
        {
          index: 0,
          message: { content: null, tool_calls: [{ function: { name: 'search', arguments: '{}' } }] },
        },
      ],
      usage: { prompt_tokens: 5, completion_tokens: 1 },
    });
    const recorder = new ProviderCallRecorder({
      maxContentChars: 1_000,
      fetch: fakeFetch([body], { contentType: 'application/json' }),
    });
    await (await recorder.fetch('http://x')).json();
    await recorder.settled();
    expect(recorder.calls[0]).toMatchObject({ toolCalls: ['search'], promptTokens: 5, completionTokens: 1 });
    expect(recorder.lastContent()).toBe('[tool calls: search]');
  });

  it('keeps at most maxContentChars of an answer', async () => {
    const recorder = new ProviderCallRecorder({
      maxContentChars: 5,
      fetch: fakeFetch([sse({ choices: [{ delta: { content: 'abcdefgh' } }] })], {
        contentType: 'text/event-stream',
      }),
    });
    await (await recorder.fetch('http://x')).text();
    await recorder.settled();
    expect(recorder.lastContent()).toBe('abcde');
  });

  it('leaves error responses to the caller, and counts them', async () => {
    const recorder = new ProviderCallRecorder({
      maxContentChars: 100,
      fetch: fakeFetch(['{"error":{}}'], { contentType: 'application/json', status: 503 }),
    });
    expect((await recorder.fetch('http://x')).status).toBe(503);
    expect(recorder.calls).toHaveLength(1);
    expect(recorder.calls[0]!.status).toBe(503);
  });

  it('remembers why a request got no response, but not when it was aborted', async () => {
    const refused = new ProviderCallRecorder({
      maxContentChars: 100,
      fetch: () => Promise.reject(new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } })),
    });
    await expect(refused.fetch('http://x')).rejects.toThrow('fetch failed');
    expect(refused.lastCall()?.networkError).toBe('ECONNREFUSED');

    const controller = new AbortController();
    controller.abort();
    const aborted = new ProviderCallRecorder({
      maxContentChars: 100,
      fetch: () => Promise.reject(new Error('aborted')),
    });
    await expect(aborted.fetch('http://x', { signal: controller.signal })).rejects.toThrow('aborted');
    expect(aborted.lastCall()?.networkError).toBeUndefined();
  });

  it('refuses the call when beforeCall throws (a used-up budget)', async () => {
    let fetched = 0;
    const recorder = new ProviderCallRecorder({
      maxContentChars: 100,
      beforeCall: () => {
        throw new Error('budget used up');
      },
      fetch: async () => (fetched++, new Response('')),
    });
    await expect(recorder.fetch('http://x')).rejects.toThrow('budget used up');
    expect(fetched).toBe(0);
    expect(recorder.calls).toHaveLength(0);
  });
});
