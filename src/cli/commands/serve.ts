// `tiny-llm serve`: serves the chat page and the APIs on a model directory until SIGTERM/SIGINT.
import { runService } from '../../server/startup/serve.js';
import type { Command } from '../command.js';
import { parseServeArgs, serveFlagsUsage } from '../serve-options.js';

const usage = `usage: tiny-llm serve [options]

${serveFlagsUsage}`;

export const command: Command = {
  name: 'serve',
  summary: 'serve the chat page, /generate and the OpenAI-compatible API',
  usage,
  async run(argv) {
    return runService(parseServeArgs(argv));
  },
};
