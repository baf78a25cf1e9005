import { inspect } from 'node:util';
import { ValidationError } from '@multiagents/contracts';

/** Where an agent's model lives: any OpenAI-compatible chat completions server. */
export interface LlmConfig {
  /** Base URL of the OpenAI-compatible API, usually ending in `/v1` (`…/chat/completions` is added). */
  readonly baseUrl: string;
  /** Sent as a bearer token. Secret: never logged (see {@link redactLlmConfig}). */
  readonly apiKey: string;
  /** The model name the server knows (also the key of the price table). */
  readonly model: string;
}

/** The environment variables {@link llmConfigFromEnv} reads. */
export const LLM_ENV = {
  baseUrl: 'MULTIAGENTS_LLM_BASE_URL',
  apiKey: 'MULTIAGENTS_LLM_API_KEY',
  model: 'MULTIAGENTS_LLM_MODEL',
} as const;

/** What replaces secrets in logs and error messages. */
export const REDACTED = '[redacted]';

/** An environment as an app passes it; libraries never read the process environment themselves. */
export type LlmEnvironment = Readonly<Record<string, string | undefined>>;

/**
 * A copy of `config` safe to log: the API key replaced, and any password in the URL too.
 *
 * @example
 * logger.info({ llm: redactLlmConfig(config) }, 'agents use this model');
 */
export function redactLlmConfig(config: LlmConfig): { baseUrl: string; apiKey: string; model: string } {
  return { baseUrl: redactUrl(config.baseUrl), apiKey: REDACTED, model: config.model };
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = REDACTED;
    return parsed.toString();
  } catch {
    return url;
  }
}

/**
 * Reads the model settings an app gives its agents from `MULTIAGENTS_LLM_BASE_URL`,
 * `MULTIAGENTS_LLM_API_KEY` and `MULTIAGENTS_LLM_MODEL`. Returns `undefined` when none is set (the
 * app decides: no agents, or an offline fake server); throws a ValidationError listing every
 * problem when some are set but not all, or a value is malformed. A server without authentication
 * still needs a non-empty key (any value). The returned object logs with its key redacted.
 *
 * @example
 * // apps/worker-manager/src/config.ts, the only place that reads the environment:
 * const llm = llmConfigFromEnv(env); // env: what an app config module passes
 */
export function llmConfigFromEnv(env: LlmEnvironment): LlmConfig | undefined {
  const value = (name: string): string | undefined => {
    const raw = env[name];
    return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
  };
  const baseUrl = value(LLM_ENV.baseUrl);
  const apiKey = value(LLM_ENV.apiKey);
  const model = value(LLM_ENV.model);
  if (baseUrl === undefined && apiKey === undefined && model === undefined) return undefined;

  const problems: string[] = [];
  const missing = (name: string): void => {
    problems.push(`${name} is required when any MULTIAGENTS_LLM_* variable is set`);
  };
  if (baseUrl === undefined) missing(LLM_ENV.baseUrl);
  else {
    let parsed: URL | undefined;
    try {
      parsed = new URL(baseUrl);
    } catch {
      problems.push(`${LLM_ENV.baseUrl}=${redactUrl(baseUrl)}: not a URL`);
    }
    if (parsed !== undefined && parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      problems.push(`${LLM_ENV.baseUrl}=${redactUrl(baseUrl)}: must be an http or https URL`);
    }
  }
  // Never echo the key, even a malformed one.
  if (apiKey === undefined) missing(LLM_ENV.apiKey);
  if (model === undefined) missing(LLM_ENV.model);
  if (problems.length > 0) throw new ValidationError('invalid model configuration', problems);
  return withRedactedLogging({
    baseUrl: baseUrl as string,
    apiKey: apiKey as string,
    model: model as string,
  });
}

/**
 * Makes `JSON.stringify` (what pino does) and `util.inspect` (what a stray console.log does) show
 * the config with its key redacted; the fields themselves stay plain.
 */
function withRedactedLogging(config: LlmConfig): LlmConfig {
  Object.defineProperties(config, {
    toJSON: { value: () => redactLlmConfig(config), enumerable: false },
    [inspect.custom]: { value: () => redactLlmConfig(config), enumerable: false },
  });
  return Object.freeze(config);
}

/** Replaces every occurrence of a secret in `text` (error messages from providers may echo it). */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    // Very short secrets would redact ordinary words; such a key is a test key anyway.
    if (secret.length >= 4) out = out.split(secret).join(REDACTED);
  }
  return out;
}
