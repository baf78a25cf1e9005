import { ValidationError } from '@multiagents/contracts';
import { DEFAULT_REDIS_KEY_PREFIX, RedisKeys } from './redis-keys';

/** The slot-deciding part of a key, as Redis Cluster reads it. */
function hashTagOf(key: string): string {
  const open = key.indexOf('{');
  const close = key.indexOf('}', open + 1);
  if (open < 0 || close < 0 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

describe('RedisKeys', () => {
  it('applies the prefix and puts every key of a topic under the same hash tag', () => {
    const keys = new RedisKeys('acme');
    const topic = 'commands.inventory.reserve';
    expect(keys.stream(topic)).toBe('acme:{commands.inventory.reserve}:stream');
    expect(keys.deadLetters(topic)).toBe('acme:{commands.inventory.reserve}:dead');
    expect(hashTagOf(keys.stream(topic))).toBe(topic);
    expect(hashTagOf(keys.deadLetters(topic))).toBe(topic);
    expect(keys.hashTag(topic)).toBe(`{${topic}}`);
  });

  it('gives different topics different keys and tags', () => {
    const keys = new RedisKeys();
    expect(keys.prefix).toBe(DEFAULT_REDIS_KEY_PREFIX);
    expect(keys.stream('results')).not.toBe(keys.stream('events'));
    expect(hashTagOf(keys.stream('results'))).not.toBe(hashTagOf(keys.stream('events')));
    expect(keys.stream('results').startsWith('multiagents:')).toBe(true);
  });

  it('refuses prefixes and topics that would break the hash tag', () => {
    expect(() => new RedisKeys('')).toThrow(ValidationError);
    expect(() => new RedisKeys('a{b')).toThrow(/prefix must not contain/);
    const keys = new RedisKeys('p');
    expect(() => keys.stream('a}b')).toThrow(ValidationError);
    expect(() => keys.deadLetters('{x')).toThrow(ValidationError);
    expect(() => keys.stream('')).toThrow(ValidationError);
  });
});
