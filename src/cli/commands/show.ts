/** `ostree-oci show --repo R REV [--json]` */
import type { Command } from 'commander';
import { describeCommit, type MetadataEntry } from '../../ostree/inspect.js';
import { Repo } from '../../ostree/repo.js';
import { printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('show')
    .description('show a commit: fields, metadata, detached metadata (signatures) and object counts')
    .requiredOption('--repo <path>', 'ostree repository')
    .argument('<rev>', 'ref, checksum or unique checksum prefix')
    .option('--json', 'machine-readable output')
    .action((rev: string, opts: { repo: string; json?: boolean }) => {
      const repo = Repo.open(opts.repo);
      try {
        const s = describeCommit(repo, rev);
        if (opts.json) return printJson(s);
        const out: string[] = [
          `commit     ${s.checksum}`,
          `parent     ${s.parent ?? '(none)'}`,
          `refs       ${s.refs.join(', ') || '(none)'}`,
          `date       ${s.timestamp}`,
          `subject    ${s.subject}`,
          ...(s.body ? [`body       ${s.body.replace(/\n/g, '\n           ')}`] : []),
          `root       dirtree ${s.rootTree}`,
          `           dirmeta ${s.rootMeta}`,
          `size       ${s.commitSize} bytes`,
          `objects    ${s.objects.commit} commit, ${s.objects.dirtree} dirtree, ${s.objects.dirmeta} dirmeta, ${s.objects.file} file`,
          `metadata   ${s.metadata.length ? '' : '(none)'}`,
          ...s.metadata.map(line),
          `commitmeta ${s.commitmeta === null ? '(none)' : `${s.commitmetaSize} bytes`}`,
          ...(s.commitmeta ?? []).map(line),
        ];
        process.stdout.write(`${out.join('\n')}\n`);
      } finally {
        repo.close();
      }
    });
}

function line(e: MetadataEntry): string {
  const n = e.elements !== undefined ? `, ${e.elements} element${e.elements === 1 ? '' : 's'}` : '';
  return `  ${e.key} (${e.type}${n}, ${e.size} bytes): ${e.summary}`;
}
