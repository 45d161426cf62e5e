/**
 * `ostree-oci migrate` / `cfs fsck` / `cfs gc` end to end, against tools we did not write: commits
 * and sysroots made by the host `ostree` (2022.7: commit, admin init-fs / os-init / deploy),
 * `composefs-info` 1.0.8 (oracle chroot: dump, missing-objects), the `fsverity` CLI for every object
 * digest, `skopeo` for the OCI image, `zstd` + a parser from composefs-rs' docs for splitstreams.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readErofsImage } from '../src/composefs/erofs/reader.js';
import { isReg, walk } from '../src/tree/model.js';
import { CfsRepo, fsckRepo, openSysroot, bootedDeployment } from '../src/cfs/index.js';
import { ostreeCommit, ostreeInit, pseudoRandomBytes, writeSampleTree } from '../scripts/lib/sample-tree.js';
import { ensureBookwormRepo } from '../scripts/lib/bookworm-rootfs.js';
import { CLI, cli, tmp } from './helpers/tmp.js';
import { fsverityCli, oracle, ostreeLs, parseDump, parseSplitstreamIndependently, reassemble } from './cfs-helpers.js';

const MOUNT_POINTS = ['/usr', '/etc', '/boot', '/var', '/sysroot'];
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const hexPath = (hex: string): string => `${hex.slice(0, 2)}/${hex.slice(2)}`;

interface Report {
  commit: string;
  name: string;
  source: Record<string, unknown> & { deployment?: { index: number; checksum: string } };
  image: { digest: string; path: string; ref: string; written: boolean; size: number };
  files: { entries: number; regular: number; inline: number; external: number; bytes: number };
  objects: { unique: number; written: number; reused: number; bytesWritten: number; bytesReused: number };
  verification: { signature: string; composefsDigest: string; outcome: string };
  oci?: {
    tag: string;
    ref: string;
    manifestDigest: string;
    configDigest: string;
    reference: string;
    annotations: Record<string, string>;
    layers: Array<{ diffId: string; contentId: string; stream: string }>;
  };
}

/** Run the CLI with --json; throws with stderr when it fails. */
function cliJson<T>(args: string[]): T {
  const r = cli([...args, '--json']);
  if (r.status !== 0) throw new Error(`${args.join(' ')} → ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function migrate(args: string[]): Report {
  const r = cli(['migrate', ...args, '--json']);
  if (r.status !== 0) throw new Error(`migrate ${args.join(' ')} → ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

/** The sample tree (with a kernel), committed by the host ostree into a fresh repo. */
function sampleRepo(d: string, mode = 'bare-user', variant = ''): { repo: string; tree: string; commit: string } {
  const tree = join(d, `tree${variant}`);
  writeSampleTree(tree, { containerLayout: true, bigFileMiB: 1, variant });
  writeFileSync(join(tree, 'usr/etc/os-release'), `ID=sample\nPRETTY_NAME="Sample${variant}"\n`); // ostree admin deploy needs ID
  const repo = join(d, 'repo');
  if (!existsSync(repo)) ostreeInit(repo, mode);
  return { repo, tree, commit: ostreeCommit(repo, tree, { branch: 'main' }) };
}

/** Regular files > 64 bytes of a directory tree → their fs-verity digests (via the fsverity CLI). */
function externalDigests(tree: string): Set<string> {
  const files = execFileSync('find', [tree, '-type', 'f', '-size', '+64c'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return new Set(fsverityCli(files).values());
}

/**
 * Everything the brief asks of a migrated image: `cfs fsck` clean; our EROFS reader walks the image
 * and every external file's redirect names an object whose fs-verity digest (fsverity CLI) equals
 * the metacopy digest; composefs-info lists the same files as `ostree ls -R` of the commit (plus the
 * mount points libostree adds), with the same modes, owners, sizes and link targets, files ≤ 64
 * bytes inline and larger ones external; composefs-info finds no missing object.
 */
async function checkMigration(t: Test, cfs: string, rep: Report, repo: string, rev: string): Promise<void> {
  const fsck = cli(['cfs', 'fsck', cfs]);
  t.equal(fsck.status, 0, `cfs fsck clean: ${fsck.stdout}${fsck.stderr}`);
  const image = join(cfs, 'images', rep.image.digest);
  t.equal(readlinkSync(image), `../objects/${hexPath(rep.image.digest)}`, 'images/<digest> → ../objects/hh/rest');
  t.equal(readlinkSync(join(cfs, rep.image.ref)).split('/').pop(), rep.image.digest, `${rep.image.ref} → the image`);
  t.equal(fsverityCli([image]).get(image), rep.image.digest, 'the image is named by its fs-verity digest');

  const root = await readErofsImage(image);
  const ext: Array<{ path: string; digest: string; payload: string }> = [];
  const notInline: string[] = [];
  for (const n of walk(root)) {
    if (!isReg(n.mode) || n.linkTo) continue;
    if (n.size > 64n) ext.push({ path: n.pathString(), digest: n.digest?.toString('hex') ?? '', payload: n.payload?.toString() ?? '' });
    else if (n.payload || n.digest || (n.content?.length ?? 0) !== Number(n.size)) notInline.push(n.pathString());
  }
  t.same(notInline, [], 'files ≤ 64 bytes are inline with their content');
  t.equal(ext.length, rep.files.external, 'every file > 64 bytes is external');
  const objPaths = [...new Set(ext.map((e) => join(cfs, 'objects', e.payload)))];
  const got = fsverityCli(objPaths);
  const bad = ext.filter((e) => e.payload !== hexPath(e.digest) || got.get(join(cfs, 'objects', e.payload)) !== e.digest);
  t.same(bad, [], `all ${ext.length} redirects resolve to an object whose fs-verity digest is the metacopy digest`);
  t.equal(objPaths.length, rep.objects.unique);

  const dump = parseDump(oracle('composefs-info', 'dump', image));
  const ls = ostreeLs(repo, rev);
  const want = new Set([...ls.keys(), ...MOUNT_POINTS]);
  t.same([...dump.keys()].sort(), [...want].sort(), `composefs-info lists the commit's ${ls.size} paths (+ mount points)`);
  const mismatches: string[] = [];
  for (const [p, e] of ls) {
    const c = dump.get(p);
    if (!c) continue;
    const type = { '-': 0o100000, d: 0o040000, l: 0o120000 }[e.type]!;
    if (c.mode !== (type | e.mode) || c.uid !== e.uid || c.gid !== e.gid) mismatches.push(`${p}: mode/owner ${c.mode.toString(8)} ${c.uid}:${c.gid}`);
    if (e.type === '-') {
      if (c.size !== e.size) mismatches.push(`${p}: size ${c.size} != ${e.size}`);
      if (e.size > 64 && (c.payload !== hexPath(c.digest) || c.digest.length !== 64)) mismatches.push(`${p}: external without hh/rest redirect`);
      if (e.size <= 64 && (c.payload || c.digest)) mismatches.push(`${p}: small file not inline`);
    }
    if (e.type === 'l' && c.payload !== e.target) mismatches.push(`${p}: link ${c.payload} != ${e.target}`);
  }
  t.same(mismatches, [], 'modes, owners, sizes, link targets and inline/external agree with the commit');
  const missing = oracle('composefs-info', `--basedir=${join(cfs, 'objects')}`, 'missing-objects', image);
  t.equal(missing.trim(), '', 'composefs-info missing-objects: none');
}

t.test('migrate a generated commit: fsck clean, verified objects, composefs-info agrees, signature and composefs digest verified', async (t) => {
  const d = tmp(t);
  const { repo, tree } = sampleRepo(d);
  // ostree.composefs.digest.v0 (ours equals ostree 2026.4's, see composefs-commit.test.ts), then sign.
  t.equal(cli(['commit-composefs', '--repo', repo, '-b', 'signed', 'main']).status, 0);
  t.equal(cli(['keygen', '--out', join(d, 'key')]).status, 0);
  t.equal(cli(['sign', '--repo', repo, 'signed', '--keyfile', join(d, 'key')]).status, 0);

  const cfs = join(d, 'cfs');
  const rep = migrate(['--repo', repo, 'signed', '--to', cfs, '--pubkeys', join(d, 'key.pub')]);
  t.equal(rep.name, 'signed');
  t.equal(rep.image.ref, 'images/refs/signed');
  t.equal(rep.verification.signature, 'verified');
  t.equal(rep.verification.composefsDigest, 'verified');
  t.equal(rep.objects.written, rep.objects.unique, 'first migration writes every object');
  t.equal(rep.objects.unique, externalDigests(tree).size, 'objects = distinct contents of files > 64 bytes');
  await checkMigration(t, cfs, rep, repo, 'signed');

  // Inline content is the file content.
  const root = await readErofsImage(join(cfs, 'images', rep.image.digest));
  for (const p of ['usr/bin/hello', 'usr/etc/hostname', 'usr/share/doc/README']) {
    const n = [...walk(root)].find((x) => x.pathString() === `/${p}`)!;
    t.same(n.content, readFileSync(join(tree, p)), `/${p} inline content`);
  }
  t.ok(statSync(join(cfs, 'meta.json')).isFile());

  // Human report.
  const text = cli(['migrate', '--repo', repo, 'signed', '--to', cfs]);
  t.equal(text.status, 0, text.stderr);
  t.match(text.stdout, /objects: \d+ unique: 0 written .* reused/);
  t.match(text.stdout, /verification: signature not-requested, ostree\.composefs\.digest\.v0 verified/);

  // A key that did not sign it: refused before anything is written.
  t.equal(cli(['keygen', '--out', join(d, 'other')]).status, 0);
  const wrong = cli(['migrate', '--repo', repo, 'signed', '--to', join(d, 'cfs-wrong'), '--pubkeys', join(d, 'other.pub')]);
  t.equal(wrong.status, 1);
  t.match(wrong.stderr, /failed verification, nothing migrated: ed25519-signature/);
  t.notOk(existsSync(join(d, 'cfs-wrong')), 'nothing written');
  // An unsigned commit with --pubkeys: refused too.
  const unsigned = cli(['migrate', '--repo', repo, 'main', '--to', join(d, 'cfs-wrong'), '--pubkeys', join(d, 'key.pub')]);
  t.equal(unsigned.status, 1);
  t.match(unsigned.stderr, /ed25519-signature/);

  // A commit whose ostree.composefs.digest.v0 is wrong.
  const badDigest = ostreeCommit(repo, tree, {
    branch: 'bad-digest',
    extraArgs: [`--add-metadata=ostree.composefs.digest.v0=@ay [${Array(32).fill('0x01').join(', ')}]`],
  });
  const bad = cli(['migrate', '--repo', repo, badDigest, '--to', join(d, 'cfs-wrong')]);
  t.equal(bad.status, 1);
  t.match(bad.stderr, /composefs-digest: Wrong fsverity digest/);
  t.notOk(existsSync(join(d, 'cfs-wrong')));

  // --to a directory that holds something else (a mistyped path): refused, left as it was.
  const busy = join(d, 'busy');
  mkdirSync(busy);
  writeFileSync(join(busy, 'notes.txt'), 'mine\n');
  const intoBusy = cli(['migrate', '--repo', repo, 'main', '--to', busy]);
  t.equal(intoBusy.status, 1);
  t.match(intoBusy.stderr, /is not empty and is not a composefs repository/);
  t.same(readdirSync(busy), ['notes.txt'], 'nothing added to it');

  // Image names clashing with existing refs (a/b under the ref a; x above the refs x/…): refused
  // before any object is written, naming the ref in the way; the refs stay as they were.
  const named = join(d, 'cfs-names');
  migrate(['--repo', repo, 'main', '--to', named, '--name', 'a']);
  migrate(['--repo', repo, 'main', '--to', named, '--name', 'x/y']);
  const refsBefore = ['a', 'x', 'x/y'].map((n) => [n, existsSync(join(named, 'images/refs', n)) && statSync(join(named, 'images/refs', n)).isDirectory()]);
  rmSync(join(named, 'objects'), { recursive: true }); // so that any object written would show
  const under = cli(['migrate', '--repo', repo, 'main', '--to', named, '--name', 'a/b']);
  t.equal(under.status, 2, 'a name below an existing ref: usage error');
  t.match(under.stderr, /cannot create images\/refs\/a\/b: images\/refs\/a is a ref \(symlink\)/);
  const above = cli(['migrate', '--repo', repo, 'main', '--to', named, '--name', 'x']);
  t.equal(above.status, 2, 'a name above existing refs: usage error');
  t.match(above.stderr, /cannot create images\/refs\/x: it is a directory holding other refs/);
  t.equal(existsSync(join(named, 'objects')) ? countObjects(named) : 0, 0, 'no object written by either');
  t.same(['a', 'x', 'x/y'].map((n) => [n, existsSync(join(named, 'images/refs', n)) && statSync(join(named, 'images/refs', n)).isDirectory()]), refsBefore, 'refs unchanged');
  t.equal(readlinkSync(join(named, 'images/refs/a')), readlinkSync(join(named, 'images/refs/x/y')).replace(/^\.\.\//, ''), 'a and x/y still point at the image');
});

t.test('two related commits: the second migration writes only the changed objects', async (t) => {
  const d = tmp(t);
  const one = sampleRepo(d);
  const tree2 = join(d, 'tree2');
  cpSync(one.tree, tree2, { recursive: true, verbatimSymlinks: true });
  writeFileSync(join(tree2, 'usr/lib/4097.bin'), pseudoRandomBytes(4097, 1234)); // changed
  writeFileSync(join(tree2, 'usr/lib/new.bin'), pseudoRandomBytes(20000, 99)); // added
  writeFileSync(join(tree2, 'usr/lib/4096-copy.bin'), readFileSync(join(one.tree, 'usr/lib/4096.bin'))); // same content, new path
  writeFileSync(join(tree2, 'usr/share/doc/README'), 'changed small file\n'); // inline: no object
  const c2 = ostreeCommit(one.repo, tree2, { branch: 'two' });

  const set1 = externalDigests(one.tree);
  const set2 = externalDigests(tree2);
  const changed = [...set2].filter((h) => !set1.has(h));
  t.equal(changed.length, 2, 'fsverity CLI: two new contents');

  const cfs = join(d, 'cfs');
  const r1 = migrate(['--repo', one.repo, 'main', '--to', cfs]);
  t.equal(r1.objects.written, set1.size);
  // The same commit from an archive repository (content read through libostree): same image.
  const archive = join(d, 'archive');
  ostreeInit(archive, 'archive');
  execFileSync('ostree', ['pull-local', `--repo=${archive}`, one.repo, 'main'], { stdio: 'ignore' });
  const ra = migrate(['--repo', archive, 'main', '--to', cfs, '--name', 'main-archive']);
  t.equal(ra.image.digest, r1.image.digest, 'archive and bare-user sources give the same image');
  t.equal(ra.objects.written, 0);
  rmSync(join(cfs, 'images/refs/main-archive'));
  const r2 = migrate(['--repo', one.repo, c2, '--to', cfs, '--name', 'two']);
  t.equal(r2.objects.unique, set2.size);
  t.equal(r2.objects.written, changed.length, 'only the changed objects are written');
  t.equal(r2.objects.reused, set2.size - changed.length, 'the others are reused (after re-verification)');
  t.equal(r2.objects.bytesWritten, 4097 + 20000);
  t.ok(r2.image.written);
  const r3 = migrate(['--repo', one.repo, c2, '--to', cfs, '--name', 'two']);
  t.equal(r3.objects.written, 0);
  t.notOk(r3.image.written, 'same commit → same image digest, already present');
  t.equal(r3.image.digest, r2.image.digest);
  await checkMigration(t, cfs, r2, one.repo, c2);

  // gc: nothing while both refs exist; dropping the first ref frees its image and its own objects.
  t.match(cli(['cfs', 'gc', cfs, '--dry-run']).stdout, /would remove 0 object/);
  rmSync(join(cfs, 'images/refs/main'));
  const dry = cliJson<{ objectsRemoved: number; removed: string[] }>(['cfs', 'gc', cfs, '--dry-run']);
  const onlyIn1 = [...set1].filter((h) => !set2.has(h));
  t.same(dry.removed.sort(), [...onlyIn1, r1.image.digest].map((h) => `objects/${hexPath(h)}`).sort(), 'gc would remove image 1 and the content only it used');
  const g = cliJson<{ objectsRemoved: number; imagesRemoved: number }>(['cfs', 'gc', cfs]);
  t.equal(g.objectsRemoved, onlyIn1.length + 1);
  t.equal(g.imagesRemoved, 1);
  t.equal(cli(['cfs', 'fsck', cfs]).status, 0);
});

t.test('--oci: encapsulated with commitmeta, sealed, stored as splitstreams found by tag', async (t) => {
  const d = tmp(t);
  const { repo, commit } = sampleRepo(d);
  t.equal(cli(['keygen', '--out', join(d, 'key')]).status, 0);
  t.equal(cli(['sign', '--repo', repo, 'main', '--keyfile', join(d, 'key')]).status, 0);
  const cfs = join(d, 'cfs');
  const layout = join(d, 'oci');
  const rep = migrate(['--repo', repo, 'main', '--to', cfs, '--oci', `oci:${layout}:v1`, '--oci-tag', 'example.com/os/sample:v1', '--pubkeys', join(d, 'key.pub')]);
  t.equal(rep.verification.signature, 'verified');
  const oci = rep.oci!;
  t.equal(oci.ref, 'streams/refs/oci/example.com%2Fos%2Fsample:v1');

  // The image as skopeo sees it.
  const rawManifest = execFileSync('skopeo', ['inspect', '--raw', `oci:${layout}:v1`]);
  const manifest = JSON.parse(rawManifest.toString()) as { config: { digest: string }; layers: Array<{ digest: string }>; annotations: Record<string, string> };
  t.equal(`sha256:${sha256(rawManifest)}`, oci.manifestDigest);
  t.match(manifest.annotations['containers.composefs-digest'], /^[0-9a-f]{64}$/, 'sealed with the composefs annotation');
  t.equal(manifest.annotations['containers.composefs-digest'], oci.annotations['containers.composefs-digest']);
  t.equal(manifest.annotations['ostree.commit'], commit);
  const rawConfig = execFileSync('skopeo', ['inspect', '--config', '--raw', `oci:${layout}:v1`]);
  const diffIds = (JSON.parse(rawConfig.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;

  // Find it by tag as composefs-oci does: the ref's last component names the manifest stream.
  const tagLink = readlinkSync(join(cfs, oci.ref));
  t.equal(tagLink, `../../oci-manifest-${oci.manifestDigest}`);
  const objects = join(cfs, 'objects');
  const streamObj = (id: string): string => join(cfs, 'streams', readlinkSync(join(cfs, 'streams', id)));
  const ms = parseSplitstreamIndependently(streamObj(`oci-manifest-${oci.manifestDigest}`));
  t.equal(ms.contentType, 'ocimanif');
  t.equal(ms.objectRefs.length, 1, 'manifest JSON is one external object');
  t.ok(reassemble(ms, objects).equals(rawManifest), 'manifest stream holds the exact manifest bytes');
  t.same(ms.namedRecords.map((r) => r.replace(/^\d+:/, '')).sort(), [`config:${manifest.config.digest}`, ...diffIds].sort());
  const cs = parseSplitstreamIndependently(streamObj(`oci-config-${manifest.config.digest}`));
  t.equal(cs.contentType, 'ociconfg');
  t.ok(reassemble(cs, objects).equals(rawConfig), 'config stream holds the exact config bytes');
  t.same(cs.namedRecords.map((r) => r.replace(/^\d+:/, '')).sort(), [...diffIds].sort());
  for (const diffId of diffIds) {
    const ls = parseSplitstreamIndependently(streamObj(`oci-layer-${diffId}`));
    t.equal(ls.contentType, 'ocilayer');
    const tar = reassemble(ls, objects);
    t.equal(`sha256:${sha256(tar)}`, diffId, 'layer stream reassembles to its diff_id');
    writeFileSync(join(d, 'layer.tar'), tar);
    const names = execFileSync('tar', ['-tf', join(d, 'layer.tar')], { encoding: 'utf8', maxBuffer: 1 << 26 });
    t.match(names, new RegExp(`sysroot/ostree/repo/objects/${commit.slice(0, 2)}/${commit.slice(2)}\\.commitmeta`), 'commitmeta travels in the layer');
  }

  t.equal(cli(['cfs', 'fsck', cfs]).status, 0);
  t.match(cli(['cfs', 'gc', cfs, '--dry-run']).stdout, /would remove 0 object/);
  // Without the image ref, the tag still keeps every file object (they are the layer's content).
  rmSync(join(cfs, 'images/refs/main'));
  const g = cliJson<{ removed: string[] }>(['cfs', 'gc', cfs]);
  t.same(g.removed, [`objects/${hexPath(rep.image.digest)}`], 'only the EROFS image goes; layer content keeps the file objects');
  t.equal(cli(['cfs', 'fsck', cfs]).status, 0);
});

t.test('a Debian minbase commit migrates', async (t) => {
  const { repo, commit } = ensureBookwormRepo('bare-user');
  const d = tmp(t);
  const cfs = join(d, 'cfs');
  const rep = migrate(['--repo', repo, commit, '--to', cfs, '--name', 'debian/bookworm']);
  t.equal(rep.commit, commit);
  t.equal(rep.image.ref, 'images/refs/debian/bookworm');
  t.ok(rep.files.regular > 4000, `${rep.files.regular} regular files`);
  t.equal(rep.files.inline + rep.files.external, rep.files.regular);
  await checkMigration(t, cfs, rep, repo, commit);
});

t.test('sysroot deployments (ostree admin init-fs / os-init / deploy) migrate with --sysroot', async (t) => {
  const d = mkdtempSync(join(tmpdir(), 'ostree-oci-sysroot-'));
  t.teardown(() => {
    // Deployment directories are immutable (chattr +i) as ostree makes them.
    spawnSyncQuiet('chattr', ['-R', '-i', join(d, 'sysroot', 'ostree', 'deploy')]);
    if (!process.env['KEEP_TMP']) rmSync(d, { recursive: true, force: true });
  });
  const sysroot = join(d, 'sysroot');
  mkdirSync(sysroot);
  execFileSync('ostree', ['admin', 'init-fs', sysroot], { stdio: 'ignore' });
  execFileSync('ostree', ['admin', 'os-init', `--sysroot=${sysroot}`, 'sample'], { stdio: 'ignore' });
  const repo = join(sysroot, 'ostree', 'repo');
  const mk = (variant: string): string => {
    const tree = join(d, `tree${variant}`);
    writeSampleTree(tree, { containerLayout: true, bigFileMiB: 1, variant });
    writeFileSync(join(tree, 'usr/etc/os-release'), `ID=sample\nPRETTY_NAME="Sample ${variant}"\n`);
    const c = ostreeCommit(repo, tree, { branch: 'sample/stable', subject: variant });
    execFileSync('ostree', ['admin', 'deploy', `--sysroot=${sysroot}`, '--os=sample', 'sample/stable'], { stdio: 'ignore' });
    return c;
  };
  const first = mk('-one');
  const second = mk('-two');
  const status = execFileSync('ostree', ['admin', 'status', `--sysroot=${sysroot}`], { encoding: 'utf8' });
  const order = [...status.matchAll(/sample ([0-9a-f]{64})\.(\d+)/g)].map((m) => m[1]);
  t.same(order, [second, first], 'ostree admin status: newest first');

  const cfs = join(d, 'cfs');
  const r0 = migrate(['--sysroot', sysroot, '--to', cfs]);
  t.equal(r0.commit, second, 'default: deployment 0');
  t.equal(r0.name, `sample/${second}.0`);
  t.equal(r0.source.deployment!.index, 0);
  const r1 = migrate(['--sysroot', sysroot, '--deployment', '1', '--to', cfs]);
  t.equal(r1.commit, first);
  t.ok(r1.objects.reused > 0, 'shared content reused across deployments');
  await checkMigration(t, cfs, r1, repo, first);
  const kernel = [...walk(await readErofsImage(join(cfs, 'images', r0.image.digest)))].find((n) => n.pathString() === '/usr/lib/modules/6.1.0-sample/vmlinuz');
  t.ok(kernel?.digest, 'the kernel is an external object');

  const none = cli(['migrate', '--sysroot', sysroot, '--deployment', '7', '--to', cfs]);
  t.equal(none.status, 1);
  t.match(none.stderr, /has no deployment 7 \(deployments: 0: sample [0-9a-f]{64}\.0, 1: sample/);
  const booted = cli(['migrate', '--sysroot', sysroot, '--booted', '--to', cfs]);
  t.not(booted.status, 0);
  t.match(booted.stderr, /--booted: the running system was not booted by ostree \(\/run\/ostree-booted does not exist\)/);
  const notSysroot = cli(['migrate', '--sysroot', d, '--to', cfs]);
  t.equal(notSysroot.status, 1);
  t.match(notSysroot.stderr, /is not an ostree sysroot/);

  // The booted-deployment logic with a marker and a kernel command line of our own.
  const s = openSysroot(sysroot);
  writeFileSync(join(d, 'booted'), '');
  writeFileSync(join(d, 'cmdline'), `quiet ostree=${s.deployments[1]!.ostreeArg} rw\n`);
  t.equal(bootedDeployment(s, { bootedMarker: join(d, 'booted'), cmdline: join(d, 'cmdline') }).checksum, first);
  writeFileSync(join(d, 'cmdline'), 'quiet ostree=/ostree/boot.9/sample/x/0\n');
  t.throws(() => bootedDeployment(s, { bootedMarker: join(d, 'booted'), cmdline: join(d, 'cmdline') }), /not the booted one/);
  writeFileSync(join(d, 'cmdline'), 'quiet\n');
  t.throws(() => bootedDeployment(s, { bootedMarker: join(d, 'booted'), cmdline: join(d, 'cmdline') }), /no ostree= argument/);
});

function spawnSyncQuiet(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {
    /* best effort */
  }
}

function countObjects(cfs: string): number {
  let n = 0;
  for (const d of readdirSync(join(cfs, 'objects'), { withFileTypes: true })) if (d.isDirectory()) n += readdirSync(join(cfs, 'objects', d.name)).length;
  return n;
}

t.test('a migration killed with SIGKILL leaves no half-written object or dangling ref; a rerun completes it', async (t) => {
  const { repo, commit } = ensureBookwormRepo('bare-user');
  const d = tmp(t);
  const cfs = join(d, 'cfs');
  const child = spawn(process.execPath, [CLI, 'migrate', '--repo', repo, commit, '--to', cfs, '--name', 'os'], { stdio: 'ignore' });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  let killedAt = -1;
  for (let i = 0; i < 4800 && child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const n = existsSync(join(cfs, 'objects')) ? countObjects(cfs) : 0;
    if (n >= 800) {
      child.kill('SIGKILL');
      killedAt = n;
      break;
    }
  }
  const code = await exited;
  t.ok(killedAt >= 800, `killed mid-way after ${killedAt} objects`);
  t.equal(code, null, 'the process died from the signal');

  const repoAfter = await CfsRepo.open(cfs);
  const f = await fsckRepo(repoAfter);
  t.ok(f.ok, `every object present verifies (${f.objects.checked} checked): ${JSON.stringify(f.errors.slice(0, 3))}`);
  t.equal(f.images.checked, 0, 'no image published');
  t.notOk(existsSync(join(cfs, 'images', 'refs', 'os')), 'no ref');
  t.comment(`temporary files left by the killed writer: ${f.tempFiles}`);

  const rep = migrate(['--repo', repo, commit, '--to', cfs, '--name', 'os']);
  t.ok(rep.objects.reused >= killedAt, `rerun reuses the ${killedAt}+ objects already there (${rep.objects.reused})`);
  t.equal(rep.objects.written + rep.objects.reused, rep.objects.unique);
  t.same(readdirSync(join(cfs, '.ostree-oci-tmp')).filter((n) => n.endsWith('.tmp')), [], 'the dead writer’s temporary files are gone');
  // Objects were all hashed on the way in (and the survivors above); check structure and references.
  const after = await fsckRepo(await CfsRepo.open(cfs), { skipObjectDigests: true });
  t.ok(after.ok, JSON.stringify(after.errors.slice(0, 3)));
  t.equal(after.images.externalFiles, rep.files.external);
  t.equal(readlinkSync(join(cfs, 'images/refs/os')), `../${rep.image.digest}`);
});

t.test('a failed or interrupted migration publishes no name and leaves no temporaries, nor --oci output', async (t) => {
  const d = tmp(t);
  /** Names published and temporaries of the target after a run that must have changed nothing. */
  const untouched = async (cfs: string, what: string): Promise<void> => {
    t.notOk(existsSync(join(cfs, 'images', 'refs')) && readdirSync(join(cfs, 'images', 'refs')).length > 0, `${what}: no image ref`);
    t.notOk(existsSync(join(cfs, 'streams', 'refs')) && readdirSync(join(cfs, 'streams', 'refs'), { recursive: true }).length > 0, `${what}: no stream ref`);
    t.same(existsSync(join(cfs, '.ostree-oci-tmp')) ? readdirSync(join(cfs, '.ostree-oci-tmp')) : [], [], `${what}: no temporary file, scratch layout or lock left`);
    const f = await fsckRepo(await CfsRepo.open(cfs), { skipObjectDigests: true });
    t.ok(f.ok, `${what}: cfs fsck clean: ${JSON.stringify(f.errors.slice(0, 3))}`);
  };

  // The OCI step fails after every object and the image were stored: neither name is published.
  const { repo } = sampleRepo(d);
  const r = cli(['migrate', '--repo', repo, 'main', '--to', join(d, 'cfs1'), '--oci', 'docker://127.0.0.1:1/x:t']);
  t.not(r.status, 0, 'an unreachable --oci registry fails the migration');
  t.match(r.stderr, /docker:\/\/127\.0\.0\.1:1\/x:t/);
  await untouched(join(d, 'cfs1'), 'failed --oci');

  // A full target: the error names the object and the repository; the other lanes' files go too.
  const bw = ensureBookwormRepo('bare-user');
  const mnt = join(d, 'small');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', mnt]);
  t.teardown(() => execFileSync('umount', [mnt]));
  const full = cli(['migrate', '--repo', bw.repo, bw.commit, '--to', join(mnt, 'cfs'), '--name', 'os']);
  t.not(full.status, 0);
  t.match(full.stderr, /content object [0-9a-f]{64} \(\/.*\) of .*: cannot write it into .*small\/cfs: ENOSPC/, 'ENOSPC named by object and repository');
  await untouched(join(mnt, 'cfs'), 'disk full');

  // SIGINT while objects are written, and while the OCI image is built (its scratch layout exists).
  const interrupted = async (cfs: string, extra: string[], ready: () => boolean, what: string): Promise<void> => {
    const child = spawn(process.execPath, [CLI, 'migrate', '--repo', bw.repo, bw.commit, '--to', cfs, '--name', 'os', ...extra], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((res) => child.once('close', (code) => res(code)));
    for (let i = 0; i < 2400 && child.exitCode === null && !ready(); i++) await new Promise((res) => setTimeout(res, 25));
    t.ok(ready(), `${what}: reached`);
    child.kill('SIGINT');
    t.equal(await exited, 130, `${what}: exit 130 (${stderr.trim()})`);
    await untouched(cfs, what);
  };
  const cfs2 = join(d, 'cfs2');
  await interrupted(cfs2, [], () => existsSync(join(cfs2, 'objects')) && countObjects(cfs2) >= 200, 'SIGINT among the objects');
  const cfs3 = join(d, 'cfs3');
  const layout = join(d, 'layout');
  const tmpDir = join(cfs3, '.ostree-oci-tmp');
  await interrupted(cfs3, ['--oci', `oci:${layout}:t`], () => existsSync(tmpDir) && readdirSync(tmpDir).some((n) => n.endsWith('.oci.tmp')), 'SIGINT while building the OCI image');
  t.notOk(existsSync(layout), 'the --oci destination was not created');
});

t.test('bad input: missing source objects, a corrupted target object, bad arguments → clear errors', async (t) => {
  const d = tmp(t);
  const { repo } = sampleRepo(d);
  // Missing content object in the source repo (the 4097-byte file).
  const broken = join(d, 'broken-repo');
  execFileSync('cp', ['-a', repo, broken]); // keeps the user.ostreemeta xattrs of the bare-user repo
  const line = execFileSync('ostree', ['ls', '-C', `--repo=${broken}`, 'main', '/usr/lib/4097.bin'], { encoding: 'utf8' });
  const checksum = /\b([0-9a-f]{64}) \/usr\/lib\/4097\.bin/.exec(line)![1]!;
  rmSync(join(broken, 'objects', checksum.slice(0, 2), `${checksum.slice(2)}.file`));
  const miss = cli(['migrate', '--repo', broken, 'main', '--to', join(d, 'cfs-broken')]);
  t.equal(miss.status, 1);
  t.match(miss.stderr, new RegExp(`error: .*${checksum}`), 'names the missing object');
  t.notOk(existsSync(join(d, 'cfs-broken', 'images', 'refs')), 'no image ref');

  // A corrupted object in the target repository.
  const cfs = join(d, 'cfs');
  const rep = migrate(['--repo', repo, 'main', '--to', cfs]);
  const root = await readErofsImage(join(cfs, 'images', rep.image.digest));
  const big = [...walk(root)].find((n) => n.pathString() === '/usr/lib/big.bin')!;
  const objPath = join(cfs, 'objects', big.payload!.toString());
  const bytes = readFileSync(objPath);
  bytes[12345] ^= 0x80;
  writeFileSync(objPath, bytes);
  const again = cli(['migrate', '--repo', repo, 'main', '--to', cfs, '--name', 'again']);
  t.equal(again.status, 1);
  t.match(again.stderr, new RegExp(`error: corrupted object ${objPath}: fs-verity digest is [0-9a-f]{64}, its name says ${big.digest!.toString('hex')}`));
  t.notOk(existsSync(join(cfs, 'images/refs/again')), 'no ref published');
  const fsck = cli(['cfs', 'fsck', cfs]);
  t.equal(fsck.status, 1);
  t.match(fsck.stdout, new RegExp(`ERROR corrupt-object: objects/${big.payload!.toString()}`));

  // Arguments.
  t.equal(cli(['migrate', '--repo', repo, 'no-such-ref', '--to', join(d, 'x')]).status, 2, 'unknown rev');
  const both = cli(['migrate', '--repo', repo, 'main', '--sysroot', d, '--to', join(d, 'x')]);
  t.equal(both.status, 2);
  t.match(both.stderr, /exactly one of --repo R REV or --sysroot DIR/);
  t.equal(cli(['migrate', '--repo', repo, '--to', join(d, 'x')]).status, 2, 'no REV');
  t.equal(cli(['migrate', '--repo', repo, 'main', '--to', join(d, 'x'), '--name', '../up']).status, 2, 'bad name');
  t.equal(cli(['migrate', '--repo', join(d, 'nope'), 'main', '--to', join(d, 'x')]).status, 1, 'no repo');
  const notCfs = cli(['cfs', 'fsck', d]);
  t.equal(notCfs.status, 1);
  t.match(notCfs.stderr, /is not a composefs repository \(no meta\.json\)/);
});
