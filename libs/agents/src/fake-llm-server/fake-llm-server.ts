import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One tool call a scripted reply makes. */
export interface FakeToolCall {
  readonly name: string;
  /** The call's arguments: an object (sent as JSON) or raw text (to script malformed arguments). */
  readonly arguments: Readonly<Record<string, unknown>> | string;
}

/** What the fake server saw in one `POST /v1/chat/completions`. */
export interface FakeLlmRequest {
  /** 0 for the first call the server received, then 1, 2, … */
  readonly index: number;
  readonly model: string;
  readonly stream: boolean;
  /** The messages as sent (OpenAI chat format). */
  readonly messages: readonly FakeChatMessage[];
  /** Text of the last `user` message ('' when there is none). */
  readonly lastUserMessage: string;
  /** Text of the `system` message ('' when there is none). */
  readonly systemMessage: string;
  /** Names of the tools offered. */
  readonly tools: readonly string[];
  /** Contents of every `tool` message, in order (tool results the client sent back). */
  readonly toolResults: readonly string[];
  /** False when the server expects an API key and the request's bearer token is not it. */
  readonly authorized: boolean;
}

/** One message of a chat request, as far as the fake server reads it. */
export interface FakeChatMessage {
  readonly role: string;
  readonly content: string;
}

/**
 * One scripted reply. The first reply whose `match` accepts the request and whose `times` is not
 * used up answers it. Exactly one of `fields`, `text`, `toolCalls`, `error`, `hang` should be set.
 */
export interface FakeLlmReply {
  /**
   * Which requests this reply answers: a substring or pattern of the last user message, or a
   * predicate over the whole request. Absent: any request.
   */
  readonly match?: string | RegExp | ((request: FakeLlmRequest) => boolean);
  /** How many requests this reply may answer (default: any number). */
  readonly times?: number;
  /**
   * Output fields, written the way Ax reads a completion: one `name: value` line per field, strings
   * as they are, anything else as JSON.
   */
  readonly fields?: Readonly<Record<string, unknown>>;
  /** The completion text exactly (to script malformed answers). */
  readonly text?: string;
  /** Tool calls instead of text (`finish_reason: tool_calls`). */
  readonly toolCalls?: readonly FakeToolCall[];
  /** Reported usage; default: about one token per four characters of prompt and completion. */
  readonly usage?: { readonly promptTokens: number; readonly completionTokens: number };
  /** Answer with this HTTP status and an OpenAI-style error body. */
  readonly error?: { readonly status: number; readonly message?: string; readonly retryAfterS?: number };
  /**
   * Never finish: `before-response` sends nothing at all; `mid-stream` sends the headers and the
   * first chunk of a streamed answer, then nothing. The request stays open until the client gives up.
   */
  readonly hang?: 'before-response' | 'mid-stream';
  /** Characters per streamed content chunk (default 8). */
  readonly chunkChars?: number;
}

/** Options of {@link startFakeLlmServer}. */
export interface FakeLlmServerOptions {
  /** The replies, tried in order for every request. A request no reply matches gets a 400. */
  readonly script: readonly FakeLlmReply[];
  /** When set, a request whose `Authorization` is not `Bearer <apiKey>` gets a 401. */
  readonly apiKey?: string;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** Default 0: a free port. */
  readonly port?: number;
}

/** A running fake OpenAI-compatible server. */
export interface FakeLlmServer {
  /** The base URL clients use (ends in `/v1`): what `MULTIAGENTS_LLM_BASE_URL` is set to. */
  readonly url: string;
  readonly port: number;
  /** Chat completion requests received so far (the model calls a test counts). */
  readonly calls: number;
  /** Every chat completion request received, in order. */
  readonly requests: readonly FakeLlmRequest[];
  /** Requests whose client went away before the reply was complete (aborts, timeouts). */
  readonly abandoned: number;
  /** Stops listening and drops every open connection (hung requests included). */
  close(): Promise<void>;
}

/** Largest request body read; bigger ones get a 413. */
const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
const DEFAULT_CHUNK_CHARS = 8;

/**
 * Starts a fake OpenAI-compatible chat completions server on loopback, for examples and tests that
 * must run offline: `POST /v1/chat/completions`, streamed (SSE chunks, usage in the last chunk)
 * and not, with scripted answers, tool calls, usage numbers, errors and hangs, and a call counter.
 *
 * @example
 * const llm = await startFakeLlmServer({
 *   script: [
 *     { match: 'capital of France', fields: { answer: 'Paris', sources: ['atlas'] } },
 *     { error: { status: 503 } },
 *   ],
 * });
 * const model = { baseUrl: llm.url, apiKey: 'test', model: 'fake-model' };
 * // … run agents …
 * await llm.close();
 */
export async function startFakeLlmServer(options: FakeLlmServerOptions): Promise<FakeLlmServer> {
  const uses = options.script.map(() => 0);
  const requests: FakeLlmRequest[] = [];
  let abandoned = 0;

  const server: Server = createServer((req, res) => {
    void handle(req, res);
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      sendError(res, 404, `no route for ${req.method ?? '?'} ${path ?? ''}`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(await readBody(req)) as unknown;
    } catch (err) {
      sendError(res, err instanceof TooLargeError ? 413 : 400, 'request body is not JSON');
      return;
    }
    const request = describeRequest(body, requests.length, req.headers.authorization, options.apiKey);
    requests.push(request);
    res.on('close', () => {
      if (!res.writableEnded) abandoned++;
    });
    if (!request.authorized) {
      sendError(res, 401, 'invalid API key', 'invalid_request_error');
      return;
    }
    const at = options.script.findIndex(
      (reply, i) => (reply.times === undefined || (uses[i] ?? 0) < reply.times) && matches(reply, request),
    );
    const reply = options.script[at];
    if (reply === undefined) {
      sendError(
        res,
        400,
        `fake LLM server: no scripted reply for call ${request.index} (last user message: ${JSON.stringify(request.lastUserMessage.slice(0, 200))})`,
      );
      return;
    }
    uses[at] = (uses[at] ?? 0) + 1;
    respond(res, reply, request);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}/v1`,
    port: address.port,
    get calls() {
      return requests.length;
    },
    get requests() {
      return requests;
    },
    get abandoned() {
      return abandoned;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

class TooLargeError extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BYTES) {
        reject(new TooLargeError());
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) =>
        typeof part === 'object' && part !== null && typeof (part as { text?: unknown }).text === 'string'
          ? (part as { text: string }).text
          : '',
      )
      .join('');
  }
  return '';
}

function describeRequest(
  body: unknown,
  index: number,
  authorization: string | undefined,
  apiKey: string | undefined,
): FakeLlmRequest {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const rawMessages: unknown[] = Array.isArray(b['messages']) ? (b['messages'] as unknown[]) : [];
  const messages: FakeChatMessage[] = rawMessages.map((m) => {
    const message = (typeof m === 'object' && m !== null ? m : {}) as Record<string, unknown>;
    const role = message['role'];
    return { role: typeof role === 'string' ? role : '', content: textOf(message['content']) };
  });
  const rawTools: unknown[] = Array.isArray(b['tools']) ? (b['tools'] as unknown[]) : [];
  const tools = rawTools.map((t) => {
    const fn = (t as { function?: { name?: unknown } } | null)?.function;
    return typeof fn?.name === 'string' ? fn.name : '';
  });
  return {
    index,
    model: typeof b['model'] === 'string' ? b['model'] : '',
    stream: b['stream'] === true,
    messages,
    lastUserMessage: messages.filter((m) => m.role === 'user').at(-1)?.content ?? '',
    systemMessage: messages.find((m) => m.role === 'system')?.content ?? '',
    tools,
    toolResults: messages.filter((m) => m.role === 'tool').map((m) => m.content),
    authorized: apiKey === undefined || authorization === `Bearer ${apiKey}`,
  };
}

function matches(reply: FakeLlmReply, request: FakeLlmRequest): boolean {
  const { match } = reply;
  if (match === undefined) return true;
  if (typeof match === 'string') return request.lastUserMessage.includes(match);
  if (match instanceof RegExp) return match.test(request.lastUserMessage);
  return match(request);
}

/** `name: value` lines, the format Ax parses a completion in (it accepts the field's wire key). */
function formatFields(fields: Readonly<Record<string, unknown>>): string {
  return Object.entries(fields)
    .map(([name, value]) => `${name}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join('\n');
}

function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function sendError(res: ServerResponse, status: number, message: string, type = 'server_error'): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type, code: null } }));
}

function respond(res: ServerResponse, reply: FakeLlmReply, request: FakeLlmRequest): void {
  if (reply.error !== undefined) {
    if (reply.error.retryAfterS !== undefined) res.setHeader('retry-after', String(reply.error.retryAfterS));
    sendError(res, reply.error.status, reply.error.message ?? `scripted error ${reply.error.status}`);
    return;
  }
  if (reply.hang === 'before-response') return;

  const text = reply.text ?? (reply.fields === undefined ? '' : formatFields(reply.fields));
  const toolCalls = (reply.toolCalls ?? []).map((call, i) => ({
    id: `call_${request.index}_${i}`,
    name: call.name,
    arguments: typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments),
  }));
  const promptText = request.messages.map((m) => m.content).join('\n');
  const usage = reply.usage ?? {
    promptTokens: estimateTokens(promptText),
    completionTokens: estimateTokens(text + toolCalls.map((c) => c.name + c.arguments).join('')),
  };
  const usageJson = {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
  };
  const finishReason = toolCalls.length > 0 ? 'tool_calls' : 'stop';
  const id = `chatcmpl-fake-${request.index}`;
  const created = Math.floor(Date.now() / 1000);
  const model = request.model;

  if (!request.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              content: toolCalls.length > 0 && text === '' ? null : text,
              ...(toolCalls.length > 0
                ? {
                    tool_calls: toolCalls.map((c) => ({
                      id: c.id,
                      type: 'function',
                      function: { name: c.name, arguments: c.arguments },
                    })),
                  }
                : {}),
            },
            finish_reason: finishReason,
          },
        ],
        usage: usageJson,
      }),
    );
    return;
  }

  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const chunk = (delta: Record<string, unknown>, finish: string | null = null): void => {
    res.write(
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`,
    );
  };
  chunk({ role: 'assistant', content: '' });
  const size = Math.max(1, reply.chunkChars ?? DEFAULT_CHUNK_CHARS);
  for (let at = 0; at < text.length; at += size) {
    chunk({ content: text.slice(at, at + size) });
    if (reply.hang === 'mid-stream') return;
  }
  if (reply.hang === 'mid-stream') return;
  toolCalls.forEach((call, index) => {
    // As OpenAI streams them: id and name first, then the arguments in pieces.
    chunk({
      tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }],
    });
    const half = Math.ceil(call.arguments.length / 2);
    for (const piece of [call.arguments.slice(0, half), call.arguments.slice(half)]) {
      if (piece !== '') chunk({ tool_calls: [{ index, function: { arguments: piece } }] });
    }
  });
  chunk({}, finishReason);
  // `stream_options.include_usage`: a last chunk with no choices carries the usage.
  res.write(
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usageJson })}\n\n`,
  );
  res.end('data: [DONE]\n\n');
}
