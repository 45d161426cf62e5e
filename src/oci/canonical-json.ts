/**
 * Canonical JSON, as written for every config, manifest and index.json this module produces.
 *
 * Definition (RFC 8785 "JSON Canonicalization Scheme", which is what ostree-ext's ocidir writes
 * through the `canon_json::CanonicalFormatter` of the canon-json crate, see
 * specs/ostree-container-format.md §4.1):
 *
 * - no insignificant whitespace anywhere; no trailing newline;
 * - object members sorted by key, comparing keys as sequences of UTF-16 code units (which is
 *   JavaScript's default string order); duplicate keys cannot occur;
 * - strings escaped exactly as ECMAScript `JSON.stringify` does: `\"`, `\\`, `\b \f \n \r \t`,
 *   other C0 controls as `\u00xx` (lowercase hex), lone surrogates as `\udxxx`; everything else,
 *   including non-ASCII, raw UTF-8;
 * - numbers as ECMAScript Number-to-String (integers without exponent or `.0`); NaN/Infinity
 *   are rejected; `undefined` members are omitted.
 *
 * Consequence: the bytes (and so the digest) of a document depend only on its value, which makes
 * writing the same image twice give identical manifest/config digests.
 */
import { OciFormatError } from './errors.js';

function ser(v: unknown, path: string): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'number':
      if (!Number.isFinite(v)) throw new OciFormatError(`canonical JSON: ${path} is not a finite number`);
      return JSON.stringify(v);
    case 'bigint':
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))
        throw new OciFormatError(`canonical JSON: ${path} is a bigint outside the safe integer range`);
      return v.toString();
    case 'object': {
      const o = v as { toJSON?: () => unknown };
      if (typeof o.toJSON === 'function') return ser(o.toJSON(), path);
      if (Array.isArray(v))
        return `[${v.map((x, i) => (x === undefined || typeof x === 'function' ? 'null' : ser(x, `${path}[${i}]`))).join(',')}]`;
      const rec = v as Record<string, unknown>;
      const keys = Object.keys(rec)
        .filter((k) => rec[k] !== undefined && typeof rec[k] !== 'function')
        .sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${ser(rec[k], `${path}.${k}`)}`).join(',')}}`;
    }
    default:
      throw new OciFormatError(`canonical JSON: ${path} has unsupported type ${typeof v}`);
  }
}

/** Canonical JSON text of `value` (see module comment). */
export function canonicalJson(value: unknown): string {
  return ser(value, '$');
}

/** Canonical JSON of `value` as UTF-8 bytes. */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
