/** One entry of the {@link PublicationStore}. */
export interface Publication {
  readonly id: string;
  readonly question: string;
  state: 'draft' | 'published' | 'discarded' | 'unpublished';
  title?: string;
  body?: string;
  sources?: readonly string[];
}

/**
 * The example's stand-in for a CMS: drafts opened for a question, published, unpublished or
 * discarded. Keyed by run id, so a redelivered command changes nothing (each operation is
 * idempotent), and it counts every effect so tests can check that nothing was done twice.
 */
export class PublicationStore {
  private readonly entries = new Map<string, Publication>();
  /** Every operation that changed an entry, in order: `<operation> <id>`. */
  readonly log: string[] = [];

  open(id: string, question: string): Publication {
    const existing = this.entries.get(id);
    if (existing) return existing;
    const entry: Publication = { id, question, state: 'draft' };
    this.entries.set(id, entry);
    this.log.push(`open ${id}`);
    return entry;
  }

  discard(id: string): void {
    const entry = this.entries.get(id);
    if (!entry || entry.state === 'discarded') return;
    entry.state = 'discarded';
    this.log.push(`discard ${id}`);
  }

  publish(id: string, page: { title: string; body: string; sources: readonly string[] }): Publication {
    const entry = this.entries.get(id);
    if (!entry) throw new Error(`no draft ${id}`);
    if (entry.state === 'published') return entry;
    Object.assign(entry, page, { state: 'published' });
    this.log.push(`publish ${id}`);
    return entry;
  }

  unpublish(id: string): void {
    const entry = this.entries.get(id);
    if (!entry || entry.state !== 'published') return;
    entry.state = 'unpublished';
    this.log.push(`unpublish ${id}`);
  }

  get(id: string): Publication | undefined {
    return this.entries.get(id);
  }
}
