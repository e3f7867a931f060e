/**
 * A user's value (parsed JSON, a flag, metadata) as a short string for an error message. JSON.stringify and
 * `${v}` recurse over nested arrays and objects, so a 40 KB file nesting 20,000 levels deep turned a validator's
 * message into a RangeError (maximum call stack size). This opens at most DEPTH levels and stops after about
 * LENGTH characters, so it costs O(1) whatever the value.
 * Pure module (no node:*): core modules and the browser use it.
 */

const DEPTH = 2;
const LENGTH = 60;

/** e.g. `3`, `"abc"`, `[1,[2,[…]]]`, `{"a":1,"b":[…]}`, `[0,0,0,…]`, `"aaaa…" (100000 characters)`. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') {
    return v.length > LENGTH ? `${JSON.stringify(v.slice(0, LENGTH))}… (${v.length} characters)` : JSON.stringify(v);
  }
  const out = { s: '' };
  write(v, DEPTH, out);
  return out.s.length > LENGTH ? `${out.s.slice(0, LENGTH)}…` : out.s;
}

/** Append `v` to `out.s` (compact JSON where it is JSON), opening `depth` more levels, stopping past LENGTH. */
function write(v: unknown, depth: number, out: { s: string }): void {
  switch (typeof v) {
    case 'string':
      out.s += JSON.stringify(v.length > LENGTH ? `${v.slice(0, LENGTH)}…` : v);
      return;
    case 'number':
    case 'boolean':
    case 'undefined':
      out.s += String(v);
      return;
    case 'bigint':
      out.s += `${v}n`;
      return;
    case 'symbol':
      out.s += v.toString();
      return;
    case 'function':
      out.s += 'a function';
      return;
  }
  if (v === null) {
    out.s += 'null';
    return;
  }
  if (ArrayBuffer.isView(v)) {
    out.s += `a ${v.constructor.name}`;
    return;
  }
  const isArray = Array.isArray(v);
  if (depth === 0) {
    out.s += isArray ? '[…]' : '{…}';
    return;
  }
  out.s += isArray ? '[' : '{';
  let first = true;
  const more = (): boolean => {
    if (out.s.length > LENGTH) {
      out.s += '…';
      return false;
    }
    if (!first) out.s += ',';
    first = false;
    return true;
  };
  if (isArray) {
    const a = v as unknown[];
    for (let i = 0; i < a.length && more(); i++) write(a[i], depth - 1, out);
  } else {
    // for-in stops early; Object.keys would first list every key of an object that has millions
    for (const k in v as object) {
      if (!Object.hasOwn(v as object, k)) continue;
      if (!more()) break;
      out.s += `${JSON.stringify(k.length > LENGTH ? `${k.slice(0, LENGTH)}…` : k)}:`;
      write((v as Record<string, unknown>)[k], depth - 1, out);
    }
  }
  out.s += isArray ? ']' : '}';
}

/**
 * `obj` as a config section with only the keys of `allowed` (own keys: not 'constructor' or 'toString'); `where` is
 * its dotted path ('' at the top), for the message "config: unknown key 'where.k' (allowed: ...)".
 */
export function checkConfigKeys(obj: unknown, allowed: object, where: string): Record<string, unknown> {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`config: '${where}' must be an object`);
  for (const k of Object.keys(obj)) {
    if (!Object.hasOwn(allowed, k)) throw new Error(`config: unknown key '${where ? `${where}.` : ''}${k}' (allowed: ${Object.keys(allowed).join(', ')})`);
  }
  return obj as Record<string, unknown>;
}

/** Throws "config: 'where' must be a <type of dflt>, got ..." unless `v` has the type of `dflt`. */
export function checkConfigType(v: unknown, dflt: unknown, where: string): void {
  if (typeof v !== typeof dflt) throw new Error(`config: '${where}' must be a ${typeof dflt}, got ${describeValue(v)}`);
}
