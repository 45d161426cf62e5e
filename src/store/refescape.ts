/**
 * ostree-ext's ref escaping (`refescape.rs`, shared/specs/ostree-container-format.md §5.1): maps an
 * arbitrary string (an image reference, a blob digest) to a valid ostree ref component.
 *
 * For each Unicode scalar value `c`, with `prevAlnum` = whether the previous one was ASCII
 * alphanumeric:
 *  - `[A-Za-z0-9]` and `-` pass through;
 *  - `/` passes through only when `prevAlnum` and another character follows, else `_2F_`;
 *  - `_` becomes `__`;
 *  - anything else becomes `_` + uppercase hex of the scalar value (at least 2 digits) + `_`.
 * The empty string and NUL are refused.
 *
 * Unescaping copies alphanumerics, `-` and `/`, turns `__` into `_` and `_HEX_` into its character.
 * It is stricter than upstream on malformed input (upstream silently accepts an unterminated
 * `_HEX` at the end, a lone trailing `_` and a `+` sign): those are errors here.
 */
import { UsageError } from '../errors.js';

const isAsciiAlnum = (c: string): boolean => /^[A-Za-z0-9]$/.test(c);

/** Escape one string (upstream `escape_for_ref`). */
export function escapeRef(s: string): string {
  if (s === '') throw new UsageError('cannot escape an empty string for an ostree ref');
  const chars = [...s];
  let out = '';
  let prevAlnum = false;
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\0') throw new UsageError(`cannot escape ${JSON.stringify(s)} for an ostree ref: embedded NUL`);
    const alnum = isAsciiAlnum(c);
    const hasNext = i + 1 < chars.length;
    if (alnum) out += c;
    else if (c === '/' && prevAlnum && hasNext) out += c;
    else if (c === '-') out += c;
    else if (c === '_') out += '__';
    else out += `_${c.codePointAt(0)!.toString(16).toUpperCase().padStart(2, '0')}_`;
    prevAlnum = alnum;
  }
  return out;
}

/** Inverse of escapeRef (upstream `unescape_for_ref`). */
export function unescapeRef(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (isAsciiAlnum(c) || c === '-' || c === '/') {
      out += c;
      continue;
    }
    if (c !== '_') throw new UsageError(`cannot unescape ostree ref component ${JSON.stringify(s)}: invalid character ${JSON.stringify(c)} at ${i}`);
    if (s[i + 1] === '_') {
      out += '_';
      i++;
      continue;
    }
    const end = s.indexOf('_', i + 1);
    const hex = end < 0 ? '' : s.slice(i + 1, end);
    if (end < 0 || !/^[0-9A-Fa-f]{1,8}$/.test(hex)) {
      throw new UsageError(`cannot unescape ostree ref component ${JSON.stringify(s)}: bad escape at ${i}`);
    }
    const cp = parseInt(hex, 16);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      throw new UsageError(`cannot unescape ostree ref component ${JSON.stringify(s)}: _${hex}_ is not a Unicode scalar value`);
    }
    out += String.fromCodePoint(cp);
    i = end;
  }
  return out;
}

/** `prefix/escape(s)` (upstream `prefix_escape_for_ref`). */
export function prefixEscapeRef(prefix: string, s: string): string {
  return `${prefix}/${escapeRef(s)}`;
}

/** Strip `prefix/` from a ref and unescape the rest (upstream `unprefix_unescape_ref`). */
export function unprefixUnescapeRef(prefix: string, ref: string): string {
  if (!ref.startsWith(`${prefix}/`)) throw new UsageError(`ref ${ref} does not start with ${prefix}/`);
  return unescapeRef(ref.slice(prefix.length + 1));
}

export const IMAGE_REF_PREFIX = 'ostree/container/image';
export const LAYER_REF_PREFIX = 'ostree/container/blob';
/** Our out-of-band image metadata (pure ostree images stored in `direct` mode). */
export const META_REF_PREFIX = 'ostree/container/meta';

export const imageRefFor = (imgref: string): string => prefixEscapeRef(IMAGE_REF_PREFIX, imgref);
export const metaRefFor = (imgref: string): string => prefixEscapeRef(META_REF_PREFIX, imgref);
export const layerRefFor = (digest: string): string => prefixEscapeRef(LAYER_REF_PREFIX, digest);
