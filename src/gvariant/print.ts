/**
 * Short, human-readable rendering of GVariant values (close to GLib's text format) for `show`,
 * and a JSON-safe conversion for `--json`.
 */
import type { GValue, Variant } from './codec.js';

const isVariant = (v: GValue): v is Variant =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v) && 'type' in v;

/** Render a value; byte strings longer than `maxBytes` are summarised by length. */
export function formatValue(v: GValue, maxBytes = 32): string {
  if (v === null) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return v.length <= maxBytes ? `0x${v.toString('hex')}` : `<${v.length} bytes>`;
  if (isVariant(v)) return `<${formatValue(v.value, maxBytes)}>`;
  const items = v.map((x) => formatValue(x, maxBytes));
  const shown = items.length > 8 ? [...items.slice(0, 8), `… ${items.length - 8} more`] : items;
  return `[${shown.join(', ')}]`;
}

/** Convert to JSON-safe data: bigint → string, bytes → hex string, variants → {type, value}. */
export function toJson(v: GValue): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (isVariant(v)) return { type: v.type, value: toJson(v.value) };
  return v.map(toJson);
}
