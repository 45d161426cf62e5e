/**
 * Errors of the OCI module. Every message names the blob/digest/path/field that failed; the
 * structured fields are repeated in `details` for `--verbose`.
 */
import { OstreeOciError } from '../errors.js';

/** Base class for OCI image I/O errors (malformed layouts, bad blobs, transport failures). */
export class OciError extends OstreeOciError {}

/** A JSON document (index.json, manifest, config, oci-layout) or tar that is malformed. */
export class OciFormatError extends OciError {}

/** A blob whose bytes do not hash to the digest its descriptor names. */
export class OciDigestError extends OciError {
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${what}: digest mismatch: expected ${expected}, got ${actual}`, { what, expected, actual });
  }
}

/** A blob whose length differs from its descriptor's size (truncated or over-long). */
export class OciSizeError extends OciError {
  constructor(
    readonly what: string,
    readonly expected: number,
    /** Bytes seen; for over-long input, the count at the moment the size was exceeded. */
    readonly actual: number,
    readonly overLong: boolean,
  ) {
    super(
      overLong
        ? `${what}: size mismatch: more than the expected ${expected} bytes (at least ${actual})`
        : `${what}: size mismatch: expected ${expected} bytes, got ${actual} (truncated)`,
      { what, expected, actual, overLong },
    );
  }
}

/** The sha256 of a layer's uncompressed tar differs from the config's `rootfs.diff_ids[i]`. */
export class DiffIdMismatchError extends OciError {
  constructor(
    readonly layerIndex: number,
    readonly layerDigest: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      `layer ${layerIndex} (${layerDigest}): diffid mismatch: config rootfs.diff_ids[${layerIndex}] is ${expected}, uncompressed tar hashes to ${actual}`,
      { layerIndex, layerDigest, expected, actual },
    );
  }
}

/** A media type this module cannot handle in that position (layer, manifest, config). */
export class UnsupportedMediaTypeError extends OciError {
  constructor(
    readonly mediaType: string,
    readonly where: string,
  ) {
    super(`${where}: unsupported media type ${JSON.stringify(mediaType)}`, { mediaType, where });
  }
}

/** The image (tag, platform) asked for is not in the layout. */
export class ImageNotFoundError extends OciError {}

/** A blob the manifest/index refers to is not present in the layout or archive. */
export class BlobNotFoundError extends OciError {
  constructor(
    readonly digest: string,
    readonly location: string,
  ) {
    super(`blob ${digest} not found in ${location}`, { digest, location });
  }
}

/** A layer's compressed stream could not be decompressed. */
export class LayerDecompressError extends OciError {}

/** `skopeo` failed (or is missing). */
export class SkopeoError extends OciError {}
