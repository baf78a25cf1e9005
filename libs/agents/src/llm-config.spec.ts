import { inspect } from 'node:util';
import { ValidationError } from '@multiagents/contracts';
import { LLM_ENV, REDACTED, llmConfigFromEnv, redactLlmConfig, redactSecrets } from './llm-config';

const KEY = 'sk-live-do-not-print-7c1e';

describe('llmConfigFromEnv', () => {
  it('is undefined when no MULTIAGENTS_LLM_* variable is set (the app decides what to do)', () => {
    expect(llmConfigFromEnv({ PATH: '/bin', [LLM_ENV.model]: '  ' })).toBeUndefined();
  });

  it('reads the three variables', () => {
    const config = llmConfigFromEnv({
      MULTIAGENTS_LLM_BASE_URL: 'http://127.0.0.1:11434/v1',
      MULTIAGENTS_LLM_API_KEY: KEY,
      MULTIAGENTS_LLM_MODEL: 'llama3.1:8b',
    });
    expect(config).toEqual({ baseUrl: 'http://127.0.0.1:11434/v1', apiKey: KEY, model: 'llama3.1:8b' });
  });

  it('lists every problem at once, and never echoes the key', () => {
    let thrown: unknown;
    try {
      llmConfigFromEnv({ MULTIAGENTS_LLM_BASE_URL: 'ftp://example.com', MULTIAGENTS_LLM_API_KEY: KEY });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    expect((thrown as ValidationError).problems).toEqual([
      'MULTIAGENTS_LLM_BASE_URL=ftp://example.com/: must be an http or https URL',
      'MULTIAGENTS_LLM_MODEL is required when any MULTIAGENTS_LLM_* variable is set',
    ]);
    expect(JSON.stringify(thrown) + String(thrown)).not.toContain(KEY);
  });

  it('requires a key (any value for a server without authentication)', () => {
    expect(() =>
      llmConfigFromEnv({ MULTIAGENTS_LLM_BASE_URL: 'http://localhost:8000/v1', MULTIAGENTS_LLM_MODEL: 'm' }),
    ).toThrow('MULTIAGENTS_LLM_API_KEY is required');
  });

  it('returns a config that logs with its key redacted', () => {
    const config = llmConfigFromEnv({
      MULTIAGENTS_LLM_BASE_URL: 'https://user:hunter22@llm.example.com/v1',
      MULTIAGENTS_LLM_API_KEY: KEY,
      MULTIAGENTS_LLM_MODEL: 'gpt-x',
    });
    const logged = JSON.stringify({ config }) + inspect(config);
    expect(logged).not.toContain(KEY);
    expect(logged).not.toContain('hunter22');
    expect(logged).toContain(REDACTED);
    expect(config?.apiKey).toBe(KEY);
  });
});

describe('redactLlmConfig and redactSecrets', () => {
  it('redact the key and a password in the URL', () => {
    expect(redactLlmConfig({ baseUrl: 'https://u:pw1234@h/v1', apiKey: KEY, model: 'm' })).toEqual({
      baseUrl: `https://u:${encodeURIComponent(REDACTED)}@h/v1`,
      apiKey: REDACTED,
      model: 'm',
    });
    expect(redactSecrets(`bad key ${KEY} (${KEY})`, [KEY])).toBe(`bad key ${REDACTED} (${REDACTED})`);
  });
});
