import {
  AlreadyExistsError,
  FailedPreconditionError,
  ValidationError,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import {
  canonicalJson,
  deepFreeze,
  LruMap,
  TurnSharedReads,
  type DefinitionStore,
  type DefinitionSummary,
} from '@multiagents/core';
import type { RedisBackendOptions } from './redis-backend-options';
import { RedisConnection } from './redis-connection';

/** Definition versions a store keeps in memory, parsed (a stored version never changes). */
const CACHED_VERSIONS = 1_000;

/**
 * A {@link DefinitionStore} on Redis: one hash per workflow id (`"<version>"` → canonical JSON,
 * `"latest"` → highest version) and a set of ids, all under the `{defs}` hash tag. A stored
 * version is immutable, so it is cached parsed and deeply frozen (every caller gets the same
 * object and none can change it): `get(id, version)` of a known version reads nothing, and
 * `get(id)` reads only which version is the latest. That read is never cached (a version put by
 * another process is seen by the next start), but the `get(id)` calls of one event-loop turn share
 * one HGET sent on the next `setImmediate`: each of them began before it was sent, so each sees
 * every put that ended before it began, and a busy API pays one read per turn, not per start.
 * Content is compared as
 * canonical JSON (keys sorted), so putting the same definition again with its keys in another
 * order is harmless (false); different content under a stored id and version is refused, because
 * runs pin a version and must always find what they started with.
 *
 * @example
 * const { definitions } = createRedisBackend({ url: 'redis://127.0.0.1:6379' });
 * await definitions.put(orderSaga); // true the first time
 * const latest = await definitions.get('order_processing');
 */
export class RedisDefinitionStore implements DefinitionStore {
  /** The connection this store shares with its backend. */
  readonly connection: RedisConnection;
  private readonly owned: boolean;
  /** `<id>\n<version>` → the definition, frozen (the least recently stored dropped beyond {@link CACHED_VERSIONS}). */
  private readonly cache = new LruMap<string, WorkflowDefinition>(CACHED_VERSIONS);
  /** Which version is the latest, read once for the `get(id)` calls of a turn (see the class doc). */
  private readonly latest = new TurnSharedReads((id: string) => {
    this.assertOpen();
    return this.connection.client.hget(this.connection.keys.definition(id), 'latest');
  });
  private closed = false;

  /** Uses `connection` (not closed by this store) or opens its own from options. */
  constructor(connection: RedisConnection | RedisBackendOptions) {
    this.owned = !(connection instanceof RedisConnection);
    this.connection = connection instanceof RedisConnection ? connection : RedisConnection.open(connection);
  }

  async put(definition: WorkflowDefinition): Promise<boolean> {
    this.assertOpen();
    const problems: string[] = [];
    if (typeof definition.id !== 'string' || definition.id.length === 0)
      problems.push('id must be a non-empty string');
    if (!Number.isInteger(definition.version) || definition.version < 1)
      problems.push('version must be an integer >= 1');
    if (problems.length > 0) throw new ValidationError('workflow definition', problems);
    const { keys, scripts } = this.connection;
    const stored = await this.connection.call('put definition', () =>
      scripts.putDefinition(
        [keys.definition(definition.id), keys.definitionIds()],
        [definition.version, canonicalJson(definition), definition.id],
      ),
    );
    if (Number(stored) === -1) {
      throw new AlreadyExistsError(
        `workflow ${definition.id} version ${definition.version} exists with different content`,
        { workflowId: definition.id, version: definition.version },
      );
    }
    return Number(stored) === 1;
  }

  async get(id: string, version?: number): Promise<WorkflowDefinition | undefined> {
    this.assertOpen();
    const { keys, client } = this.connection;
    const key = keys.definition(id);
    return this.connection.call('get definition', async () => {
      const wanted = version ?? (await this.latest.get(id));
      if (wanted === null) return undefined;
      const cacheKey = `${id}\n${wanted}`;
      const cached = this.cache.get(cacheKey);
      if (cached !== undefined) return cached;
      const stored = await client.hget(key, String(wanted));
      if (stored === null) return undefined;
      const definition = deepFreeze(JSON.parse(stored) as WorkflowDefinition);
      this.cache.set(cacheKey, definition);
      return definition;
    });
  }

  /** Sorted by id; versions ascending. */
  async list(): Promise<DefinitionSummary[]> {
    this.assertOpen();
    const { keys, client } = this.connection;
    return this.connection.call('list definitions', async () => {
      const ids = (await client.smembers(keys.definitionIds())).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      const hashes = await Promise.all(ids.map((id) => client.hgetall(keys.definition(id))));
      const summaries: DefinitionSummary[] = [];
      ids.forEach((id, i) => {
        const fields = hashes[i] ?? {};
        const versions = Object.keys(fields)
          .filter((field) => field !== 'latest')
          .map(Number)
          .sort((a, b) => a - b);
        const latestVersion = Number(fields['latest']);
        const latest = fields[String(latestVersion)];
        if (versions.length === 0 || latest === undefined) return;
        const description = (JSON.parse(latest) as WorkflowDefinition).description;
        summaries.push({
          id,
          latestVersion,
          versions,
          ...(description === undefined ? {} : { description }),
        });
      });
      return summaries;
    });
  }

  /** Further calls are refused; closes the connection if this store opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) await this.connection.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new FailedPreconditionError('RedisDefinitionStore is closed');
  }
}
