/** Errors of the composefs tree sources (OCI layers, directories). */
import { OstreeOciError } from '../../errors.js';

/**
 * A source that cannot be turned into a composefs tree: a malformed or unsupported layer tar
 * entry, a hardlink to nothing, a path through a non-directory, an unreadable directory entry.
 * The message names the layer (or directory) and the path.
 */
export class ComposefsSourceError extends OstreeOciError {}
