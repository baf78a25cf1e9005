// The fake OpenAI-compatible server, spoken to with plain fetch over loopback.
import { waitFor } from '@multiagents/testing';
import { startFakeLlmServer, type FakeLlmServer, type FakeLlmServerOptions } from './fake-llm-server';

let server: FakeLlmServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(options: FakeLlmServerOptions): Promise<FakeLlmServer> {
  server = await startFakeLlmServer(options);
  return server;
}

function chat(
  url: string,
  body: Record<string, unknown>,
  init: { key?: string; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${init.key ?? 'k'}` },
    body: JSON.stringify({ model: 'fake-model', ...body }),
    ...(init.signal === undefined ? {} : { signal: init.signal }),
  });
}

const question = (text: string) => ({
  messages: [
    { role: 'system', content: 'sys' },
    { role: 'user', content: text },
  ],
});

/** The `data:` payloads of an SSE body, `[DONE]` excluded. */
function events(body: string): Record<string, unknown>[] {
  return body
    .split('\n')
    .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
    .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
}

describe('startFakeLlmServer', () => {
  it('listens on loopback on a free port and answers in Ax’s `name: value` format with usage', async () => {
    const llm = await start({
      script: [{ match: 'capital', fields: { answer: 'Paris', sources: ['a', 'b'] } }],
    });
    expect(llm.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const response = await chat(llm.url, question('What is the capital?'));
    expect(response.status).toBe(200);
    const json = (await response.json()) as {
      object: string;
      choices: { message: { content: string }; finish_reason: string }[];
      usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
    };
    expect(json.object).toBe('chat.completion');
    expect(json.choices[0]!.message.content).toBe('answer: Paris\nsources: ["a","b"]');
    expect(json.choices[0]!.finish_reason).toBe('stop');
    expect(json.usage.total_tokens).toBe(json.usage.prompt_tokens + json.usage.completion_tokens);
    expect(llm.calls).toBe(1);
    expect(llm.requests[0]).toMatchObject({
      index: 0,
      model: 'fake-model',
      stream: false,
      lastUserMessage: 'What is the capital?',
    });
  });

  it('streams content in chunks, then finish_reason, then a usage chunk without choices, then [DONE]', async () => {
    const llm = await start({
      script: [{ text: 'answer: Paris', chunkChars: 4, usage: { promptTokens: 11, completionTokens: 3 } }],
    });
    const response = await chat(llm.url, { ...question('q'), stream: true });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const body = await response.text();
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    const chunks = events(body);
    const deltas = chunks.flatMap((c) =>
      (c['choices'] as { delta: { content?: string } }[]).map((ch) => ch.delta.content ?? ''),
    );
    expect(deltas.join('')).toBe('answer: Paris');
    expect(deltas.filter((d) => d !== '')).toEqual(['answ', 'er: ', 'Pari', 's']);
    const last = chunks.at(-1)!;
    expect(last['choices']).toEqual([]);
    expect(last['usage']).toEqual({ prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
  });

  it('scripts tool calls, streamed as OpenAI does (id and name first, arguments in pieces)', async () => {
    const llm = await start({
      script: [{ toolCalls: [{ name: 'search', arguments: { query: 'capital of France' } }] }],
    });
    const plain = (await (await chat(llm.url, question('q'))).json()) as {
      choices: {
        message: { tool_calls: { id: string; function: { name: string; arguments: string } }[] };
        finish_reason: string;
      }[];
    };
    expect(plain.choices[0]!.finish_reason).toBe('tool_calls');
    expect(plain.choices[0]!.message.tool_calls[0]!.function).toEqual({
      name: 'search',
      arguments: '{"query":"capital of France"}',
    });

    const streamed = events(await (await chat(llm.url, { ...question('q'), stream: true })).text());
    const toolDeltas = streamed.flatMap((c) =>
      (
        c['choices'] as {
          delta: { tool_calls?: { id?: string; function: { name?: string; arguments: string } }[] };
        }[]
      ).flatMap((ch) => ch.delta.tool_calls ?? []),
    );
    expect(toolDeltas[0]).toMatchObject({
      id: expect.any(String),
      function: { name: 'search', arguments: '' },
    });
    expect(toolDeltas.map((t) => t.function.arguments).join('')).toBe('{"query":"capital of France"}');
    expect(toolDeltas.length).toBeGreaterThan(2);
  });

  it('picks the first reply that matches and is not used up, and says 400 when none does', async () => {
    const llm = await start({
      script: [
        { match: /^first/, times: 1, text: 'one' },
        { match: (r) => r.toolResults.length > 0, text: 'after tool' },
        { match: 'first', text: 'again' },
      ],
    });
    const content = async (body: Record<string, unknown>) =>
      ((await (await chat(llm.url, body)).json()) as { choices: { message: { content: string } }[] })
        .choices[0]!.message.content;
    expect(await content(question('first question'))).toBe('one');
    expect(await content(question('first question'))).toBe('again');
    expect(
      await content({
        messages: [
          { role: 'user', content: 'x' },
          { role: 'tool', content: '{"hits":[]}', tool_call_id: 'c' },
        ],
      }),
    ).toBe('after tool');
    const unmatched = await chat(llm.url, question('something else'));
    expect(unmatched.status).toBe(400);
    expect(await unmatched.text()).toContain('no scripted reply for call 3');
    expect(llm.calls).toBe(4);
  });

  it('injects errors with their status, and refuses a wrong API key', async () => {
    const llm = await start({ apiKey: 'right', script: [{ error: { status: 429, retryAfterS: 2 } }] });
    const limited = await chat(llm.url, question('q'), { key: 'right' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('2');
    const refused = await chat(llm.url, question('q'), { key: 'wrong' });
    expect(refused.status).toBe(401);
    expect(llm.requests.map((r) => r.authorized)).toEqual([true, false]);
  });

  it('hangs when told to, and counts the requests whose client gave up', async () => {
    const llm = await start({ script: [{ hang: 'before-response' }] });
    const controller = new AbortController();
    const pending = chat(llm.url, question('q'), { signal: controller.signal });
    await waitFor(() => llm.calls === 1, { description: 'the request' });
    controller.abort();
    await expect(pending).rejects.toThrow();
    await waitFor(() => llm.abandoned === 1, { description: 'the abandoned request' });
  });

  it('close() ends hung requests too', async () => {
    const llm = await start({ script: [{ hang: 'mid-stream', text: 'answer: a long answer' }] });
    const response = await chat(llm.url, { ...question('q'), stream: true });
    const reading = response.text();
    await llm.close();
    server = undefined;
    await expect(reading).rejects.toThrow();
  });
});
