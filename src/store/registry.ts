/**
 * `docker://` images for the store, fetched blob by blob:
 *
 *  - the manifest with `skopeo inspect --raw` (an index / manifest list is resolved to the
 *    platform's manifest, fetched again by digest); its sha256 is the manifest digest and must
 *    equal the digest in the reference or index, when there is one;
 *  - the config with `skopeo inspect --config --raw`, checked against the manifest's config digest;
 *  - layer blobs over the registry HTTP API v2 (`GET /v2/<repository>/blobs/<digest>`), streamed,
 *    following redirects; anonymous bearer tokens (`WWW-Authenticate: Bearer realm=…`) are
 *    requested as a client does, and credentials are used only from an explicitly given auth file
 *    (`auths[host].auth`). With `tlsVerify: false` https is tried without certificate checks and
 *    plain http is used when the registry does not speak TLS (a loopback test registry).
 *
 * So `image pull docker://…` downloads only the layers the store does not already have. Use
 * `fetch: 'skopeo'` to fall back to a whole-image `skopeo copy` (registries needing other auth).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { PassThrough, type Readable } from 'node:stream';
import {
  MAX_CONFIG_SIZE,
  MAX_MANIFEST_SIZE,
  OciDigestError,
  OciFormatError,
  UnsupportedMediaTypeError,
  VerifyStream,
  formatImageReference,
  hostArchitecture,
  isConfigMediaType,
  parseConfig,
  parseIndex,
  parseManifest,
  sha256Digest,
  SkopeoError,
  type Descriptor,
  type DockerReference,
  type ImageIndex,
  type OpenImageOptions,
} from '../oci/index.js';
import { sniffManifestKind } from '../oci/types.js';
import { chain } from '../oci/stream-util.js';
import { RegistryError } from './errors.js';
import type { StoreImage } from './image-source.js';

const SKOPEO = process.env['OSTREE_OCI_SKOPEO'] ?? 'skopeo';
const REQUEST_IDLE_TIMEOUT = 5 * 60 * 1000;

/** `skopeo inspect --raw [--config] REF` → stdout bytes, exactly. */
async function skopeoInspectRaw(ref: string, config: boolean, opts: OpenImageOptions, limit: number): Promise<Buffer> {
  const args = ['inspect', '--raw', '--no-tags'];
  if (config) args.push('--config');
  if (opts.tlsVerify === false) args.push('--tls-verify=false');
  if (opts.authFile) args.push('--authfile', opts.authFile);
  args.push(ref);
  return new Promise((resolve, reject) => {
    const child = spawn(SKOPEO, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let n = 0;
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      n += b.length;
      if (n > limit) {
        child.kill();
        reject(new OciFormatError(`${ref}: ${config ? 'config' : 'manifest'} larger than ${limit} bytes`));
      } else out.push(b);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr = (stderr + d).slice(-8192)));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(new SkopeoError(e.code === 'ENOENT' ? 'skopeo not found (needed for docker:// references)' : `skopeo inspect ${ref}: ${e.message}`)),
    );
    child.on('close', (code, sig) => {
      if (code === 0) return resolve(Buffer.concat(out, n));
      const msg = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
      const clean = msg.replace(/^time="[^"]*" level=\w+ msg="(.*)"$/, '$1').replace(/\\"/g, '"');
      reject(new SkopeoError(`skopeo inspect ${config ? '--config ' : ''}${ref} failed (${sig ?? `exit ${code}`}): ${clean}`, { args, stderr }));
    });
  });
}

function pickFromIndex(index: ImageIndex, want: OpenImageOptions['platform'], where: string): Descriptor {
  const os = want?.os ?? 'linux';
  const arch = want?.architecture ?? hostArchitecture();
  const hit = index.manifests.find(
    (d) => d.platform?.os === os && d.platform?.architecture === arch && (want?.variant === undefined || d.platform?.variant === want.variant),
  );
  if (hit) return hit;
  if (index.manifests.length === 1) return index.manifests[0]!;
  throw new OciFormatError(`${where}: no manifest for platform ${os}/${arch} in the image index`);
}

interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
}

function parseChallenge(h: string | undefined): AuthChallenge | null {
  if (!h) return null;
  const m = /^\s*(\w+)\s*(.*)$/.exec(h);
  if (!m) return null;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!.toLowerCase()] = p[2]!;
  return { scheme: m[1]!.toLowerCase(), params };
}

async function readSmall(res: IncomingMessage, limit = 64 * 1024): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.destroy();
      break;
    }
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts).toString('utf8');
}

/** A minimal registry API v2 client for blob downloads. */
export class RegistryClient {
  private base: string | undefined;
  private authorization: string | undefined;
  private readonly host: string;
  private readonly basicAuth: string | undefined;

  constructor(
    readonly ref: DockerReference,
    private readonly opts: OpenImageOptions,
  ) {
    this.host = ref.domain === 'docker.io' ? 'registry-1.docker.io' : ref.domain;
    this.basicAuth = opts.authFile ? readAuthFile(opts.authFile, ref.domain) : undefined;
  }

  private request(url: URL, headers: Record<string, string>): Promise<IncomingMessage> {
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method: 'GET', headers, rejectUnauthorized: this.opts.tlsVerify !== false }, resolve);
      req.on('error', reject);
      req.setTimeout(REQUEST_IDLE_TIMEOUT, () => req.destroy(new Error(`no data for ${REQUEST_IDLE_TIMEOUT / 1000}s`)));
      req.end();
    });
  }

  /** https, or (tlsVerify false) http when the registry does not answer TLS. */
  private async resolveBase(): Promise<string> {
    if (this.base) return this.base;
    const https = `https://${this.host}`;
    if (this.opts.tlsVerify !== false) return (this.base = https);
    try {
      const res = await this.request(new URL(`${https}/v2/`), {});
      res.resume();
      return (this.base = https);
    } catch {
      return (this.base = `http://${this.host}`);
    }
  }

  private async fetchToken(ch: AuthChallenge, url: string): Promise<void> {
    const realm = ch.params['realm'];
    if (!realm) throw new RegistryError(`GET ${url}: bearer challenge without a realm`);
    const t = new URL(realm);
    if (ch.params['service']) t.searchParams.set('service', ch.params['service']);
    t.searchParams.set('scope', ch.params['scope'] ?? `repository:${this.ref.repository}:pull`);
    const headers: Record<string, string> = {};
    if (this.basicAuth) headers['Authorization'] = `Basic ${this.basicAuth}`;
    const res = await this.request(t, headers);
    const body = await readSmall(res);
    if (res.statusCode !== 200) throw new RegistryError(`token request ${t.origin}${t.pathname} for ${this.ref.name}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`);
    let token: unknown;
    try {
      const j = JSON.parse(body) as { token?: unknown; access_token?: unknown };
      token = j.token ?? j.access_token;
    } catch {
      /* below */
    }
    if (typeof token !== 'string' || token === '') throw new RegistryError(`token request ${t.origin}${t.pathname}: no token in the response`);
    this.authorization = `Bearer ${token}`;
  }

  /** GET `path` under /v2/<repository>/ → the 200 response (redirects followed, auth handled). */
  async get(path: string): Promise<IncomingMessage> {
    let url = new URL(`${await this.resolveBase()}/v2/${this.ref.repository}/${path}`);
    const what = `GET ${url.href}`;
    let authTried = false;
    for (let hop = 0; hop < 8; hop++) {
      const headers: Record<string, string> = {};
      if (this.authorization && url.host === this.host) headers['Authorization'] = this.authorization;
      let res: IncomingMessage;
      try {
        res = await this.request(url, headers);
      } catch (e) {
        throw new RegistryError(`${what}: ${(e as Error).message}`, { url: url.href });
      }
      const status = res.statusCode ?? 0;
      if (status === 200) return res;
      if (status === 401 && !authTried && url.host === this.host) {
        authTried = true;
        await readSmall(res);
        const ch = parseChallenge(res.headers['www-authenticate']);
        if (ch?.scheme === 'bearer') await this.fetchToken(ch, url.href);
        else if (ch?.scheme === 'basic' && this.basicAuth) this.authorization = `Basic ${this.basicAuth}`;
        else
          throw new RegistryError(
            `${what}: HTTP 401: the registry wants credentials (${res.headers['www-authenticate'] ?? 'no challenge'}); pass --authfile, or --fetch=skopeo`,
            { url: url.href, status },
          );
        continue;
      }
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        url = new URL(res.headers.location, url);
        continue;
      }
      const body = await readSmall(res);
      throw new RegistryError(`${what}: HTTP ${status}${body ? `: ${body.trim().slice(0, 300)}` : ''}`, { url: url.href, status });
    }
    throw new RegistryError(`${what}: too many redirects`);
  }

  /** The raw (unverified) bytes of a blob, as a stream; errors arrive on the stream. */
  openBlob(digest: string): Readable {
    const out = new PassThrough({ highWaterMark: 256 * 1024 });
    this.get(`blobs/${digest}`).then(
      (res) => {
        res.on('error', (e) => out.destroy(new RegistryError(`blob ${digest} of docker://${this.ref.name}: ${e.message}`)));
        out.on('close', () => res.destroy());
        res.pipe(out);
      },
      (e: Error) => out.destroy(e),
    );
    return out;
  }
}

/** base64 `user:password` for `domain` from a containers-auth.json file the user named. */
function readAuthFile(file: string, domain: string): string | undefined {
  let j: { auths?: Record<string, { auth?: string }> };
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as typeof j;
  } catch (e) {
    throw new RegistryError(`auth file ${file}: ${(e as Error).message}`);
  }
  const auths = j.auths ?? {};
  const keys = domain === 'docker.io' ? ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'registry-1.docker.io'] : [domain];
  for (const k of keys) if (auths[k]?.auth) return auths[k]!.auth;
  return undefined;
}

/** Open a docker:// image: manifest and config now, layer blobs on demand. */
export async function openRegistryImage(ref: DockerReference, opts: OpenImageOptions): Promise<StoreImage> {
  const location = formatImageReference(ref);
  const named = `docker://${ref.name}`;
  let bytes = await skopeoInspectRaw(location, false, opts, MAX_MANIFEST_SIZE);
  let expected = ref.digest;
  for (let depth = 0; ; depth++) {
    const digest = sha256Digest(bytes);
    if (expected && digest !== expected) throw new OciDigestError(`manifest of ${location}`, expected, digest);
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch (e) {
      throw new OciFormatError(`manifest ${digest} of ${location}: invalid JSON: ${(e as Error).message}`);
    }
    const kind = sniffManifestKind(parsed);
    if (kind === 'manifest') break;
    if (kind !== 'index' || depth >= 4) {
      const mt = (parsed as { mediaType?: unknown })?.mediaType;
      throw new UnsupportedMediaTypeError(typeof mt === 'string' ? mt : '(none)', `manifest ${digest} of ${location}`);
    }
    const d = pickFromIndex(parseIndex(bytes, `index ${digest} of ${location}`), opts.platform, `index ${digest} of ${location}`);
    expected = d.digest;
    bytes = await skopeoInspectRaw(`${named}@${d.digest}`, false, opts, MAX_MANIFEST_SIZE);
  }
  const manifestDigest = sha256Digest(bytes);
  const manifest = parseManifest(bytes, `manifest ${manifestDigest} of ${location}`);
  const cwhere = `config ${manifest.config.digest} of manifest ${manifestDigest} in ${location}`;
  if (!isConfigMediaType(manifest.config.mediaType)) throw new UnsupportedMediaTypeError(manifest.config.mediaType, cwhere);
  if (manifest.config.size > MAX_CONFIG_SIZE) throw new OciFormatError(`${cwhere}: ${manifest.config.size} bytes is more than the ${MAX_CONFIG_SIZE} allowed`);
  const configBytes = await skopeoInspectRaw(`${named}@${manifestDigest}`, true, opts, MAX_CONFIG_SIZE);
  const configDigest = sha256Digest(configBytes);
  if (configDigest !== manifest.config.digest) throw new OciDigestError(cwhere, manifest.config.digest, configDigest);
  if (configBytes.length !== manifest.config.size) {
    throw new OciFormatError(`${cwhere}: size mismatch: expected ${manifest.config.size} bytes, got ${configBytes.length}`);
  }
  const config = parseConfig(configBytes, cwhere);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new OciFormatError(`${cwhere}: rootfs.diff_ids has ${config.rootfs.diff_ids.length} entries but the manifest has ${manifest.layers.length} layers`);
  }
  const client = new RegistryClient(ref, opts);
  return {
    ref,
    location,
    manifest,
    manifestBytes: bytes,
    manifestDigest,
    config,
    configBytes,
    configDigest,
    layers: manifest.layers,
    diffIds: config.rootfs.diff_ids,
    transport: 'registry',
    openLayerCompressed(i: number): Readable {
      const d = manifest.layers[i];
      if (!d) throw new OciFormatError(`${location}: layer index ${i} out of range`);
      const what = `layer ${i} blob ${d.digest} of ${location}`;
      return chain(client.openBlob(d.digest), [new VerifyStream({ digest: d.digest, size: d.size }, what)]);
    },
    close: async () => {},
  };
}
