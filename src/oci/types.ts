/**
 * OCI image-spec (and Docker schema 2) types, media types and structural validation of parsed
 * JSON. Validation is shallow but strict about what this module relies on: digests, sizes, media
 * types, `rootfs.diff_ids`. Unknown fields are kept (they round-trip through rewriteManifest).
 */
import { OciFormatError } from './errors.js';

export const MediaType = {
  OciLayout: 'application/vnd.oci.layout.header.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  OciLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistTar: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** Annotation naming a manifest in an OCI layout's index.json. */
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';

export type Compression = 'gzip' | 'zstd' | 'none';

const LAYER_COMPRESSION: Record<string, Compression> = {
  [MediaType.OciLayerTar]: 'none',
  [MediaType.OciLayerGzip]: 'gzip',
  [MediaType.OciLayerZstd]: 'zstd',
  [MediaType.OciLayerNondistTar]: 'none',
  [MediaType.OciLayerNondistGzip]: 'gzip',
  [MediaType.OciLayerNondistZstd]: 'zstd',
  [MediaType.DockerLayerTar]: 'none',
  [MediaType.DockerLayerGzip]: 'gzip',
  [MediaType.DockerForeignLayerGzip]: 'gzip',
};

/** Compression of a layer media type, or undefined when it is not a known layer type. */
export function layerCompression(mediaType: string): Compression | undefined {
  return LAYER_COMPRESSION[mediaType];
}

/** OCI layer media type for a compression. */
export function ociLayerMediaType(c: Compression): string {
  return c === 'gzip' ? MediaType.OciLayerGzip : c === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayerTar;
}

export const isManifestMediaType = (m: string | undefined): boolean =>
  m === MediaType.OciManifest || m === MediaType.DockerManifest;
export const isIndexMediaType = (m: string | undefined): boolean =>
  m === MediaType.OciIndex || m === MediaType.DockerManifestList;
export const isConfigMediaType = (m: string | undefined): boolean =>
  m === MediaType.OciConfig || m === MediaType.DockerConfig;

export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
  artifactType?: string;
  data?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
  [extra: string]: unknown;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
  [extra: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  config?: {
    User?: string;
    ExposedPorts?: Record<string, object>;
    Env?: string[];
    Entrypoint?: string[];
    Cmd?: string[];
    Volumes?: Record<string, object>;
    WorkingDir?: string;
    Labels?: Record<string, string>;
    StopSignal?: string;
    [extra: string]: unknown;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
  [extra: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Validation of parsed JSON

export const SHA256_DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Throw unless `d` is a `sha256:<64 lowercase hex>` digest. `where` names the field. */
export function checkDigest(d: unknown, where: string): string {
  if (typeof d !== 'string') throw new OciFormatError(`${where}: digest is missing or not a string`);
  if (!SHA256_DIGEST_RE.test(d)) {
    if (/^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/.test(d) && !d.startsWith('sha256:'))
      throw new OciFormatError(`${where}: unsupported digest algorithm in ${JSON.stringify(d)} (only sha256)`);
    throw new OciFormatError(`${where}: malformed digest ${JSON.stringify(d)}`);
  }
  return d;
}

function checkStringMap(v: unknown, where: string): void {
  if (v === undefined) return;
  if (!isObj(v)) throw new OciFormatError(`${where}: must be an object of strings`);
  for (const [k, s] of Object.entries(v))
    if (typeof s !== 'string') throw new OciFormatError(`${where}[${JSON.stringify(k)}]: must be a string`);
}

export function validateDescriptor(v: unknown, where: string): Descriptor {
  if (!isObj(v)) throw new OciFormatError(`${where}: descriptor must be an object`);
  if (typeof v['mediaType'] !== 'string' || v['mediaType'] === '')
    throw new OciFormatError(`${where}.mediaType: missing or not a string`);
  checkDigest(v['digest'], `${where}.digest`);
  const size = v['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
    throw new OciFormatError(`${where}.size: must be a non-negative integer, got ${JSON.stringify(size)}`);
  checkStringMap(v['annotations'], `${where}.annotations`);
  if (v['platform'] !== undefined) {
    const p = v['platform'];
    if (!isObj(p) || typeof p['architecture'] !== 'string' || typeof p['os'] !== 'string')
      throw new OciFormatError(`${where}.platform: needs string architecture and os`);
  }
  return v as unknown as Descriptor;
}

function parseJson(bytes: Buffer, where: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new OciFormatError(`${where}: invalid JSON: ${(e as Error).message}`);
  }
}

export function parseIndex(bytes: Buffer, where: string): ImageIndex {
  const v = parseJson(bytes, where);
  if (!isObj(v)) throw new OciFormatError(`${where}: must be a JSON object`);
  if (v['schemaVersion'] !== 2)
    throw new OciFormatError(`${where}.schemaVersion: expected 2, got ${JSON.stringify(v['schemaVersion'])}`);
  if (v['mediaType'] !== undefined && !isIndexMediaType(v['mediaType'] as string))
    throw new OciFormatError(`${where}.mediaType: ${JSON.stringify(v['mediaType'])} is not an image index`);
  if (!Array.isArray(v['manifests'])) throw new OciFormatError(`${where}.manifests: missing or not an array`);
  v['manifests'].forEach((d, i) => validateDescriptor(d, `${where}.manifests[${i}]`));
  checkStringMap(v['annotations'], `${where}.annotations`);
  return v as unknown as ImageIndex;
}

/** Parse a manifest or an index: tells which by `mediaType` (field or descriptor) and shape. */
export function sniffManifestKind(value: unknown, descriptorMediaType?: string): 'manifest' | 'index' | 'unknown' {
  const mt = (isObj(value) && typeof value['mediaType'] === 'string' ? value['mediaType'] : undefined) ?? descriptorMediaType;
  if (isManifestMediaType(mt)) return 'manifest';
  if (isIndexMediaType(mt)) return 'index';
  if (mt === undefined && isObj(value)) {
    if (Array.isArray(value['manifests'])) return 'index';
    if (isObj(value['config']) && Array.isArray(value['layers'])) return 'manifest';
  }
  return 'unknown';
}

export function parseManifest(bytes: Buffer, where: string): ImageManifest {
  const v = parseJson(bytes, where);
  if (!isObj(v)) throw new OciFormatError(`${where}: must be a JSON object`);
  if (v['schemaVersion'] !== 2)
    throw new OciFormatError(`${where}.schemaVersion: expected 2, got ${JSON.stringify(v['schemaVersion'])}`);
  if (v['mediaType'] !== undefined && !isManifestMediaType(v['mediaType'] as string))
    throw new OciFormatError(`${where}.mediaType: ${JSON.stringify(v['mediaType'])} is not an image manifest`);
  validateDescriptor(v['config'], `${where}.config`);
  if (!Array.isArray(v['layers'])) throw new OciFormatError(`${where}.layers: missing or not an array`);
  v['layers'].forEach((d, i) => validateDescriptor(d, `${where}.layers[${i}]`));
  checkStringMap(v['annotations'], `${where}.annotations`);
  return v as unknown as ImageManifest;
}

export function parseConfig(bytes: Buffer, where: string): ImageConfig {
  const v = parseJson(bytes, where);
  if (!isObj(v)) throw new OciFormatError(`${where}: must be a JSON object`);
  const rootfs = v['rootfs'];
  if (!isObj(rootfs)) throw new OciFormatError(`${where}.rootfs: missing or not an object`);
  if (rootfs['type'] !== 'layers')
    throw new OciFormatError(`${where}.rootfs.type: expected "layers", got ${JSON.stringify(rootfs['type'])}`);
  const ids = rootfs['diff_ids'];
  if (!Array.isArray(ids)) throw new OciFormatError(`${where}.rootfs.diff_ids: missing or not an array`);
  ids.forEach((d, i) => checkDigest(d, `${where}.rootfs.diff_ids[${i}]`));
  if (typeof v['architecture'] !== 'string') throw new OciFormatError(`${where}.architecture: missing or not a string`);
  if (typeof v['os'] !== 'string') throw new OciFormatError(`${where}.os: missing or not a string`);
  // The fields this project reads must have their spec'd shape: a malformed `config` or `Labels`
  // must not read as "no labels" (that would turn an ostree image into a non-ostree one).
  const cc = v['config'];
  if (cc !== undefined && cc !== null) {
    if (!isObj(cc)) throw new OciFormatError(`${where}.config: must be an object, got ${Array.isArray(cc) ? 'an array' : typeof cc}`);
    if (cc['Labels'] !== null) checkStringMap(cc['Labels'], `${where}.config.Labels`);
  }
  return v as unknown as ImageConfig;
}

/** The Go architecture name (as used in OCI platforms) of this Node process. */
export function hostArchitecture(): string {
  const map: Record<string, string> = {
    x64: 'amd64',
    arm64: 'arm64',
    arm: 'arm',
    ia32: '386',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
    loong64: 'loong64',
    mips: 'mips',
    mipsel: 'mipsle',
  };
  return map[process.arch] ?? process.arch;
}
