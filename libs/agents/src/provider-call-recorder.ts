/** What one chat completion call returned, as read off the wire. */
export interface ProviderCall {
  /** HTTP status (0 until the response arrives or when the request failed). */
  status: number;
  /** The completion text (streamed chunks joined). */
  content: string;
  /** Names of the tools the model called in this response. */
  toolCalls: string[];
  promptTokens: number;
  completionTokens: number;
  /** False until a usage block was seen. */
  usageSeen: boolean;
  /** Why the request got no response at all (refused, reset, DNS), when it did not. */
  networkError?: string;
  /** True when the call, its body included, outlasted the ceiling and was aborted. */
  timedOut?: boolean;
}

/** Options of {@link ProviderCallRecorder}. */
export interface ProviderCallRecorderOptions {
  /** Runs before each request; throwing refuses the call (budget checks). */
  readonly beforeCall?: () => void;
  /** Most completion text kept per call (raw answers for operators are bounded). */
  readonly maxContentChars: number;
  /** The fetch to wrap (default: the global one). */
  readonly fetch?: typeof fetch;
  /**
   * Ceiling of one call from request to the last byte of its body. The model library's own
   * timeout stops at the response's headers: a server that sends them and a few tokens, then
   * nothing, would hold the attempt (and its slot) for ever.
   */
  readonly callTimeoutMs?: number;
}

/**
 * A `fetch` for the model library that watches every chat completion call: it counts them, and
 * reads a copy of each response (a tee of the body, the library reads the other branch unchanged)
 * for the raw completion text and the usage block. The model library drops both when a streamed
 * answer fails to parse, yet that answer was paid for and the operator needs to see it.
 */
export class ProviderCallRecorder {
  readonly calls: ProviderCall[] = [];
  private readonly reading: Promise<void>[] = [];
  private readonly beforeCall: (() => void) | undefined;
  private readonly maxContentChars: number;
  private readonly baseFetch: typeof fetch;
  private readonly callTimeoutMs: number | undefined;

  constructor(options: ProviderCallRecorderOptions) {
    this.beforeCall = options.beforeCall;
    this.maxContentChars = options.maxContentChars;
    this.baseFetch = options.fetch ?? globalThis.fetch;
    this.callTimeoutMs = options.callTimeoutMs;
  }

  /** The wrapped fetch to hand to the model library. */
  readonly fetch: typeof fetch = async (input, init) => {
    this.beforeCall?.();
    const call: ProviderCall = {
      status: 0,
      content: '',
      toolCalls: [],
      promptTokens: 0,
      completionTokens: 0,
      usageSeen: false,
    };
    this.calls.push(call);
    const ceiling = this.ceiling(call, init?.signal ?? undefined);
    let response: Response;
    try {
      response = await this.baseFetch(input, { ...init, signal: ceiling.signal });
    } catch (err) {
      ceiling.done();
      // Aborts (the attempt's signal, Ax's own request timeout, the ceiling) are not the network's fault.
      if (ceiling.signal?.aborted === true) throw err;
      // Ax reports this as a bare "Generate failed: TypeError: fetch failed": remember what it was.
      const cause = (err as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
      call.networkError =
        typeof cause?.code === 'string' ? cause.code : err instanceof Error ? err.message : String(err);
      throw err;
    }
    call.status = response.status;
    if (!response.ok || response.body === null) {
      ceiling.done();
      return response;
    }
    const [forLibrary, forUs] = response.body.tee();
    const streamed = (response.headers.get('content-type') ?? '').includes('text/event-stream');
    // Our copy ends when the body does (or fails when the ceiling aborts it): the call is over.
    this.reading.push(
      this.read(forUs, call, streamed)
        .catch(() => undefined)
        .finally(ceiling.done),
    );
    return new Response(forLibrary, {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };

  /**
   * The signal one call runs under: the caller's, and the ceiling's timer when there is one
   * (aborting a fetch's signal also fails the body it is reading). `done` stops the timer.
   */
  private ceiling(
    call: ProviderCall,
    signal: AbortSignal | undefined,
  ): { signal: AbortSignal | undefined; done: () => void } {
    const ms = this.callTimeoutMs;
    if (ms === undefined) return { signal, done: () => undefined };
    const controller = new AbortController();
    const timer = setTimeout(() => {
      call.timedOut = true;
      controller.abort(new DOMException(`the model call took longer than ${ms} ms`, 'TimeoutError'));
    }, ms);
    return {
      signal: signal === undefined ? controller.signal : AbortSignal.any([signal, controller.signal]),
      done: () => clearTimeout(timer),
    };
  }

  /** Waits until every response copy has been read (they end when the library's branch ends). */
  async settled(): Promise<void> {
    await Promise.allSettled(this.reading);
  }

  /** Tokens over every call. */
  totals(): { promptTokens: number; completionTokens: number } {
    let promptTokens = 0;
    let completionTokens = 0;
    for (const call of this.calls) {
      promptTokens += call.promptTokens;
      completionTokens += call.completionTokens;
    }
    return { promptTokens, completionTokens };
  }

  /** The last call, if any was made. */
  lastCall(): ProviderCall | undefined {
    return this.calls.at(-1);
  }

  /** The last call's completion text, with the tools it called; '' when no call answered. */
  lastContent(): string {
    for (let i = this.calls.length - 1; i >= 0; i--) {
      const call = this.calls[i];
      if (call === undefined || call.status === 0) continue;
      const tools = call.toolCalls.length > 0 ? `[tool calls: ${call.toolCalls.join(', ')}]` : '';
      return [call.content, tools].filter((part) => part !== '').join('\n');
    }
    return '';
  }

  private async read(body: ReadableStream<Uint8Array>, call: ProviderCall, streamed: boolean): Promise<void> {
    const decoder = new TextDecoder();
    let buffered = '';
    const reader = body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      if (streamed) {
        const lines = buffered.split(/\r?\n/);
        buffered = lines.pop() ?? '';
        for (const line of lines) this.readEvent(line, call);
      }
    }
    buffered += decoder.decode();
    if (streamed) {
      this.readEvent(buffered, call);
      return;
    }
    const json = parseJson(buffered);
    const message = firstChoice(json)?.['message'] as Record<string, unknown> | undefined;
    if (typeof message?.['content'] === 'string') this.append(call, message['content']);
    this.readToolCalls(message?.['tool_calls'], call);
    this.readUsage(json, call);
  }

  private readEvent(line: string, call: ProviderCall): void {
    if (!line.startsWith('data:')) return;
    const data = line.slice(5).trim();
    if (data === '' || data === '[DONE]') return;
    const json = parseJson(data);
    const delta = firstChoice(json)?.['delta'] as Record<string, unknown> | undefined;
    if (typeof delta?.['content'] === 'string') this.append(call, delta['content']);
    this.readToolCalls(delta?.['tool_calls'], call);
    this.readUsage(json, call);
  }

  private append(call: ProviderCall, text: string): void {
    if (call.content.length >= this.maxContentChars) return;
    call.content = (call.content + text).slice(0, this.maxContentChars);
  }

  private readToolCalls(toolCalls: unknown, call: ProviderCall): void {
    if (!Array.isArray(toolCalls)) return;
    for (const toolCall of toolCalls) {
      const name = (toolCall as { function?: { name?: unknown } } | null)?.function?.name;
      if (typeof name === 'string' && name !== '') call.toolCalls.push(name);
    }
  }

  private readUsage(json: Record<string, unknown> | undefined, call: ProviderCall): void {
    const usage = json?.['usage'] as Record<string, unknown> | null | undefined;
    if (typeof usage !== 'object' || usage === null) return;
    const count = (value: unknown): number =>
      typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
    // A provider may repeat usage in several chunks: the last one is the total.
    call.promptTokens = count(usage['prompt_tokens']);
    call.completionTokens = count(usage['completion_tokens']);
    call.usageSeen = true;
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function firstChoice(json: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const choices = json?.['choices'];
  if (!Array.isArray(choices)) return undefined;
  const first: unknown = choices[0];
  return typeof first === 'object' && first !== null ? (first as Record<string, unknown>) : undefined;
}
