#!/usr/bin/env node
// A stand-in for jq where none is installed, covering only what the destroy and janitor scripts ask of it:
// `jq [-e] [-r] FILTER [FILE]` with FILTER built from `.field`, numbers, `+` and `*`. Anything else is refused,
// so a script that starts using more of jq fails its tests here instead of passing on a guess.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const flags = args.filter((a) => /^-[a-z]+$/.test(a)).join('');
const [filter, file] = args.filter((a) => !/^-[a-z]+$/.test(a));
if (!filter || /[^\w.+*\s]/.test(filter)) {
  process.stderr.write(`jq stand-in: unsupported filter ${filter}\n`);
  process.exit(2);
}
const input = JSON.parse(readFileSync(file ?? 0, 'utf8'));

function term(text) {
  const t = text.trim();
  if (/^\d+$/.test(t)) return Number(t);
  const m = /^\.(\w+)$/.exec(t);
  if (!m) {
    process.stderr.write(`jq stand-in: unsupported term ${t}\n`);
    process.exit(2);
  }
  return input?.[m[1]] ?? null;
}

// jq's rules for these operators: null is the identity of +, and multiplying with null is an error.
const value = filter
  .split('+')
  .map((sum) =>
    sum
      .split('*')
      .map(term)
      .reduce((a, b) => {
        if (a === null || b === null) {
          process.stderr.write('jq: error: null cannot be multiplied\n');
          process.exit(5);
        }
        return a * b;
      }),
  )
  .reduce((a, b) => (a === null ? b : b === null ? a : a + b));

process.stdout.write(`${flags.includes('r') && typeof value === 'string' ? value : JSON.stringify(value)}\n`);
process.exit(flags.includes('e') && (value === null || value === false) ? 1 : 0);
