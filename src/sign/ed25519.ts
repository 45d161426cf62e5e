/**
 * ed25519 in exactly ostree's format, with Node's crypto (Debian's libostree 2022.7 has no
 * ed25519 engine): shared/specs/ostree-objects.md §5.2.
 *
 *  - secret key: base64 of seed (32) ‖ public key (32) — libsodium's layout, what `ostree sign
 *    --keys-file` reads;
 *  - public key: base64 of the 32 raw bytes; key files hold one key per line;
 *  - signature: 64 raw bytes over the exact `.commit` bytes, stored in the detached metadata
 *    under `ostree.sign.ed25519` (`aay`).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { OstreeOciError } from '../errors.js';

export const ED25519_METADATA_KEY = 'ostree.sign.ed25519';

/** A key file or key text that cannot be used; the message names the file and line. */
export class KeyError extends OstreeOciError {}

/** A signature problem (bad length, no signatures, no valid signature). */
export class SignatureError extends OstreeOciError {}

const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface Ed25519SecretKey {
  seed: Buffer;
  publicKey: Buffer;
  key: KeyObject;
}

export function publicKeyObject(pub: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
}

/** The 32-byte public key of a 32-byte seed. */
export function publicFromSeed(seed: Buffer): Buffer {
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const der = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

/** Generate a key pair: { secret: base64(seed‖pub), public: base64(pub) }. */
export function generateKeyPair(): { secret: string; public: string; publicKey: Buffer } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  const seed = Buffer.from(der.subarray(der.length - 32));
  const pub = publicFromSeed(seed);
  return { secret: Buffer.concat([seed, pub]).toString('base64'), public: pub.toString('base64'), publicKey: pub };
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Decode strict standard base64; null when the text is not base64. */
function decodeBase64(text: string): Buffer | null {
  if (!B64.test(text) || text.length % 4 !== 0) return null;
  return Buffer.from(text, 'base64');
}

/** Parse a secret key (base64 of 64 bytes seed‖public); the public half must match the seed. */
export function parseSecretKey(text: string, where = 'secret key'): Ed25519SecretKey {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0) throw new KeyError(`${where}: empty key file`);
  if (lines.length > 1) throw new KeyError(`${where}: expected one base64 secret key, found ${lines.length} lines`);
  const raw = decodeBase64(lines[0]!);
  if (!raw) throw new KeyError(`${where}: malformed base64`);
  if (raw.length !== 64) throw new KeyError(`${where}: ed25519 secret key must be 64 bytes (seed ‖ public), found ${raw.length}`);
  const seed = raw.subarray(0, 32);
  const publicKey = raw.subarray(32);
  if (!publicFromSeed(seed).equals(publicKey)) {
    throw new KeyError(`${where}: the public half does not belong to the seed (corrupted key)`);
  }
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  return { seed: Buffer.from(seed), publicKey: Buffer.from(publicKey), key };
}

export function readSecretKeyFile(path: string): Ed25519SecretKey {
  return parseSecretKey(readKeyText(path), path);
}

/** Parse a public key file: one base64 key (32 bytes) per line, as ostree reads them. */
export function parsePublicKeys(text: string, where = 'public keys'): Buffer[] {
  const keys: Buffer[] = [];
  text.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (l === '') return;
    const raw = decodeBase64(l);
    if (!raw) throw new KeyError(`${where}:${i + 1}: malformed base64`);
    if (raw.length !== 32) throw new KeyError(`${where}:${i + 1}: ed25519 public key must be 32 bytes, found ${raw.length}`);
    keys.push(raw);
  });
  if (keys.length === 0) throw new KeyError(`${where}: public key file specified, but no public keys found`);
  return keys;
}

export function readPublicKeysFile(path: string): Buffer[] {
  return parsePublicKeys(readKeyText(path), path);
}

function readKeyText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new KeyError(`cannot read key file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function signData(data: Buffer, key: Ed25519SecretKey): Buffer {
  return sign(null, data, key.key);
}

export interface Ed25519VerifyResult {
  valid: boolean;
  /** Hex of the public key that verified, when valid. */
  key?: string;
  /** ostree-style message. */
  message: string;
}

/**
 * ostree's data_verify: the first (signature, key) pair that verifies wins. Signatures of a
 * length other than 64 are a hard error, as in ostree.
 */
export function verifySignatures(data: Buffer, signatures: Buffer[], keys: Buffer[]): Ed25519VerifyResult {
  if (signatures.length === 0) return { valid: false, message: 'ed25519: no signatures found' };
  for (const [i, sig] of signatures.entries()) {
    if (sig.length !== 64) throw new SignatureError(`ed25519: signature ${i} has ${sig.length} bytes, expected 64`);
  }
  const tried: string[] = [];
  for (const sig of signatures) {
    for (const k of keys) {
      if (verify(null, data, publicKeyObject(k), sig)) {
        return { valid: true, key: k.toString('hex'), message: `ed25519: Signature verified successfully with key '${k.toString('hex')}'` };
      }
      if (!tried.includes(k.toString('hex'))) tried.push(k.toString('hex'));
    }
  }
  const which = tried.length <= 3 ? tried.map((k) => `key '${k}'`).join('; ') : `tried ${tried.length} keys`;
  return { valid: false, message: `ed25519: Signature couldn't be verified with: ${which}` };
}
