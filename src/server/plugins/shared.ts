// Marks a plugin as not encapsulated, so its decorators and hooks apply to the whole app (what fastify-plugin does).
import type { FastifyPluginAsync } from 'fastify';

export function shared<Options extends object>(
  name: string,
  plugin: FastifyPluginAsync<Options>,
): FastifyPluginAsync<Options> {
  const marked = plugin as FastifyPluginAsync<Options> & Record<symbol, unknown>;
  marked[Symbol.for('skip-override')] = true;
  marked[Symbol.for('fastify.display-name')] = name;
  return marked;
}
