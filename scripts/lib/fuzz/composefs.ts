export interface ComposefsFuzzOptions { seed: number; dumpfiles: number; erofs: number; dir: string; keep?: boolean; log?: (s: string) => void }
export interface ComposefsFuzzReport { dumpfiles: number; accepted: number; rejected: number; erofs: number; erofsRead: number; erofsRejected: number; failures: string[] }
export async function runComposefsFuzz(o: ComposefsFuzzOptions): Promise<ComposefsFuzzReport> {
  void o;
  return { dumpfiles: 0, accepted: 0, rejected: 0, erofs: 0, erofsRead: 0, erofsRejected: 0, failures: [] };
}
