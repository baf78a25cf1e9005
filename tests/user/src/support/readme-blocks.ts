/**
 * The runnable code blocks of a Markdown file, as the README's Development section defines them:
 * a fenced block whose info string has `runnable=<session>` (plus `file=<name>` or `background`).
 */

/** One runnable block. */
export interface RunnableBlock {
  /** 1-based line of the opening fence, for messages. */
  readonly line: number;
  /** The info string's first word (`sh`, `ts`, `json`…). */
  readonly language: string;
  /** Which shell session runs it (`project`, `repo`). */
  readonly session: string;
  /** Write the block to this file (in the session's current folder) instead of running it. */
  readonly file?: string;
  /** Start it as a process that stays up, and go on once it listens. */
  readonly background: boolean;
  /** The block's text, ending with a newline. */
  readonly code: string;
}

/** One command of a shell block: a line, its `\` continuations and its heredoc bodies. */
export interface ShellCommand {
  readonly text: string;
  /** 1-based line in the Markdown file where it starts. */
  readonly line: number;
  /** 0, or the code named by a trailing `# … exit code N` comment. */
  readonly expectedExitCode: number;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;

/** Every runnable block, in order. Unknown attributes are an error (a typo would skip a block). */
export function runnableBlocks(markdown: string): RunnableBlock[] {
  const lines = markdown.split('\n');
  const blocks: RunnableBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] as string);
    if (!open) continue;
    const fence = open[1] as string;
    const words = (open[2] ?? '')
      .trim()
      .split(/\s+/)
      .filter((w) => w !== '');
    let end = i + 1;
    while (end < lines.length) {
      const close = FENCE.exec(lines[end] as string);
      if (
        close &&
        (close[1] as string)[0] === fence[0] &&
        (close[1] as string).length >= fence.length &&
        (close[2] ?? '').trim() === ''
      )
        break;
      end++;
    }
    const body = lines.slice(i + 1, end);
    const start = i;
    i = end;
    const attributes = words.slice(1);
    const session = attributes.find((w) => w.startsWith('runnable='))?.slice('runnable='.length);
    if (session === undefined) continue;
    if (session === '') throw new Error(`line ${start + 1}: runnable= needs a session name`);
    let file: string | undefined;
    let background = false;
    for (const attribute of attributes) {
      if (attribute.startsWith('runnable=')) continue;
      if (attribute.startsWith('file=') && attribute.length > 'file='.length)
        file = attribute.slice('file='.length);
      else if (attribute === 'background') background = true;
      else throw new Error(`line ${start + 1}: unknown attribute "${attribute}" of a runnable block`);
    }
    if (file !== undefined && background)
      throw new Error(`line ${start + 1}: a block is a file or a background process, not both`);
    blocks.push({
      line: start + 1,
      language: words[0] ?? '',
      session,
      ...(file === undefined ? {} : { file }),
      background,
      code: body.length === 0 ? '' : `${body.join('\n')}\n`,
    });
  }
  return blocks;
}

/** The delimiters of the heredocs a line opens (`<<'YAML'`, `<<EOF`, `<<-"END"`). */
function heredocDelimiters(line: string): { word: string; indented: boolean }[] {
  const found: { word: string; indented: boolean }[] = [];
  for (const match of line.matchAll(/<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/g)) {
    found.push({ word: match[3] as string, indented: match[1] === '-' });
  }
  return found;
}

/**
 * A shell block's commands: blank lines and comment lines between commands are dropped, a line
 * ending in `\` goes on on the next, and a heredoc's body belongs to the command that opens it.
 */
export function shellCommands(code: string, firstLine = 1): ShellCommand[] {
  const lines = code.replace(/\n$/, '').split('\n');
  const commands: ShellCommand[] = [];
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] as string;
    if (first.trim() === '' || first.trim().startsWith('#')) continue;
    const start = i;
    const head: string[] = [first];
    while ((lines[i] as string).endsWith('\\') && i + 1 < lines.length) head.push(lines[++i] as string);
    const text = [...head];
    for (const { word, indented } of head.flatMap(heredocDelimiters)) {
      for (;;) {
        if (i + 1 >= lines.length) throw new Error(`line ${firstLine + start}: heredoc ${word} never ends`);
        const next = lines[++i] as string;
        text.push(next);
        if ((indented ? next.replace(/^\t+/, '') : next) === word) break;
      }
    }
    const exit = /#[^'"]*\bexit code (\d+)\b/.exec(head.join('\n'));
    commands.push({
      text: text.join('\n'),
      line: firstLine + start,
      expectedExitCode: exit ? Number(exit[1]) : 0,
    });
  }
  return commands;
}

/**
 * Replaces the placeholders a reader fills in themselves (`<txId>`, `<clone>`) with `values`;
 * throws when the text needs one that has no value yet.
 */
export function fillPlaceholders(text: string, values: Readonly<Record<string, string | undefined>>): string {
  return text.replace(/<([A-Za-z]+)>/g, (whole, name: string) => {
    if (!(name in values)) return whole;
    const value = values[name];
    if (value === undefined) throw new Error(`${whole} is used before anything gave it a value: ${text}`);
    return value;
  });
}
