import {
  AlreadyExistsError,
  ErrorCode,
  MultiAgentsError,
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
import type { KV } from '@nats-io/kv';
import { decodeTime, encodeTime } from './key-codec';
import { mapLimit } from './map-limit';
import { isWrongRevision, natsError, type NatsContext } from './nats-context';

/** Compare-and-set attempts on the latest-version pointer before giving up. */
const MAX_LATEST_ATTEMPTS = 32;
const READ_CONCURRENCY = 16;
/** Stored versions kept in memory (they never change once stored). */
const CACHED_VERSIONS = 1_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A {@link DefinitionStore} on NATS KV (bucket `<prefix>-definitions`). `v.<id>.<version>` holds
 * each version, written once with `kv.create` (so two registrations of one version cannot both
 * win); an existing version with the same canonical JSON makes `put` return false, with other
 * content it throws AlreadyExistsError, as in the memory store. `l.<id>` keeps a copy of the
 * latest version, moved forward by compare-and-set, so `get(id)` (every workflow start) is one
 * read. A crash between the two writes leaves `l.<id>` behind; putting any version of that id
 * again (registering the same definition is harmless) moves it forward.
 *
 * The `get(id)` calls of one event-loop turn (a burst of starts) share one read of `l.<id>`, sent
 * on the next `setImmediate`: each of them began before it was sent, so each sees every version
 * put (by any process) before it began. The parsed definition is kept with the record's revision,
 * so a read that finds the same revision parses nothing. `definitionCacheMs` > 0 trades that
 * freshness for fewer reads: the latest version is then served from memory that long.
 *
 * @example
 * const { definitions } = await createNatsBackend({ servers: 'nats://127.0.0.1:4222' });
 * await definitions.put(orderSaga); // true the first time
 * const latest = await definitions.get('order_processing');
 */
export class NatsDefinitionStore implements DefinitionStore {
  private closed = false;
  /** `<id>@<version>` → the definition, frozen: a stored version never changes, so it is read once. */
  private readonly versions = new LruMap<string, WorkflowDefinition>(CACHED_VERSIONS);
  /** id → the latest version read, its record's revision, and when it was read. */
  private readonly latest = new LruMap<
    string,
    { readonly definition: WorkflowDefinition; readonly revision: number; readonly at: number }
  >(CACHED_VERSIONS);
  /** The read of `l.<id>` this turn's `get(id)` calls share (see the class doc). */
  private readonly latestReads = new TurnSharedReads((id: string) => this.readLatest(id));

  constructor(
    private readonly ctx: NatsContext,
    private readonly kv: KV,
  ) {}

  async put(definition: WorkflowDefinition): Promise<boolean> {
    this.assertOpen();
    const problems: string[] = [];
    if (typeof definition?.id !== 'string' || definition.id.length === 0)
      problems.push('id must be a non-empty string');
    if (!Number.isInteger(definition?.version) || definition.version < 1)
      problems.push('version must be an integer >= 1');
    if (problems.length > 0) throw new ValidationError('workflow definition', problems);

    // What is stored is the JSON text: later changes to the caller's object cannot reach it.
    const canonical = canonicalJson(definition);
    const key = this.ctx.names.definition(definition.id, definition.version);
    const created = await this.create(key, encoder.encode(canonical));
    if (!created) {
      const existing = await this.read(key);
      // Stored as canonical JSON, so the texts compare as contents.
      if (existing !== undefined && decoder.decode(existing.data) !== canonical) {
        throw new AlreadyExistsError(
          `workflow ${definition.id} version ${definition.version} exists with different content`,
          { workflowId: definition.id, version: definition.version },
        );
      }
    }
    await this.advanceLatest(definition, canonical);
    this.latest.delete(definition.id);
    return created;
  }

  /**
   * A stored version is read once and then served from memory (parsed and frozen: every caller
   * gets the same object and none can change it); the latest version (no `version`) is read
   * once per event-loop turn for all the calls of that turn, or with `definitionCacheMs` > 0
   * served from memory that long (a version registered by another process is then seen that
   * much later; one registered here at once).
   */
  async get(id: string, version?: number): Promise<WorkflowDefinition | undefined> {
    this.assertOpen();
    if (typeof id !== 'string' || id === '') return undefined;
    if (version !== undefined && (!Number.isSafeInteger(version) || version < 1)) return undefined;
    const names = this.ctx.names;
    if (version !== undefined) {
      const cacheKey = `${id}@${version}`;
      let definition = this.versions.get(cacheKey);
      if (definition === undefined) {
        const record = await this.read(names.definition(id, version));
        if (record === undefined) return undefined;
        definition = parseFrozen(record.data);
        this.versions.set(cacheKey, definition);
      }
      return definition;
    }
    const cached = this.latest.get(id);
    if (cached !== undefined && this.ctx.clock.now() - cached.at < this.ctx.options.definitionCacheMs) {
      return cached.definition;
    }
    return this.latestReads.get(id);
  }

  /** Sorted by id; versions ascending. One key listing, then one read per id (its latest version). */
  async list(): Promise<DefinitionSummary[]> {
    this.assertOpen();
    const versions = new Map<string, number[]>();
    let keys: string[];
    try {
      keys = [];
      for await (const key of await this.kv.keys('v.>')) keys.push(key);
    } catch (err) {
      throw natsError('listing definitions', err);
    }
    for (const key of keys) {
      const [, idToken, versionToken] = key.split('.');
      const version = versionToken === undefined ? undefined : decodeTime(versionToken);
      if (idToken === undefined || version === undefined) continue;
      versions.set(idToken, [...(versions.get(idToken) ?? []), version]);
    }
    const summaries = await mapLimit([...versions.entries()], READ_CONCURRENCY, async ([idToken, list]) => {
      const sorted = [...list].sort((a, b) => a - b);
      const latestVersion = sorted[sorted.length - 1] as number;
      // The id is read from the stored definition: a long id's key token is a hash.
      const record = await this.read(`v.${idToken}.${encodeTime(latestVersion)}`);
      if (record === undefined) return undefined;
      const latest = JSON.parse(decoder.decode(record.data)) as WorkflowDefinition;
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

  /** Further calls are refused (the backend owns the connection). */
  async close(): Promise<void> {
    this.closed = true;
  }

  /** The latest version, read for the `get(id)` calls of one turn together (see the class doc). */
  private async readLatest(id: string): Promise<WorkflowDefinition | undefined> {
    this.assertOpen();
    const at = this.ctx.clock.now();
    const record = await this.read(this.ctx.names.latestDefinition(id));
    if (record === undefined) return undefined;
    const known = this.latest.get(id);
    const definition =
      known !== undefined && known.revision === record.revision ? known.definition : parseFrozen(record.data);
    this.latest.set(id, { definition, revision: record.revision, at });
    return definition;
  }

  private async read(key: string): Promise<{ revision: number; data: Uint8Array } | undefined> {
    try {
      return await this.ctx.kvGet(this.ctx.names.definitionsBucket, key);
    } catch (err) {
      throw natsError(`read of definition ${key}`, err, { key });
    }
  }

  /** Writes `key` only if it has no value; false when it exists. */
  private async create(key: string, data: Uint8Array): Promise<boolean> {
    return this.writeIf(key, data, 0);
  }

  private async writeIf(key: string, data: Uint8Array, revision: number): Promise<boolean> {
    try {
      await this.ctx.kvWrite(this.ctx.names.definitionsBucket, key, data, {
        expectedRevision: revision,
        retry: false,
      });
      return true;
    } catch (err) {
      if (isWrongRevision(err)) return false;
      throw natsError(`write of definition ${key}`, err, { key });
    }
  }

  /** Moves `l.<id>` to this version unless it already holds it or a newer one. */
  private async advanceLatest(definition: WorkflowDefinition, canonical: string): Promise<void> {
    const key = this.ctx.names.latestDefinition(definition.id);
    const data = encoder.encode(canonical);
    for (let attempt = 0; attempt < MAX_LATEST_ATTEMPTS; attempt += 1) {
      const current = await this.read(key);
      if (current === undefined) {
        if (await this.create(key, data)) return;
        continue;
      }
      if ((JSON.parse(decoder.decode(current.data)) as WorkflowDefinition).version >= definition.version)
        return;
      if (await this.writeIf(key, data, current.revision)) return;
    }
    throw new MultiAgentsError(
      ErrorCode.Conflict,
      `NatsDefinitionStore: the latest version of ${definition.id} kept changing`,
      { details: { workflowId: definition.id } },
    );
  }

  private assertOpen(): void {
    if (this.closed || this.ctx.isClosed) {
      throw new MultiAgentsError(ErrorCode.FailedPrecondition, 'NatsDefinitionStore is closed');
    }
  }
}

/** A stored definition as every caller shares it: parsed once, frozen so none can change it. */
function parseFrozen(data: Uint8Array): WorkflowDefinition {
  return deepFreeze(JSON.parse(decoder.decode(data)) as WorkflowDefinition);
}
