// Request validators compiled at build time (ajv's standalone code, bundled into the CLI): a start runs them instead of generating them.
import { createHash } from 'node:crypto';
import AjvCompiler, {
  type BuildCompilerFromPool,
  type RouteDefinition,
  StandaloneValidator,
} from '@fastify/ajv-compiler';

type Validate = ReturnType<ReturnType<BuildCompilerFromPool>>;

/** Validators by key (see validatorKey): what the generated module (validatorsModule) exports. */
export type PrecompiledValidators = Readonly<Record<string, unknown>>;

/**
 * A route part's key: method, URL and part, and a hash of its schema and of the ajv options it is compiled
 * with, so a validator is never used for a schema or options other than the ones it was generated from.
 */
export function validatorKey(route: RouteDefinition, customOptions: unknown): string {
  const hash = createHash('sha256')
    .update(JSON.stringify({ schema: route.schema, options: customOptions ?? {} }))
    .digest('hex')
    .slice(0, 32);
  return `${route.method} ${route.url} ${route.httpPart} ${hash}`;
}

/** The ajv options that decide the generated code (the `code` option only asks ajv to keep the source). */
function optionsOf(options: Parameters<BuildCompilerFromPool>[1]): unknown {
  const { code: _code, ...rest } = (options?.customOptions ?? {}) as Record<string, unknown>;
  return rest;
}

/**
 * Fastify's validator factory that takes each route part's validator from `validators`; one that is not
 * there (a schema changed since the build) is compiled by ajv as usual, which is then created on first need.
 */
export function precompiledValidatorFactory(validators: PrecompiledValidators): BuildCompilerFromPool {
  const ajv = AjvCompiler();
  return (externalSchemas, options) => {
    const customOptions = optionsOf(options);
    let compile: ReturnType<BuildCompilerFromPool> | null = null;
    return (route) => {
      const found = validators[validatorKey(route, customOptions)];
      if (typeof found === 'function') return found as Validate;
      compile ??= ajv(externalSchemas, options);
      return compile(route);
    };
  };
}

/** Fastify's validator factory that compiles with ajv as usual and hands each validator's standalone module code to `record`. */
export function recordingValidatorFactory(
  record: (key: string, code: string) => void,
): BuildCompilerFromPool {
  let current: unknown = {};
  const standalone = StandaloneValidator({
    readMode: false,
    storeFunction: (route, code) => record(validatorKey(route, current), code),
  });
  return (externalSchemas, options) => {
    const customOptions = optionsOf(options);
    const compile = standalone(externalSchemas, options);
    return (route) => {
      current = customOptions;
      return compile(route);
    };
  };
}

/** One CommonJS module exporting each recorded validator under its key, each in a scope of its own. */
export function validatorsModule(recorded: ReadonlyMap<string, string>): string {
  const parts = ['"use strict";'];
  for (const [key, code] of [...recorded].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    parts.push(
      `exports[${JSON.stringify(key)}] = (function () { const module = { exports: {} }; const exports = module.exports;\n${code}\nreturn module.exports; })();`,
    );
  }
  return `${parts.join('\n')}\n`;
}
