// Lists given to `serve` as repeated or comma-separated values ($API_KEY, $CORS_ORIGIN), in a module without dependencies.

/** The entries of flag or environment values: comma-separated, trimmed, blanks dropped. */
export function parseList(values: ReadonlyArray<string | undefined>): string[] {
  return values
    .flatMap((v) => (v ?? '').split(','))
    .map((k) => k.trim())
    .filter((k) => k !== '');
}
