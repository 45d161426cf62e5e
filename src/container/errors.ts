/**
 * Errors of the container module (ostree-ext tar format, encapsulate, unencapsulate). Each names
 * the layer, tar path and/or object that failed; structured fields go into `details`.
 */
import { OstreeOciError } from '../errors.js';

/** A tar stream that is not a valid ostree-ext layer: bad entry, bad order, traversal, … */
export class ContainerFormatError extends OstreeOciError {}

/** A commit that is incomplete after import: an object it references was in no layer. */
export class MissingObjectError extends OstreeOciError {}

/** The image is not an ostree container image (labels, layer layout). */
export class NotOstreeImageError extends OstreeOciError {}

/** `--verify-commit` / `--require-commitmeta` / label consistency failed. */
export class CommitVerificationError extends OstreeOciError {}

/** A commit the ostree-ext format cannot carry (a path that collides with the format's own entries). */
export class UnrepresentableCommitError extends OstreeOciError {}
