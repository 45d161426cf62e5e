/** A structured description of a commit: what `ostree-oci show` prints. */
import { encode } from '../gvariant/codec.js';
import { formatValue, toJson } from '../gvariant/print.js';
import { ObjectType, type Repo } from './repo.js';

export interface MetadataEntry {
  key: string;
  type: string;
  /** Serialized size of the value in bytes. */
  size: number;
  /** Number of elements for array values. */
  elements?: number;
  summary: string;
  value: unknown;
}

export interface CommitSummary {
  checksum: string;
  parent: string | null;
  subject: string;
  body: string;
  timestamp: string;
  rootTree: string;
  rootMeta: string;
  commitSize: number;
  metadata: MetadataEntry[];
  /** null when the commit has no detached metadata at all. */
  commitmeta: MetadataEntry[] | null;
  commitmetaSize: number | null;
  objects: { commit: number; dirtree: number; dirmeta: number; file: number };
  refs: string[];
}

function entries(dict: Array<[string, { type: string; value: unknown }]>): MetadataEntry[] {
  return dict.map(([key, v]) => {
    const value = v.value as Parameters<typeof formatValue>[0];
    return {
      key,
      type: v.type,
      size: encode(v.type, value).length,
      ...(Array.isArray(value) ? { elements: value.length } : {}),
      summary: formatValue(value),
      value: toJson(value),
    };
  });
}

export function describeCommit(repo: Repo, rev: string): CommitSummary {
  const c = repo.loadCommit(rev);
  const metaBytes = repo.readCommitMetaBytes(c.checksum);
  const meta = repo.readCommitMeta(c.checksum);
  const counts = { commit: 0, dirtree: 0, dirmeta: 0, file: 0 };
  for (const o of repo.reachableObjects(c.checksum)) {
    if (o.type === ObjectType.COMMIT) counts.commit++;
    else if (o.type === ObjectType.DIR_TREE) counts.dirtree++;
    else if (o.type === ObjectType.DIR_META) counts.dirmeta++;
    else if (o.type === ObjectType.FILE) counts.file++;
  }
  const refs = [...repo.listRefs()].filter(([, cs]) => cs === c.checksum).map(([r]) => r).sort();
  return {
    checksum: c.checksum,
    parent: c.commit.parent,
    subject: c.commit.subject,
    body: c.commit.body,
    timestamp: new Date(Number(c.commit.timestamp) * 1000).toISOString(),
    rootTree: c.commit.rootTree,
    rootMeta: c.commit.rootMeta,
    commitSize: c.bytes.length,
    metadata: entries(c.commit.metadata),
    commitmeta: meta ? entries(meta) : null,
    commitmetaSize: metaBytes ? metaBytes.length : null,
    objects: counts,
    refs,
  };
}
