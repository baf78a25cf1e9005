import { AlreadyExistsError, ValidationError, type WorkflowDefinition } from '@multiagents/contracts';
import type { DefinitionStore, DefinitionSummary } from '@multiagents/core';
import { redisCodec } from './redis-codec';
import { RedisConnection } from './redis-connection';
import { resolveRedisStoreOptions, type RedisStoreOptions } from './redis-store-options';

/** Options of {@link RedisDefinitionStore}: the shared connection options. */
export type RedisDefinitionStoreOptions = RedisStoreOptions;

/**
 * A {@link DefinitionStore} on Redis: one hash per workflow id (`"<version>"` → canonical JSON,
 * `"latest"` → highest version) and a set of ids, all under the `{definitions}` hash tag. Content
 * is compared as canonical JSON (keys sorted), so putting the same definition again with its keys
 * in another order is harmless (false); different content under a stored id and version is
 * refused, because runs pin a version and must always find what they started with.
 *
 * @example
 * const definitions = new RedisDefinitionStore({ url: 'redis://127.0.0.1:6379' });
 * await definitions.put(orderSaga); // true the first time
 * const latest = await definitions.get('order_processing');
 */
export class RedisDefinitionStore implements DefinitionStore {
  private readonly connection: RedisConnection;

  constructor(options: RedisDefinitionStoreOptions = {}) {
    this.connection = new RedisConnection(
      resolveRedisStoreOptions('RedisDefinitionStore', options),
      'RedisDefinitionStore',
    );
  }

  async put(definition: WorkflowDefinition): Promise<boolean> {
    const problems: string[] = [];
    if (typeof definition.id !== 'string' || definition.id.length === 0)
      problems.push('id must be a non-empty string');
    if (!Number.isInteger(definition.version) || definition.version < 1)
      problems.push('version must be an integer >= 1');
    if (problems.length > 0) throw new ValidationError('workflow definition', problems);

    const { keys, scripts } = this.connection;
    const stored = await this.connection.call('put', async () => {
      return (await scripts.putDefinition(
        [keys.definition(definition.id), keys.definitionIds()],
        [definition.version, redisCodec.encodeDefinition(definition), definition.id],
      )) as number;
    });
    if (stored === -1) {
      throw new AlreadyExistsError(
        `workflow ${definition.id} version ${definition.version} exists with different content`,
        { workflowId: definition.id, version: definition.version },
      );
    }
    return stored === 1;
  }

  async get(id: string, version?: number): Promise<WorkflowDefinition | undefined> {
    const { keys, scripts } = this.connection;
    return this.connection.call('get', async () => {
      const json = (await scripts.getDefinition([keys.definition(id)], [version ?? ''])) as string | null;
      return json === null ? undefined : redisCodec.decodeDefinition(json);
    });
  }

  /** Sorted by id; versions ascending. */
  async list(): Promise<DefinitionSummary[]> {
    const { keys, client } = this.connection;
    return this.connection.call('list', async () => {
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
        const description = redisCodec.decodeDefinition(latest).description;
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

  /** Closes the connection (if this store opened it); further calls are refused. */
  async close(): Promise<void> {
    await this.connection.close();
  }
}
