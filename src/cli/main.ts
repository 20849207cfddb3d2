// The `tiny-llm` command line: finds the sub-command and turns errors into exit codes (2 usage, 1 runtime).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from './command.js';
import { UsageError } from './command.js';

// Each command loads lazily so `serve` starts without the trainer's code and vice versa.
const commands: Record<string, () => Promise<{ command: Command }>> = {
  generate: () => import('./commands/generate.js'),
  tokenize: () => import('./commands/tokenize.js'),
  export: () => import('./commands/export.js'),
  'create-model': () => import('./commands/create-model.js'),
  eval: () => import('./commands/eval.js'),
  serve: () => import('./commands/serve.js'),
  start: () => import('./commands/start.js'),
};

function mainUsage(): string {
  return [
    'usage: tiny-llm <command> [options]',
    '',
    'commands:',
    ...Object.keys(commands).map((name) => `  ${name}`),
    '',
    'Run `tiny-llm <command> --help` for the options of one command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${mainUsage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`${mainUsage()}\n\ntiny-llm: unknown command "${name}"\n`);
    return 2;
  }
  const { command } = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${command.usage}\n\ntiny-llm ${name}: ${err.message}\n`);
      return 2;
    }
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`tiny-llm ${name}: ${message}\n`);
    if (process.env.TINY_LLM_DEBUG && err instanceof Error && err.stack)
      process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

/** Runs the command line of this process and sets its exit code. */
export function runCli(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`tiny-llm: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

// Run directly (from source, under tsx); the built CLI's launcher calls runCli itself.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) runCli();
