/**
 * Image references in containers-transports(5) syntax, for the transports this module handles:
 *
 *   oci:PATH[:TAG]                 an OCI image layout directory
 *   oci-archive:PATH[:TAG]         a tar of an OCI image layout
 *   docker://[HOST[:PORT]/]NAME[:TAG|@sha256:HEX]   a registry (through skopeo)
 *
 * As in containers/image, PATH ends at the first `:` (so a path cannot contain one) and the rest
 * is the tag. Tags follow the OCI `org.opencontainers.image.ref.name` grammar. Docker names follow
 * the distribution reference grammar; `name` keeps the spelling the user gave (ostree-ext uses the
 * unnormalized string, e.g. for `ostree/container/image/…` refs), `domain`/`repository` are the
 * normalized parts (`busybox` → `docker.io` + `library/busybox`).
 */
import { UsageError } from '../errors.js';

export type ImageReference = OciDirReference | OciArchiveReference | DockerReference;

export interface OciDirReference {
  transport: 'oci';
  path: string;
  tag?: string;
}

export interface OciArchiveReference {
  transport: 'oci-archive';
  path: string;
  tag?: string;
}

export interface DockerReference {
  transport: 'docker';
  /** Name as written, without tag or digest, e.g. `127.0.0.1:5000/test/img`. */
  name: string;
  /** Registry host[:port]; `docker.io` when the name has none. */
  domain: string;
  /** Repository path within the registry (`library/` added for docker.io one-component names). */
  repository: string;
  tag?: string;
  digest?: string;
}

export type Transport = ImageReference['transport'];

// OCI image-spec annotations.md, org.opencontainers.image.ref.name
const REF_NAME_RE = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;
// distribution/reference grammar
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const NAME_MAX = 255;

function bad(input: string, why: string): never {
  throw new UsageError(`invalid image reference ${JSON.stringify(input)}: ${why}`, { reference: input });
}

function parseLayoutRef(input: string, transport: 'oci' | 'oci-archive', rest: string): ImageReference {
  const colon = rest.indexOf(':');
  const path = colon < 0 ? rest : rest.slice(0, colon);
  const tag = colon < 0 ? undefined : rest.slice(colon + 1);
  if (path === '') bad(input, `${transport}: needs a path`);
  if (path.includes('\0')) bad(input, 'path contains a NUL byte');
  if (tag !== undefined) {
    if (tag === '') bad(input, 'empty tag after ":"');
    if (!REF_NAME_RE.test(tag)) bad(input, `tag ${JSON.stringify(tag)} is not a valid OCI ref name`);
  }
  return tag === undefined ? { transport, path } : { transport, path, tag };
}

function parseDockerRef(input: string, rest: string): DockerReference {
  if (!rest.startsWith('//')) bad(input, 'docker: must be followed by "//"');
  let s = rest.slice(2);
  if (s === '') bad(input, 'docker:// needs an image name');
  let digest: string | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    digest = s.slice(at + 1);
    s = s.slice(0, at);
    if (!DIGEST_RE.test(digest)) bad(input, `digest ${JSON.stringify(digest)} is not sha256:<64 lowercase hex>`);
  }
  let tag: string | undefined;
  const lastSlash = s.lastIndexOf('/');
  const lastColon = s.lastIndexOf(':');
  if (lastColon > lastSlash) {
    tag = s.slice(lastColon + 1);
    s = s.slice(0, lastColon);
    if (!TAG_RE.test(tag)) bad(input, `tag ${JSON.stringify(tag)} is not valid ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})`);
  }
  if (tag !== undefined && digest !== undefined) bad(input, 'a tag and a digest together are not supported');
  const name = s;
  if (name === '') bad(input, 'empty image name');
  if (name.length > NAME_MAX) bad(input, `name longer than ${NAME_MAX} characters`);
  const parts = name.split('/');
  let domain = 'docker.io';
  let pathParts = parts;
  const first = parts[0] ?? '';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase() || first.startsWith('['))) {
    domain = first;
    pathParts = parts.slice(1);
    if (!DOMAIN_RE.test(domain)) bad(input, `registry ${JSON.stringify(domain)} is not a valid host[:port]`);
  }
  for (const c of pathParts) {
    if (c === '') bad(input, 'empty path component in name');
    if (c !== c.toLowerCase()) bad(input, `repository name component ${JSON.stringify(c)} must be lowercase`);
    if (!PATH_COMPONENT_RE.test(c)) bad(input, `invalid repository name component ${JSON.stringify(c)}`);
  }
  if (domain === 'index.docker.io') domain = 'docker.io';
  let repository = pathParts.join('/');
  if (domain === 'docker.io' && pathParts.length === 1) repository = `library/${repository}`;
  const ref: DockerReference = { transport: 'docker', name, domain, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * Parse `oci:…`, `oci-archive:…` or `docker://…`. Throws UsageError naming the reference and what
 * is wrong with it.
 */
export function parseImageReference(input: string): ImageReference {
  if (typeof input !== 'string' || input === '') bad(String(input), 'empty');
  const colon = input.indexOf(':');
  if (colon <= 0) bad(input, 'expected TRANSPORT:DETAILS, e.g. oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker://NAME[:TAG]');
  const transport = input.slice(0, colon);
  const rest = input.slice(colon + 1);
  switch (transport) {
    case 'oci':
    case 'oci-archive':
      return parseLayoutRef(input, transport, rest);
    case 'docker':
      return parseDockerRef(input, rest);
    default:
      return bad(input, `unsupported transport ${JSON.stringify(transport)} (supported: oci, oci-archive, docker)`);
  }
}

/** Inverse of parseImageReference (docker names keep their original spelling). */
export function formatImageReference(ref: ImageReference): string {
  switch (ref.transport) {
    case 'oci':
    case 'oci-archive':
      return `${ref.transport}:${ref.path}${ref.tag !== undefined ? `:${ref.tag}` : ''}`;
    case 'docker':
      return `docker://${ref.name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
  }
}

/** Accept either a string or an already parsed reference. */
export function toImageReference(ref: string | ImageReference): ImageReference {
  return typeof ref === 'string' ? parseImageReference(ref) : ref;
}
