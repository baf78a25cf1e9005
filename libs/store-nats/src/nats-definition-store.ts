import {
  AlreadyExistsError,
  ErrorCode,
  MultiAgentsError,
  ValidationError,
  type WorkflowDefinition,
} from '@multiagents/contracts';
import type { DefinitionStore, DefinitionSummary } from '@multiagents/core';
import { canonicalJson } from './canonical-json';
import { decodeTime, encodeTime } from './key-codec';
import { KvClient, fromBytes } from './kv-client';
import { mapLimit } from './map-limit';
import { BucketKind, NatsKeys } from './nats-keys';
import {
  DEFAULT_NATS_STORE_OPTIONS,
  NATS_STORE_OPTION_KEYS,
  resolveNatsStoreOptions,
  type NatsStoreOptions,
} from './nats-store-options';

/** Options of {@link NatsDefinitionStore}. */
export type NatsDefinitionStoreOptions = NatsStoreOptions;

/** Defaults of {@link NatsDefinitionStoreOptions}. */
export const DEFAULT_NATS_DEFINITION_STORE_OPTIONS = DEFAULT_NATS_STORE_OPTIONS;

/** Compare-and-set attempts on the latest-version pointer before giving up. */
const MAX_LATEST_ATTEMPTS = 32;
const READ_CONCURRENCY = 16;

/**
 * A {@link DefinitionStore} on NATS KV (bucket `<prefix>-definitions`). `v.<id>.<version>` holds
 * each version, written once with `kv.create` (so two registrations of one version cannot both
 * win); an existing version with the same canonical JSON makes `put` return false, with other
 * content it throws AlreadyExistsError, as in the memory store. `l.<id>` keeps a copy of the
 * latest version, moved forward by compare-and-set, so `get(id)` (every workflow start) is one
 * read. A crash between the two writes leaves `l.<id>` behind; putting any version of that id
 * again (registering the same definition is harmless) moves it forward.
 *
 * @example
 * const definitions = new NatsDefinitionStore({ servers: 'nats://127.0.0.1:4222' });
 * await definitions.put(orderSaga); // true the first time
 * const latest = await definitions.get('order_processing');
 */
export class NatsDefinitionStore implements DefinitionStore {
  private readonly keys: NatsKeys;
  private readonly kv: KvClient;

  constructor(options: NatsDefinitionStoreOptions) {
    const problems: string[] = [];
    const resolved = resolveNatsStoreOptions(options, NATS_STORE_OPTION_KEYS, problems);
    if (problems.length > 0) throw new ValidationError('NatsDefinitionStore options', problems);
    this.keys = new NatsKeys(resolved.prefix);
    this.kv = new KvClient(resolved, this.keys, 'NatsDefinitionStore', [BucketKind.Definitions]);
  }

  /** Connects and creates the bucket (optional: the first operation does it). */
  start(): Promise<void> {
    return this.kv.start();
  }

  async put(definition: WorkflowDefinition): Promise<boolean> {
    const problems: string[] = [];
    if (typeof definition?.id !== 'string' || definition.id.length === 0)
      problems.push('id must be a non-empty string');
    if (!Number.isInteger(definition?.version) || definition.version < 1)
      problems.push('version must be an integer >= 1');
    if (problems.length > 0) throw new ValidationError('workflow definition', problems);

    // What is stored is the JSON text: later changes to the caller's object cannot reach it.
    const canonical = canonicalJson(definition);
    const key = this.keys.definition(definition.id, definition.version);
    const created = await this.kv.create(BucketKind.Definitions, key, new TextEncoder().encode(canonical));
    if (created === undefined) {
      const existing = await this.kv.get(BucketKind.Definitions, key);
      // Stored as canonical JSON, so the texts compare as contents.
      if (existing !== undefined && new TextDecoder().decode(existing.data) !== canonical) {
        throw new AlreadyExistsError(
          `workflow ${definition.id} version ${definition.version} exists with different content`,
          { workflowId: definition.id, version: definition.version },
        );
      }
    }
    await this.advanceLatest(definition, canonical);
    return created !== undefined;
  }

  async get(id: string, version?: number): Promise<WorkflowDefinition | undefined> {
    if (typeof id !== 'string' || id === '') return undefined;
    if (version !== undefined && (!Number.isSafeInteger(version) || version < 1)) return undefined;
    const key = version === undefined ? this.keys.latestDefinition(id) : this.keys.definition(id, version);
    const record = await this.kv.get(BucketKind.Definitions, key);
    return record === undefined ? undefined : fromBytes<WorkflowDefinition>(record.data);
  }

  /** Sorted by id; versions ascending. One key listing, then one read per id (its latest copy). */
  async list(): Promise<DefinitionSummary[]> {
    const versions = new Map<string, number[]>();
    for (const key of await this.kv.keys(BucketKind.Definitions, 'v.>')) {
      const [, idToken, versionToken] = key.split('.');
      const version = versionToken === undefined ? undefined : decodeTime(versionToken);
      if (idToken === undefined || version === undefined) continue;
      versions.set(idToken, [...(versions.get(idToken) ?? []), version]);
    }
    const summaries = await mapLimit([...versions.entries()], READ_CONCURRENCY, async ([idToken, list]) => {
      const sorted = [...list].sort((a, b) => a - b);
      const latestVersion = sorted[sorted.length - 1] as number;
      // The id is read from the stored definition: a long id's key token is a hash.
      const record = await this.kv.get(BucketKind.Definitions, `v.${idToken}.${encodeTime(latestVersion)}`);
      if (record === undefined) return undefined;
      const latest = fromBytes<WorkflowDefinition>(record.data);
      const summary: DefinitionSummary = {
        id: latest.id,
        latestVersion,
        versions: sorted,
        ...(latest.description === undefined ? {} : { description: latest.description }),
      };
      return summary;
    });
    return summaries
      .filter((s): s is DefinitionSummary => s !== undefined)
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Further calls are refused; closes the connection if the store opened it. */
  async close(): Promise<void> {
    await this.kv.close();
  }

  /** Deletes this prefix's definition bucket with all its data (tests and decommissioning). */
  async destroy(): Promise<void> {
    await this.kv.destroy();
  }

  /** Moves `l.<id>` to this version unless it already holds it or a newer one. */
  private async advanceLatest(definition: WorkflowDefinition, canonical: string): Promise<void> {
    const key = this.keys.latestDefinition(definition.id);
    const data = new TextEncoder().encode(canonical);
    for (let attempt = 0; attempt < MAX_LATEST_ATTEMPTS; attempt += 1) {
      const current = await this.kv.get(BucketKind.Definitions, key);
      if (current === undefined) {
        if ((await this.kv.create(BucketKind.Definitions, key, data)) !== undefined) return;
        continue;
      }
      if (fromBytes<WorkflowDefinition>(current.data).version >= definition.version) return;
      if ((await this.kv.update(BucketKind.Definitions, key, data, current.revision)) !== undefined) return;
    }
    throw new MultiAgentsError(
      ErrorCode.Conflict,
      `NatsDefinitionStore: the latest version of ${definition.id} kept changing`,
      { details: { workflowId: definition.id } },
    );
  }
}
