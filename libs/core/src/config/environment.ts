/**
 * An environment as an app passes it to a parser (its own variables): libraries never read the
 * process's environment themselves; apps' config modules hand it to the parsers libraries export.
 */
export type Environment = Readonly<Record<string, string | undefined>>;
