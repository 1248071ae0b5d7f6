/**
 * The words a POSIX shell makes of one command line, for the commands the docs show: blanks split,
 * '...' and "..." quote (a backslash escapes " \ $ ` in double quotes, anything outside quotes),
 * and a # that starts a word starts a comment. No expansions: a $ or a glob is kept as typed.
 */
export function shellWords(line: string): string[] {
  const words: string[] = [];
  // null between words; '' once a word has started (an empty '' or "" is still a word).
  let word: string | null = null;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (quote === "'") {
      if (c === "'") quote = null;
      else word = `${word ?? ''}${c}`;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1] as string)) word = `${word ?? ''}${line[++i] as string}`;
      else word = `${word ?? ''}${c}`;
    } else if (c === ' ' || c === '\t') {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === '#' && word === null) {
      break;
    } else {
      word ??= '';
      if (c === "'" || c === '"') quote = c;
      else if (c === '\\' && i + 1 < line.length) word += line[++i] as string;
      else word += c;
    }
  }
  if (quote) throw new Error(`unterminated ${quote} in: ${line}`);
  if (word !== null) words.push(word);
  return words;
}
