// JSON written byte for byte as Python's json module writes it (transformers' config files, vocab.json).

/**
 * JSON as Python's `json.dumps(obj, indent=2, sort_keys=True) + "\n"` prints it (how transformers saves
 * configs); numbers under `floatKeys` are written as floats even when whole.
 */
export function pythonJson(value: unknown, floatKeys: ReadonlySet<string> = new Set()): string {
  return `${pyValue(value, '', null, floatKeys)}\n`;
}

function pyValue(value: unknown, indent: string, key: string | null, floatKeys: ReadonlySet<string>): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`cannot write ${value} for ${key} as JSON`);
    return Number.isInteger(value) && !(key && floatKeys.has(key)) ? String(value) : pyFloat(value);
  }
  if (typeof value === 'string') return pythonJsonString(value);
  const inner = `${indent}  `;
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((v) => inner + pyValue(v, inner, null, floatKeys)).join(',\n')}\n${indent}]`;
  }
  if (typeof value === 'object') {
    const keys = Object.keys(value).sort(compareCodePoints);
    if (keys.length === 0) return '{}';
    const body = keys.map(
      (k) =>
        `${inner}${pythonJsonString(k)}: ${pyValue((value as Record<string, unknown>)[k], inner, k, floatKeys)}`,
    );
    return `{\n${body.join(',\n')}\n${indent}}`;
  }
  throw new Error(`cannot write a ${typeof value} as JSON`);
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Python's float repr: shortest round-trip digits, exponent form below 1e-4 and from 1e16 on. */
export function pyFloat(x: number): string {
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, expText] = x.toExponential().split('e');
  const exp = Number(expText);
  if (exp < -4 || exp >= 16)
    return `${mantissa}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  const text = String(x);
  return text.includes('.') ? text : `${text}.0`;
}

/** JSON string with Python's ensure_ascii escaping (everything outside space..tilde as \uXXXX). */
export function pythonJsonString(s: string): string {
  return JSON.stringify(s).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
