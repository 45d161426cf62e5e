/** Errors of the image store (`ostree-oci image …`). Each names the image, layer or ref involved. */
import { OstreeOciError, UsageError } from '../errors.js';

/** The store is inconsistent or an operation on it failed (names the ref/commit). */
export class StoreError extends OstreeOciError {}

/** The image reference names no image in the store. */
export class ImageNotInStoreError extends UsageError {}

/** A registry request failed (names the URL and HTTP status). */
export class RegistryError extends OstreeOciError {}

/** A derived (non-ostree) layer that cannot be applied: bad path, unsupported entry type. */
export class DerivedLayerError extends OstreeOciError {}
