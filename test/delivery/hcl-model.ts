// Loads a Terraform module (every *.tf file of a folder) with an HCL parser and exposes its blocks as plain data.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from '@cdktf/hcl2json';

export type Json = { [key: string]: unknown };
export type Module = { doc: Json; text: string };

export const repoRoot = join(import.meta.dirname, '../..');

// A Terraform interpolation as hcl2json writes it: tf('var.cpu') is "${var.cpu}".
export const tf = (expression: string): string => `\${${expression}}`;

// Merges every *.tf file of a module into one JSON document, block kinds concatenated.
export async function loadModule(dir: string): Promise<Module> {
  const doc: Json = {};
  let text = '';
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.tf'))) {
    const source = readFileSync(join(dir, file), 'utf8');
    text += source;
    const parsed = (await parse(file, source)) as Json;
    for (const [kind, blocks] of Object.entries(parsed)) {
      if (Array.isArray(blocks)) doc[kind] = [...((doc[kind] as unknown[]) ?? []), ...blocks];
      else {
        const into = (doc[kind] ?? {}) as Json;
        for (const [key, value] of Object.entries(blocks as Json)) {
          // variable/output: name → blocks; resource/data: type → name → blocks.
          into[key] = Array.isArray(value) ? value : { ...((into[key] as Json) ?? {}), ...(value as Json) };
        }
        doc[kind] = into;
      }
    }
  }
  return { doc, text };
}

/** Parses one HCL file (a lock file, say) into plain data. */
export async function loadHclFile(file: string): Promise<Json> {
  return (await parse(file, readFileSync(file, 'utf8'))) as Json;
}

// The first block of a list of blocks, or the object itself.
export function obj(value: unknown): Json {
  return Array.isArray(value) ? ((value[0] ?? {}) as Json) : ((value ?? {}) as Json);
}

/** Every resource of one type, by name. */
export function resources(doc: Json, type: string): Record<string, Json> {
  const byName = obj(doc.resource)[type] as Record<string, unknown[]> | undefined;
  return Object.fromEntries(Object.entries(byName ?? {}).map(([name, blocks]) => [name, obj(blocks)]));
}

/** Every resource of the module as `type.name` → block. */
export function allResources(doc: Json): Map<string, Json> {
  const out = new Map<string, Json>();
  for (const type of Object.keys(obj(doc.resource))) {
    for (const [name, block] of Object.entries(resources(doc, type))) out.set(`${type}.${name}`, block);
  }
  return out;
}

/** All locals of the module, merged. */
export function locals(doc: Json): Json {
  return Object.assign({}, ...((doc.locals as Json[] | undefined) ?? []));
}

/** A variable's block. */
export function variable(doc: Json, name: string): Json {
  return obj((obj(doc.variable) as Record<string, unknown>)[name]);
}

/**
 * The regular expression of a `can(regex("…", var.x))` validation, as a JavaScript RegExp. Our patterns use only
 * syntax that RE2 and JavaScript read alike (classes, anchors, quantifiers, escaped dots).
 */
export function validationRegex(doc: Json, name: string): RegExp {
  const condition = String(obj(variable(doc, name).validation).condition);
  const m = /can\(regex\("((?:[^"\\]|\\.)*)", var\.\w+\)\)/.exec(condition);
  if (!m) throw new Error(`variable ${name}: no can(regex(...)) validation in ${condition}`);
  return new RegExp((m[1] ?? '').replace(/\\\\/g, '\\'));
}
