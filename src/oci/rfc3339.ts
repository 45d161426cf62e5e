/**
 * RFC 3339 date-times as the OCI image config's `created` must hold them: what Go's
 * encoding/json accepts for a `time.Time` (strict RFC 3339 since Go 1.20, `time.parseRFC3339`),
 * which is how skopeo and containers/image read a config. Older Go parsers accept a superset.
 */

/** `YYYY-MM-DDTHH:MM:SS[.digits](Z|±HH:MM)`: upper-case `T` and `Z`, ASCII digits only. */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:Z|([+-])(\d{2}):(\d{2}))$/;

/** Seconds since the epoch of 0000-01-01T00:00:00Z and of 9999-12-31T23:59:59Z. */
export const MIN_RFC3339_SECONDS = -62167219200;
export const MAX_RFC3339_SECONDS = 253402300799;

const isLeap = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysIn = (m: number, y: number): number => (m === 2 ? (isLeap(y) ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31);

/** Days from 1970-01-01 to a proleptic Gregorian date (Hinnant's days_from_civil). */
function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

/**
 * The instant `s` names, in whole seconds since the epoch (fraction dropped), or null when `s`
 * is not a date-time Go would read: year 0000–9999, a day the month has, hour < 24, minute and
 * second < 60 (no leap second), offset hour < 24 and minute < 60.
 */
export function parseRfc3339Seconds(s: string): number | null {
  const m = RFC3339.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > daysIn(mo, y) || h > 23 || mi > 59 || se > 59) return null;
  let offset = 0;
  if (m[7] !== undefined) {
    const oh = Number(m[8]);
    const om = Number(m[9]);
    if (oh > 23 || om > 59) return null;
    offset = (m[7] === '-' ? -1 : 1) * (oh * 3600 + om * 60);
  }
  return daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset;
}

/**
 * `YYYY-MM-DDTHH:MM:SSZ` for an instant in whole seconds, or null outside years 0000–9999 (where
 * RFC 3339 has no form, and JavaScript would write `+010000-…`).
 */
export function formatRfc3339Seconds(seconds: number | bigint): string | null {
  if (seconds < MIN_RFC3339_SECONDS || seconds > MAX_RFC3339_SECONDS) return null;
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}
