import { defineTool, type AgentTool } from '@multiagents/agents';
import { CORPUS, type CorpusDocument } from './corpus';

/** Most hits one search returns. */
export const MAX_SEARCH_HITS = 3;

/** One search hit: the document and how many query words it contains. */
export interface SearchHit {
  readonly id: string;
  readonly title: string;
  readonly text: string;
  readonly score: number;
}

const STOP_WORDS = new Set([
  'a',
  'an',
  'the',
  'of',
  'and',
  'or',
  'to',
  'in',
  'is',
  'how',
  'why',
  'what',
  'do',
  'does',
]);

function words(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^a-z0-9-]+/)
    .filter((w) => w.length > 1 && !STOP_WORDS.has(w));
}

/** Ranks `corpus` by the query words each document contains (title and text), best first. */
export function searchCorpus(
  query: string,
  corpus: readonly CorpusDocument[] = CORPUS,
  limit = MAX_SEARCH_HITS,
): SearchHit[] {
  const wanted = new Set(words(query));
  return corpus
    .map((doc) => {
      const have = new Set(words(`${doc.title} ${doc.text}`));
      let score = 0;
      for (const w of wanted) if (have.has(w)) score += 1;
      return { id: doc.id, title: doc.title, text: doc.text, score };
    })
    .filter((hit) => hit.score > 0)
    .sort((a, b) => b.score - a.score || a.id.localeCompare(b.id))
    .slice(0, limit);
}

/** The researchers' tool: keyword search over the bundled corpus. */
export const searchCorpusTool: AgentTool<never, unknown> = defineTool<
  { query: string },
  { hits: SearchHit[] }
>({
  name: 'search_corpus',
  description: 'Keyword search over the bundled corpus; returns up to three documents with their ids',
  parameters: {
    type: 'object',
    properties: { query: { type: 'string', description: 'the words to look for' } },
    required: ['query'],
  },
  handler: ({ query }) => ({ hits: searchCorpus(query) }),
});
