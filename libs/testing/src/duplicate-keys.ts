/**
 * The keys that appear more than once in one object of a JSON text, as paths (`$.component`,
 * `$.err.code`). `JSON.parse` keeps the last of two equal keys silently; log collectors differ
 * (some keep the first, some reject the line), so a log line must never have any.
 *
 * @example
 * expect(duplicateJsonKeys('{"a":1,"a":2}')).toEqual(['$.a']);
 */
export function duplicateJsonKeys(text: string): string[] {
  const duplicates: string[] = [];
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at ${i} in ${text.slice(0, 200)}`);
  };
  const space = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] as string)) i++;
  };
  const string = (): string => {
    if (text[i] !== '"') fail('expected a string');
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (path: string): void => {
    space();
    const c = text[i];
    if (c === '{') {
      i++;
      const seen = new Set<string>();
      space();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        space();
        const key = string();
        if (seen.has(key)) duplicates.push(`${path}.${key}`);
        seen.add(key);
        space();
        if (text[i++] !== ':') fail('expected ":"');
        value(`${path}.${key}`);
        space();
        const next = text[i++];
        if (next === '}') return;
        if (next !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      space();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let index = 0; ; index++) {
        value(`${path}[${index}]`);
        space();
        const next = text[i++];
        if (next === ']') return;
        if (next !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') {
      string();
      return;
    }
    const start = i;
    while (i < text.length && !',]} \t\n\r'.includes(text[i] as string)) i++;
    if (i === start) fail('expected a value');
  };
  JSON.parse(text); // anything that is not JSON at all fails here, with JSON.parse's message
  value('$');
  return duplicates;
}
