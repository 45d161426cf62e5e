/**
 * Image mutations for the fuzzer. Each takes a fresh copy of a valid base image (`ImageDraft`) and
 * changes it; it returns what it did and what the importer must do about it:
 *
 *  - `fail`: the image is corrupt in a way the importer must notice (an OstreeOciError);
 *  - `ok`:   the change is a no-op for the importer (it must import the same commit);
 *  - `any`:  either outcome is right, as long as a success imports the original commit with the
 *            commitmeta the mutated image carries, and `ostree fsck` stays clean.
 *
 * `cap` (with `fail`): the error must be a LimitError naming this cap. Most edits recompute blob
 * digests, sizes, diff_ids and the final-diffid label (so only ostree-level checks can catch them);
 * the `oci-*` classes break those on purpose.
 */
import { contentChecksum } from '../../../src/ostree/checksum.js';
import type { ImportLimits } from '../../../src/limits.js';
import { cloneEntry, fixChecksum, headerOffsets, writeTar, type Entry } from './tar.js';
import { compressBytes, compressionOf, sha256, type ImageDraft, type Json, type LayerDraft } from './layout.js';
import type { Rng } from './rng.js';

export type Expect = 'fail' | 'ok' | 'any';

export interface Mutation {
  cls: string;
  detail: string;
  expect: Expect;
  cap?: keyof ImportLimits;
  /** Limits for this case (OSTREE_OCI_LIMITS of the importer). */
  limits?: Partial<ImportLimits>;
  /** unencapsulate must fail but image pull may store it (as a derived image). */
  derived?: boolean;
  /** The importer must fail for unencapsulate only (pull may accept, e.g. derived layers). */
  unencapsulateExpect?: Expect;
  /**
   * image pull into a repository that already stores the image or a layer with that diffid reuses
   * it without reading the blob (as containers/storage does): any outcome is right there. Set for
   * changes of blobs only (diff_ids intact) and of limits only.
   */
  pullMayReuse?: boolean;
  /** image pull may store the image as a non-ostree (all layers derived) image. */
  pullNonOstree?: boolean;
}

/** What the fuzzer knows about a base image. */
export interface BaseInfo {
  name: string;
  draft: ImageDraft;
  commit: string;
  commitmeta: Buffer | null;
  /** Parsed entries of each layer. */
  entries: Entry[][];
  /** Shape numbers, measured the way the importer measures them. */
  shape: {
    treeDepth: number;
    dirEntries: number;
    pathLength: number;
    metadataSize: number;
    xattrsSize: number;
    /** max over layers of decompressed / compressed size */
    layerRatio: number;
  };
}

const REPO = 'sysroot/ostree/repo/';
const OBJ_RE = /^(?:\.\/)?sysroot\/ostree\/repo\/objects\/([0-9a-f]{2})\/([0-9a-f]{62})\.([a-z.-]+)$/;

export function objectOf(e: Entry): { checksum: string; ext: string } | null {
  const m = OBJ_RE.exec(e.name);
  return m ? { checksum: m[1]! + m[2]!, ext: m[3]! } : null;
}

export const objectName = (checksum: string, ext: string): string => `${REPO}objects/${checksum.slice(0, 2)}/${checksum.slice(2)}.${ext}`;

/** Base fuzz limits: low enough that bombs are cheap to build, high enough for every base image. */
export const FUZZ_LIMITS: Partial<ImportLimits> = { layerRatioFloor: 4 << 20, maxLayerRatio: 64 };

// ---------------------------------------------------------------------------------------------

interface Ctx {
  rng: Rng;
  d: ImageDraft;
  base: BaseInfo;
}

const entriesOf = (c: Ctx, i: number): Entry[] => c.base.entries[i]!.map(cloneEntry);

function setEntries(c: Ctx, i: number, es: Entry[], opts: { endMarker?: boolean } = {}): void {
  setTar(c.d.layers[i]!, writeTar(es, opts));
}

function setTar(l: LayerDraft, tar: Buffer): void {
  l.tar = tar;
  l.dirty = true;
}

/** A random layer index, optionally only those with an entry matching `pred`. */
function pickEntry(c: Ctx, pred: (e: Entry, layer: number) => boolean): { layer: number; index: number; e: Entry } | null {
  const all: Array<{ layer: number; index: number; e: Entry }> = [];
  c.base.entries.forEach((es, layer) => es.forEach((e, index) => pred(e, layer) && all.push({ layer, index, e })));
  return all.length ? c.rng.pick(all) : null;
}

function flipBytes(rng: Rng, b: Buffer, n: number): Buffer {
  const out = Buffer.from(b);
  for (let k = 0; k < n; k++) {
    const i = rng.int(out.length);
    out[i] = out[i]! ^ (1 << rng.int(8) || 1);
  }
  return out;
}

const isObjWith = (exts: string[]) => (e: Entry) => {
  const o = objectOf(e);
  return !!o && exts.includes(o.ext) && e.data.length > 0 && (e.type === '0' || e.type === '7');
};

const TRAVERSAL_NAMES = [
  '../x',
  '../../../../etc/passwd',
  '/etc/passwd',
  '/sysroot/ostree/repo/objects/00/' + '0'.repeat(62) + '.file',
  'sysroot/../../x',
  'sysroot/ostree/repo/objects/../../../../../tmp/evil',
  './../x',
  'a/b/../../../c',
  'usr/..',
  '..',
  'sysroot/ostree/repo/objects/ab/../../../../../../etc/shadow',
];

type MutFn = (c: Ctx) => Mutation;

const M: Record<string, MutFn> = {
  // --- object bytes (digests recomputed: only object checksums can catch these) ----------------
  'flip-object': (c) => {
    const p = pickEntry(c, isObjWith(['file', 'dirtree', 'dirmeta', 'commit', 'file-xattrs', 'file-xattrs-link']))!;
    const es = entriesOf(c, p.layer);
    const n = c.rng.range(1, 3);
    es[p.index]!.data = flipBytes(c.rng, es[p.index]!.data, n);
    setEntries(c, p.layer, es);
    return { cls: 'flip-object', detail: `${n} bit(s) of ${p.e.name} (layer ${p.layer})`, expect: 'fail' };
  },
  'flip-commitmeta': (c) => {
    const p = pickEntry(c, isObjWith(['commitmeta']));
    if (!p) return M['flip-object']!(c);
    const es = entriesOf(c, p.layer);
    es[p.index]!.data = flipBytes(c.rng, es[p.index]!.data, c.rng.range(1, 2));
    setEntries(c, p.layer, es);
    return { cls: 'flip-commitmeta', detail: p.e.name, expect: 'any' };
  },
  'resize-object': (c) => {
    const p = pickEntry(c, isObjWith(['file', 'dirtree', 'dirmeta', 'commit', 'commitmeta', 'file-xattrs', 'file-xattrs-link']))!;
    const es = entriesOf(c, p.layer);
    const e = es[p.index]!;
    const grow = c.rng.chance(0.5);
    e.data = grow ? Buffer.concat([e.data, c.rng.bytes(c.rng.range(1, 600))]) : e.data.subarray(0, c.rng.int(e.data.length));
    setEntries(c, p.layer, es);
    // A commitmeta that still parses after truncation/extension is unlikely but possible.
    return { cls: 'resize-object', detail: `${grow ? 'extend' : 'truncate'} ${p.e.name}`, expect: objectOf(p.e)!.ext === 'commitmeta' ? 'any' : 'fail' };
  },
  'forge-object': (c) => {
    // New content under its own correct checksum: a valid object the commit does not reference
    // (and the original one is gone): only the dirtrees can tell.
    const p = pickEntry(c, (e) => objectOf(e)?.ext === 'file' && e.type === '0')!;
    const es = entriesOf(c, p.layer);
    const e = es[p.index]!;
    e.data = Buffer.concat([e.data, Buffer.from(`forged ${c.rng.hex(8)}`)]);
    const xattrs = e.pax
      .filter(([k]) => k.startsWith('SCHILY.xattr.'))
      .map(([k, v]) => ({ name: Buffer.from(k.slice(13)), value: v }));
    const csum = contentChecksum({ uid: e.uid, gid: e.gid, mode: 0o100000 | (e.mode & 0o7777), rdev: 0, symlinkTarget: '', xattrs }, e.data);
    const old = objectOf(e)!.checksum;
    e.name = objectName(csum, 'file');
    // Keep a preceding xattrs link in step.
    const prev = es[p.index - 1];
    if (prev && objectOf(prev)?.checksum === old && objectOf(prev)!.ext === 'file-xattrs-link') prev.name = objectName(csum, 'file-xattrs-link');
    setEntries(c, p.layer, es);
    return { cls: 'forge-object', detail: `${old} → ${csum}`, expect: 'fail' };
  },
  'rename-object': (c) => {
    const p = pickEntry(c, (e) => !!objectOf(e))!;
    const es = entriesOf(c, p.layer);
    const o = objectOf(p.e)!;
    let to: string;
    const other = pickEntry(c, (e) => !!objectOf(e) && objectOf(e)!.ext === o.ext && objectOf(e)!.checksum !== o.checksum);
    if (other && c.rng.chance(0.5)) to = objectOf(other.e)!.checksum;
    else to = o.checksum.slice(0, 63) + ((parseInt(o.checksum[63]!, 16) + 1 + c.rng.int(15)) % 16).toString(16);
    es[p.index]!.name = objectName(to, o.ext);
    setEntries(c, p.layer, es);
    return { cls: 'rename-object', detail: `${p.e.name} → ${to}.${o.ext}`, expect: 'fail' };
  },
  'retype-object': (c) => {
    const p = pickEntry(c, (e) => !!objectOf(e))!;
    const es = entriesOf(c, p.layer);
    const o = objectOf(p.e)!;
    const exts = ['file', 'dirtree', 'dirmeta', 'commit', 'commitmeta', 'file-xattrs', 'file-xattrs-link', 'file.xattrs', 'filez', 'sig', 'commit.partial', ''].filter((x) => x !== o.ext);
    const ext = c.rng.pick(exts);
    es[p.index]!.name = ext ? objectName(o.checksum, ext) : objectName(o.checksum, '').slice(0, -1);
    setEntries(c, p.layer, es);
    return { cls: 'retype-object', detail: `${p.e.name} → .${ext}`, expect: 'fail' };
  },
  'xattrs-swap': (c) => {
    const links = pickEntry(c, isObjWith(['file-xattrs-link']));
    if (!links) return M['flip-object']!(c);
    const es = entriesOf(c, links.layer);
    const e = es[links.index]!;
    // Point it at xattrs that differ from the object's: add one xattr to the link body.
    e.pax = e.pax.concat([['SCHILY.xattr.user.fuzz', Buffer.from(c.rng.hex(4))]]);
    setEntries(c, links.layer, es);
    return { cls: 'xattrs-swap', detail: `PAX xattr added to ${e.name}`, expect: 'any' };
  },

  // --- entries ------------------------------------------------------------------------------------
  'drop-entry': (c) => {
    const p = pickEntry(c, () => true)!;
    const es = entriesOf(c, p.layer);
    es.splice(p.index, 1);
    setEntries(c, p.layer, es);
    // A dropped object may be in an already-populated repository; a dropped commitmeta, directory
    // or checkout entry changes nothing the importer needs: any outcome, checked as usual.
    return { cls: 'drop-entry', detail: `${p.e.name} (layer ${p.layer})`, expect: 'any' };
  },
  'dup-entry': (c) => {
    const p = pickEntry(c, () => true)!;
    const layer = c.rng.chance(0.6) ? p.layer : c.rng.int(c.d.layers.length);
    const es = entriesOf(c, layer);
    const at = c.rng.int(es.length + 1);
    es.splice(at, 0, cloneEntry(p.e));
    setEntries(c, layer, es);
    return { cls: 'dup-entry', detail: `${p.e.name} (layer ${p.layer}) → layer ${layer} #${at}`, expect: 'any' };
  },
  'reorder-entries': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    const n = c.rng.range(1, 4);
    for (let k = 0; k < n; k++) {
      const a = c.rng.int(es.length);
      const b = c.rng.int(es.length);
      [es[a], es[b]] = [es[b]!, es[a]!];
    }
    if (c.rng.chance(0.15)) c.rng.shuffle(es);
    setEntries(c, i, es);
    return { cls: 'reorder-entries', detail: `layer ${i}`, expect: 'any' };
  },
  'move-entry': (c) => {
    if (c.d.layers.length < 2) return M['reorder-entries']!(c);
    const p = pickEntry(c, (e) => !!objectOf(e))!;
    let to = c.rng.int(c.d.layers.length - 1);
    if (to >= p.layer) to++;
    const from = entriesOf(c, p.layer);
    const [e] = from.splice(p.index, 1);
    const dst = entriesOf(c, to);
    dst.splice(c.rng.int(dst.length + 1), 0, e!);
    setEntries(c, p.layer, from);
    setEntries(c, to, dst);
    return { cls: 'move-entry', detail: `${p.e.name}: layer ${p.layer} → ${to}`, expect: 'any' };
  },
  reserialize: (c) => {
    for (let i = 0; i < c.d.layers.length; i++) setEntries(c, i, entriesOf(c, i));
    return { cls: 'reserialize', detail: 'every layer re-written by the fuzz tar writer', expect: 'ok' };
  },
  'noop-tar': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    const what: string[] = [];
    if (c.rng.chance(0.5)) {
      for (const e of es) e.mtime = c.rng.int(2 ** 33);
      what.push('mtimes');
    }
    if (c.rng.chance(0.5)) {
      const e = c.rng.pick(es);
      e.pax = e.pax.concat([['comment', Buffer.from(`fuzz ${c.rng.hex(20)}`)]]);
      what.push(`PAX comment on ${e.name}`);
    }
    if (c.rng.chance(0.5) || what.length === 0) {
      es.splice(c.rng.int(es.length + 1), 0, { name: `sysroot/ostree/repo/objects/${c.rng.hex(2)}`, type: '5', mode: 0o755, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.alloc(0), pax: [] });
      what.push('directory entry');
    }
    setEntries(c, i, es);
    return { cls: 'noop-tar', detail: `layer ${i}: ${what.join(', ')}`, expect: 'ok' };
  },
  'trailing-garbage': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    setTar(l, Buffer.concat([l.tar, c.rng.bytes(c.rng.range(1, 3000))]));
    return { cls: 'trailing-garbage', detail: `after the end-of-archive marker of layer ${i}`, expect: 'ok' };
  },
  'truncate-tar': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    const end = writeTar(c.base.entries[i]!, { endMarker: false }).length; // offset of the end marker
    const cut = c.rng.int(Math.min(l.tar.length, end + 1));
    setTar(l, l.tar.subarray(0, cut));
    // Our writer's tar ends exactly at `end`; the base tars were written by src/container and are
    // re-read by the same logic, so anything cut before the marker must fail.
    return { cls: 'truncate-tar', detail: `layer ${i} cut at ${cut} of ${l.tar.length}`, expect: 'any' };
  },
  'tar-header-flip': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    const offs = headerOffsets(l.tar);
    const off = c.rng.pick(offs);
    const tar = Buffer.from(l.tar);
    const at = off + c.rng.int(512);
    tar[at] = c.rng.int(256);
    const fix = c.rng.chance(0.7);
    if (fix) fixChecksum(tar.subarray(off, off + 512));
    setTar(l, tar);
    return { cls: 'tar-header-flip', detail: `layer ${i} header at ${off}, byte ${at - off}${fix ? ' (checksum fixed)' : ''}`, expect: 'any' };
  },
  'tar-random-bytes': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    const tar = Buffer.from(l.tar);
    const n = c.rng.range(1, 8);
    for (let k = 0; k < n; k++) tar[c.rng.int(tar.length)] = c.rng.int(256);
    setTar(l, tar);
    return { cls: 'tar-random-bytes', detail: `layer ${i}: ${n} byte(s)`, expect: 'any' };
  },
  'pax-garbage': (c) => {
    const p = pickEntry(c, () => true)!;
    const es = entriesOf(c, p.layer);
    const e = es[p.index]!;
    const recs: Array<[string, Buffer]> = [
      ['size', Buffer.from(String(c.rng.pick([2 ** 40, 2 ** 53 + 7, -1, 1e21])))],
      ['uid', Buffer.from(c.rng.pick(['-1', '4294967296', 'abc', '1e400']))],
      ['path', Buffer.from(`a\0b`)],
      ['linkpath', Buffer.from('../../../../escape')],
      ['GNU.sparse.major', Buffer.from('1')],
      ['SCHILY.xattr.', Buffer.from('empty name')],
      ['SCHILY.xattr.user.a', Buffer.alloc(0)],
      ['mtime', Buffer.from('-99999999999999999999')],
    ];
    const r = c.rng.pick(recs);
    e.pax = e.pax.concat([r]);
    setEntries(c, p.layer, es);
    return { cls: 'pax-garbage', detail: `${r[0]}=${JSON.stringify(r[1].toString('latin1').slice(0, 40))} on ${e.name}`, expect: 'any' };
  },
  'odd-entry-type': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    const type = c.rng.pick(['3', '4', '6', '7', 'S', 'V', 'M', 'N', 'A', 'Z', '\x01']);
    const name = c.rng.chance(0.5) ? `usr/share/odd-${c.rng.hex(4)}` : objectName(c.rng.hex(64), 'file');
    es.splice(c.rng.int(es.length + 1), 0, { name, type, mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: type === '7' ? Buffer.from('x') : Buffer.alloc(0), pax: [] });
    setEntries(c, i, es);
    return { cls: 'odd-entry-type', detail: `type ${JSON.stringify(type)} ${name} in layer ${i}`, expect: name.startsWith(REPO) ? 'fail' : 'any' };
  },

  // --- traversal and links ----------------------------------------------------------------------
  traversal: (c) => {
    const name = c.rng.pick(TRAVERSAL_NAMES);
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    if (c.rng.chance(0.5)) {
      const k = c.rng.int(es.length);
      es[k]!.name = name;
    } else {
      es.splice(c.rng.int(es.length + 1), 0, { name, type: c.rng.pick(['0', '5', '2']), mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '/etc/shadow', data: Buffer.from('evil'), pax: [] });
    }
    setEntries(c, i, es);
    return { cls: 'traversal', detail: `${JSON.stringify(name)} in layer ${i}`, expect: 'fail' };
  },
  'link-escape': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    const target = c.rng.pick(['../../../../etc/passwd', '/etc/passwd', 'sysroot/ostree/repo/objects/../../../../etc/passwd', '..', `${REPO}objects/${c.rng.hex(2)}/${c.rng.hex(62)}.file`, 'usr/does/not/exist']);
    const hard = c.rng.chance(0.6);
    const name = c.rng.chance(0.5) ? `usr/share/link-${c.rng.hex(6)}` : `${REPO}objects/${c.rng.hex(2)}`;
    es.splice(c.rng.int(es.length + 1), 0, { name, type: hard ? '1' : '2', mode: 0o777, uid: 0, gid: 0, mtime: 0, linkname: target, data: Buffer.alloc(0), pax: [] });
    setEntries(c, i, es);
    // A symlink outside the repo is data nobody follows; a hardlink must point at an earlier entry.
    const mustFail = hard || name.startsWith(REPO);
    return { cls: 'link-escape', detail: `${hard ? 'hardlink' : 'symlink'} ${name} → ${target} in layer ${i}`, expect: mustFail ? 'fail' : 'any' };
  },
  'link-as-object': (c) => {
    const p = pickEntry(c, (e) => objectOf(e)?.ext === 'file' || objectOf(e)?.ext === 'dirtree')!;
    const es = entriesOf(c, p.layer);
    const e = es[p.index]!;
    const hard = c.rng.chance(0.5);
    e.type = hard ? '1' : '2';
    e.linkname = c.rng.pick(['../../../../../etc/passwd', '/etc/passwd', objectName(c.rng.hex(64), 'file')]);
    e.data = Buffer.alloc(0);
    setEntries(c, p.layer, es);
    return { cls: 'link-as-object', detail: `${p.e.name} as ${hard ? 'hardlink' : 'symlink'} → ${e.linkname}`, expect: 'fail' };
  },

  // --- OCI: digests, sizes, diffids, media types, documents -------------------------------------
  'oci-wrong-digest': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const other = c.d.layers[(i + 1) % c.d.layers.length]!;
    const existing = c.rng.chance(0.5) && c.d.layers.length > 1;
    const to = existing ? sha256(other.blob) : `sha256:${c.rng.hex(64)}`;
    c.d.layers[i]!.descOverride = { digest: to };
    // image pull may reuse a layer it already stored under that (content-addressed) blob digest
    // without reading it; unencapsulate reads every blob, so its diffid check must catch it.
    return { cls: 'oci-wrong-digest', detail: `layer ${i} descriptor digest → ${to}${existing ? ' (another layer)' : ''}`, expect: existing ? 'any' : 'fail', unencapsulateExpect: 'fail', pullMayReuse: true };
  },
  'oci-wrong-size': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    const size = c.rng.pick([l.blob.length - 1, l.blob.length + 1, 0, l.blob.length * 2, 2 ** 53 - 1, 2 ** 53 + 2, -1, 1.5, 1e308, '100', null]);
    l.descOverride = { size };
    return { cls: 'oci-wrong-size', detail: `layer ${i} size ${String(size)} (real ${l.blob.length})`, expect: 'fail', pullMayReuse: true };
  },
  'oci-wrong-diffid': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const to = c.rng.pick([`sha256:${c.rng.hex(64)}`, `sha256:${c.rng.hex(63)}`, 'sha512:' + c.rng.hex(128), '', 'sha256:' + c.rng.hex(64).toUpperCase()]);
    c.d.layers[i]!.diffIdOverride = to;
    // image pull reuses a layer it stores under the same blob digest without reading it again.
    return { cls: 'oci-wrong-diffid', detail: `diff_ids[${i}] → ${to}`, expect: 'fail', pullMayReuse: true };
  },
  'oci-truncate-blob': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    l.blob = l.blob.subarray(0, c.rng.int(l.blob.length));
    return { cls: 'oci-truncate-blob', detail: `layer ${i} blob cut to ${l.blob.length}`, expect: 'fail', pullMayReuse: true };
  },
  'oci-flip-blob': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    l.blob = flipBytes(c.rng, l.blob, c.rng.range(1, 3));
    return { cls: 'oci-flip-blob', detail: `layer ${i} compressed bytes (digest recomputed)`, expect: 'any', pullMayReuse: true };
  },
  'oci-append-blob': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    l.blob = Buffer.concat([l.blob, c.rng.chance(0.5) ? c.rng.bytes(c.rng.range(1, 100)) : compressBytes(Buffer.from('more'), compressionOf(l.mediaType))]);
    return { cls: 'oci-append-blob', detail: `layer ${i}: data after the compressed stream`, expect: 'any', pullMayReuse: true };
  },
  'oci-missing-blob': (c) => {
    const i = c.rng.int(c.d.layers.length);
    c.d.layers[i]!.omitBlob = true;
    return { cls: 'oci-missing-blob', detail: `layer ${i}`, expect: 'fail', pullMayReuse: true };
  },
  'oci-media-type': (c) => {
    const which = c.rng.int(3);
    const mt = c.rng.pick(['application/x-fuzz', 'application/vnd.oci.image.layer.v1.tar+bzip2', 'application/vnd.oci.image.manifest.v1+json', '', 'application/vnd.oci.image.layer.v1.tar+gzip+zstd', 42]);
    if (which === 0) c.d.layers[c.rng.int(c.d.layers.length)]!.descOverride = { mediaType: mt };
    else if (which === 1) c.d.configDescOverride = { mediaType: mt };
    else c.d.manifest['mediaType'] = mt;
    // The manifest's own media type set to itself changes nothing.
    const noop = which === 2 && mt === 'application/vnd.oci.image.manifest.v1+json';
    return { cls: 'oci-media-type', detail: `${['layer', 'config', 'manifest'][which]} mediaType ${JSON.stringify(mt)}`, expect: noop ? 'ok' : 'fail' };
  },
  'oci-wrong-compression': (c) => {
    // The media type says gzip, the blob is zstd (or the other way round), digests consistent.
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    const other = compressionOf(l.mediaType) === 'gzip' ? 'zstd' : 'gzip';
    l.blob = compressBytes(l.tar, other);
    return { cls: 'oci-wrong-compression', detail: `layer ${i} is ${other} but typed ${l.mediaType}`, expect: 'fail', pullMayReuse: true };
  },
  'oci-manifest-field': (c) => {
    const m = c.d.manifest;
    const edits: Array<[string, () => void, Expect]> = [
      ['delete schemaVersion', () => delete m['schemaVersion'], 'fail'],
      ['schemaVersion 1', () => (m['schemaVersion'] = 1), 'fail'],
      ['schemaVersion "2"', () => (m['schemaVersion'] = '2'), 'fail'],
      ['delete config', () => (c.d.rawManifest = Buffer.from(JSON.stringify({ ...m, config: undefined, layers: [] }))), 'fail'],
      ['layers null', () => (c.d.rawManifest = Buffer.from(JSON.stringify({ ...m, layers: null }))), 'fail'],
      ['unknown field', () => (m['x-fuzz'] = { deep: [1, 2, { a: 'b' }] }), 'ok'],
      ['annotations number', () => (m['annotations'] = { a: 1 }), 'fail'],
      ['layer descriptor without digest', () => (c.d.layers[0]!.descOverride = { digest: undefined }), 'fail'],
      ['config size huge', () => (c.d.configDescOverride = { size: 2 ** 52 }), 'fail'],
      ['not JSON', () => (c.d.rawManifest = Buffer.from('{"schemaVersion":2,')), 'fail'],
      ['deep JSON', () => (c.d.rawManifest = Buffer.from('['.repeat(200000) + ']'.repeat(200000))), 'fail'],
      ['JSON array', () => (c.d.rawManifest = Buffer.from('[]')), 'fail'],
      ['manifest as index', () => (c.d.rawManifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }))), 'fail'],
      ['huge manifest', () => (c.d.rawManifest = Buffer.from(JSON.stringify({ ...m, junk: 'x'.repeat(5 << 20) }))), 'fail'],
    ];
    const [what, fn, expect] = c.rng.pick(edits);
    fn();
    return { cls: 'oci-manifest-field', detail: what, expect };
  },
  'oci-config-field': (c) => {
    const cfg = c.d.config;
    const labels = (cfg['config'] as Json)?.['Labels'] as Record<string, unknown>;
    const edits: Array<[string, () => void, Expect]> = [
      ['delete rootfs', () => delete cfg['rootfs'], 'fail'],
      ['diff_ids one short', () => (c.d.diffIdsOverride = c.d.layers.slice(1).map((l) => sha256(l.tar))), 'fail'],
      ['diff_ids one extra', () => (c.d.diffIdsOverride = [...c.d.layers.map((l) => sha256(l.tar)), `sha256:${'0'.repeat(64)}`]), 'fail'],
      ['diff_ids a string', () => (c.d.diffIdsOverride = 'sha256:abc'), 'fail'],
      ['delete architecture', () => delete cfg['architecture'], 'fail'],
      ['delete final-diffid label', () => delete labels['ostree.final-diffid'], 'fail'],
      ['final-diffid label unknown', () => ((labels['ostree.final-diffid'] = `sha256:${c.rng.hex(64)}`), (c.d.finalLayer = null)), 'fail'],
      ['final-diffid label a number', () => ((labels['ostree.final-diffid'] = 7), (c.d.finalLayer = null)), 'fail'],
      ['ostree.commit label wrong', () => (labels['ostree.commit'] = c.rng.hex(64)), 'fail'],
      ['Labels an array', () => ((cfg['config'] as Json)['Labels'] = []), 'fail'],
      ['config.config a string', () => (cfg['config'] = 'x'), 'fail'],
      ['unknown fields', () => ((cfg['x-fuzz'] = [1, { b: null }]), (labels['x.fuzz'] = 'y')), 'ok'],
      ['not JSON', () => (c.d.rawConfig = Buffer.from('\u0000\u0001garbage')), 'fail'],
      ['huge config', () => (c.d.rawConfig = Buffer.from(JSON.stringify({ ...cfg, junk: 'y'.repeat(17 << 20) }))), 'fail'],
    ];
    const [what, fn, expect] = c.rng.pick(edits);
    fn();
    // Without the label the image is not an ostree image: image pull stores it as a plain
    // container image (every layer derived), unencapsulate refuses it.
    if (what === 'delete final-diffid label') return { cls: 'oci-config-field', detail: what, expect: 'any', unencapsulateExpect: 'fail', pullNonOstree: true };
    return { cls: 'oci-config-field', detail: what, expect };
  },
  'oci-index': (c) => {
    const idx = c.d.index;
    const edits: Array<[string, () => void, Expect]> = [
      ['no manifests', () => (c.d.rawIndex = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }))), 'fail'],
      ['not JSON', () => (c.d.rawIndex = Buffer.from('nope')), 'fail'],
      ['manifest size wrong', () => (c.d.manifestDescOverride = { size: 3 }), 'fail'],
      ['manifest digest unknown', () => (c.d.manifestDescOverride = { digest: `sha256:${c.rng.hex(64)}` }), 'fail'],
      ['manifest digest malformed', () => (c.d.manifestDescOverride = { digest: '../../../../etc/passwd' }), 'fail'],
      ['manifest digest traversal', () => (c.d.manifestDescOverride = { digest: 'sha256:../../../../../etc/passwd' }), 'fail'],
      ['unknown fields', () => (idx['x-fuzz'] = { z: 1 }), 'ok'],
      ['huge index.json', () => (c.d.rawIndex = Buffer.from(JSON.stringify({ ...idx, junk: 'z'.repeat(6 << 20) }))), 'fail'],
      ['index.json is a directory', () => (c.d.specialIndex = 'dir'), 'fail'],
      ['index.json is a FIFO', () => (c.d.specialIndex = 'fifo'), 'fail'],
      ['index.json → /dev/zero', () => (c.d.specialIndex = 'zero'), 'fail'],
    ];
    const [what, fn, expect] = c.rng.pick(edits);
    fn();
    return { cls: 'oci-index', detail: what, expect };
  },
  'oci-special-blob': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const kind = c.rng.pick(['dir', 'fifo', 'zero'] as const);
    c.d.layers[i]!.special = kind;
    return { cls: 'oci-special-blob', detail: `layer ${i} blob is a ${kind}`, expect: 'fail', pullMayReuse: true };
  },
  'oci-layers': (c) => {
    const n = c.d.layers.length;
    const edits: Array<[string, () => Expect]> = [
      [
        'swap two chunk layers',
        () => {
          if (n < 3) return 'ok';
          const a = 1 + c.rng.int(n - 1);
          let b = 1 + c.rng.int(n - 2);
          if (b >= a) b++;
          [c.d.layers[a], c.d.layers[b]] = [c.d.layers[b]!, c.d.layers[a]!];
          return 'ok';
        },
      ],
      [
        'commit layer moved',
        () => {
          if (n < 2) return 'ok'; // nothing to move
          const to = 1 + c.rng.int(n - 1);
          [c.d.layers[0], c.d.layers[to]] = [c.d.layers[to]!, c.d.layers[0]!];
          return 'fail';
        },
      ],
      [
        'drop a layer',
        () => {
          const k = c.rng.int(n);
          c.d.layers.splice(k, 1);
          if (c.d.finalLayer !== null) c.d.finalLayer = Math.min(c.d.finalLayer, c.d.layers.length - 1);
          return k === 0 || !c.d.layers.length ? 'fail' : 'any';
        },
      ],
      [
        'duplicate a chunk layer',
        () => {
          if (n < 2) return 'ok';
          const k = 1 + c.rng.int(n - 1);
          c.d.layers.splice(k, 0, { ...c.d.layers[k]! });
          c.d.finalLayer = c.d.layers.length - 1;
          // Two layers with the final diffid must fail; a repeated chunk before it is harmless.
          return k === n - 1 ? 'fail' : 'any';
        },
      ],
      [
        'no layers',
        () => {
          c.d.layers = [];
          return 'fail';
        },
      ],
      [
        'many copies of a chunk',
        () => {
          const k = n - 1;
          const copies = c.rng.range(5, 40);
          for (let j = 0; j < copies; j++) {
            const t = Buffer.concat([c.d.layers[k]!.tar, Buffer.alloc(512 * (j + 1))]);
            c.d.layers.splice(k, 0, { ...c.d.layers[k]!, tar: t, dirty: true });
          }
          c.d.finalLayer = c.d.layers.length - 1;
          return n < 2 ? 'fail' : 'ok';
        },
      ],
    ];
    const [what, fn] = c.rng.pick(edits);
    const expect = fn();
    return { cls: 'oci-layers', detail: what, expect };
  },
  'derived-layer': (c) => {
    const es: Entry[] = [
      { name: 'usr/share/derived.txt', type: '0', mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.from('derived\n'), pax: [] },
    ];
    const evil = c.rng.chance(0.4);
    if (evil) es.push({ name: c.rng.pick(TRAVERSAL_NAMES), type: '0', mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.from('x'), pax: [] });
    const tar = writeTar(es);
    const mediaType = c.d.layers[0]!.mediaType;
    c.d.layers.push({ mediaType, tar, blob: Buffer.alloc(0), dirty: true });
    return { cls: 'derived-layer', detail: evil ? `with a traversal entry` : 'a plain file', expect: 'any', unencapsulateExpect: 'fail', derived: true };
  },

  // --- sizes and limits ---------------------------------------------------------------------------
  bomb: (c) => {
    const i = c.rng.int(c.d.layers.length);
    const l = c.d.layers[i]!;
    const mib = c.rng.range(8, 40);
    const kind = c.rng.pick(['zeros', 'object', 'checkout-file']);
    let tar: Buffer;
    if (kind === 'zeros') tar = Buffer.alloc(mib << 20);
    else {
      const name = kind === 'object' ? objectName(c.rng.hex(64), 'file') : 'usr/share/bomb';
      const head = writeTar([{ name, type: '0', mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.alloc(0), pax: [] }], { endMarker: false });
      // Patch the size field: header says mib MiB, data are zeros, then the end marker.
      const h = Buffer.from(head.subarray(head.length - 512));
      h.write(`${(mib << 20).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
      fixChecksum(h);
      tar = Buffer.concat([head.subarray(0, head.length - 512), h, Buffer.alloc((mib << 20) + 1024)]);
    }
    setTar(l, tar);
    // An object first in the commit layer is refused before its bytes are read.
    const capped = !(i === 0 && kind === 'object');
    return { cls: 'bomb', detail: `layer ${i}: ${mib} MiB of ${kind} (${compressionOf(l.mediaType)})`, expect: 'fail', ...(capped ? { cap: 'maxLayerRatio' as const } : {}) };
  },
  'giant-xattr': (c) => {
    const p = pickEntry(c, (e) => objectOf(e)?.ext === 'file')!;
    const es = entriesOf(c, p.layer);
    const size = c.rng.pick([65 << 10, 200 << 10, 900 << 10, 2 << 20]);
    es[p.index]!.pax = es[p.index]!.pax.concat([['SCHILY.xattr.user.giant', Buffer.alloc(size, 0x41)]]);
    setEntries(c, p.layer, es);
    return { cls: 'giant-xattr', detail: `${size} bytes on ${p.e.name}`, expect: 'fail', ...(size < 1 << 20 ? { cap: 'maxXattrsSize' as const } : {}) };
  },
  'giant-name': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    const long = c.rng.chance(0.5);
    const name = long ? `usr/${'n'.repeat(c.rng.range(4100, 70000))}` : `usr/share/${'c'.repeat(c.rng.range(256, 4000))}`;
    es.splice(c.rng.int(es.length + 1), 0, { name, type: '0', mode: 0o644, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.from('x'), pax: [] });
    setEntries(c, i, es);
    return { cls: 'giant-name', detail: `${Buffer.byteLength(name)}-byte name in layer ${i}`, expect: long ? 'fail' : 'any', ...(long ? { cap: 'maxPathLength' as const } : {}) };
  },
  'deep-entries': (c) => {
    const i = c.rng.int(c.d.layers.length);
    const es = entriesOf(c, i);
    const depth = c.rng.range(100, 3000);
    let p = 'usr/deep';
    const add: Entry[] = [];
    for (let k = 0; k < depth; k++) {
      p += '/d';
      add.push({ name: p, type: '5', mode: 0o755, uid: 0, gid: 0, mtime: 0, linkname: '', data: Buffer.alloc(0), pax: [] });
    }
    es.splice(c.rng.int(es.length + 1), 0, ...add);
    setEntries(c, i, es);
    const len = Buffer.byteLength(p);
    // These headers compress extremely well: keep the default ratio floor so only the path cap can apply.
    return {
      cls: 'deep-entries',
      detail: `${depth} nested directory entries (${len}-byte path) in layer ${i}`,
      expect: len > 4096 ? 'fail' : 'ok',
      limits: { layerRatioFloor: 64 << 20 },
      ...(len > 4096 ? { cap: 'maxPathLength' as const } : {}),
    };
  },
  limit: (c) => {
    const s = c.base.shape;
    const caps: Array<[keyof ImportLimits, number]> = [
      ['maxTreeDepth', s.treeDepth],
      ['maxDirEntries', s.dirEntries],
      ['maxPathLength', s.pathLength],
      ['maxMetadataSize', s.metadataSize],
      ['maxXattrsSize', s.xattrsSize],
      ['maxLayerRatio', Math.ceil(s.layerRatio)],
    ];
    const [cap, actual] = c.rng.pick(caps);
    const below = c.rng.chance(0.6);
    const limits: Partial<ImportLimits> = { ...FUZZ_LIMITS };
    if (cap === 'maxLayerRatio') {
      limits.layerRatioFloor = 1;
      limits.maxLayerRatio = below ? Math.max(1, Math.floor(s.layerRatio) - 1) : Math.ceil(s.layerRatio);
      const fails = below && s.layerRatio > limits.maxLayerRatio;
      return { cls: 'limit', detail: `${cap}=${limits.maxLayerRatio} (worst layer ${s.layerRatio.toFixed(2)})`, expect: fails ? 'fail' : 'ok', limits, pullMayReuse: true, ...(fails ? { cap } : {}) };
    }
    limits[cap] = below ? actual - 1 : actual;
    const fails = below && actual - 1 >= 1;
    if (limits[cap]! < 1) limits[cap] = 1;
    return { cls: 'limit', detail: `${cap}=${limits[cap]} (image needs ${actual})`, expect: fails ? 'fail' : 'ok', limits, pullMayReuse: true, ...(fails ? { cap } : {}) };
  },
};

/** Mutation classes and their relative weights. */
export const CLASSES: Array<[string, number]> = [
  ['flip-object', 8],
  ['flip-commitmeta', 3],
  ['resize-object', 3],
  ['forge-object', 3],
  ['rename-object', 4],
  ['retype-object', 3],
  ['xattrs-swap', 2],
  ['drop-entry', 5],
  ['dup-entry', 4],
  ['reorder-entries', 4],
  ['move-entry', 3],
  ['reserialize', 2],
  ['noop-tar', 3],
  ['trailing-garbage', 2],
  ['truncate-tar', 4],
  ['tar-header-flip', 5],
  ['tar-random-bytes', 4],
  ['pax-garbage', 3],
  ['odd-entry-type', 3],
  ['traversal', 4],
  ['link-escape', 4],
  ['link-as-object', 2],
  ['oci-wrong-digest', 3],
  ['oci-wrong-size', 3],
  ['oci-wrong-diffid', 3],
  ['oci-truncate-blob', 3],
  ['oci-flip-blob', 3],
  ['oci-append-blob', 2],
  ['oci-missing-blob', 1],
  ['oci-media-type', 2],
  ['oci-wrong-compression', 2],
  ['oci-manifest-field', 4],
  ['oci-config-field', 4],
  ['oci-index', 3],
  ['oci-special-blob', 1],
  ['oci-layers', 3],
  ['derived-layer', 2],
  ['bomb', 2],
  ['giant-xattr', 2],
  ['giant-name', 2],
  ['deep-entries', 2],
  ['limit', 5],
];

/** Apply one random mutation (of `only` classes, if given) to `d`, a fresh clone of `base.draft`. */
export function mutate(rng: Rng, d: ImageDraft, base: BaseInfo, only?: string[]): Mutation[] {
  const classes = only?.length ? CLASSES.filter(([n]) => only.includes(n)) : CLASSES;
  if (!classes.length) throw new Error(`no such mutation class: ${only?.join(', ')}`);
  const total = classes.reduce((n, [, w]) => n + w, 0);
  const pickClass = (): string => {
    let x = rng.next() * total;
    for (const [n, w] of classes) if ((x -= w) < 0) return n;
    return classes[classes.length - 1]![0];
  };
  return [M[pickClass()]!({ rng, d, base })];
}
