/**
 * Ref escaping as ostree-ext's refescape.rs (shared/specs/ostree-container-format.md §5.1): the
 * spec's examples byte for byte, round trips, the `/` rule, and that escaped refs are accepted by
 * the real `ostree refs --create`.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import {
  escapeRef,
  imageRefFor,
  layerRefFor,
  prefixEscapeRef,
  unescapeRef,
  unprefixUnescapeRef,
} from '../src/store/refescape.js';
import { ostreeCommit, ostreeInit } from '../scripts/lib/sample-tree.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmp } from './helpers/tmp.js';

t.test('the spec examples', async (t) => {
  t.equal(
    layerRefFor('sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae'),
    'ostree/container/blob/sha256_3A_2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae',
  );
  t.equal(imageRefFor('docker://quay.io/exampleos/blah'), 'ostree/container/image/docker_3A__2F__2F_quay_2E_io/exampleos/blah');
  t.equal(escapeRef('oci:/var/tmp/foo.oci:latest'), 'oci_3A__2F_var/tmp/foo_2E_oci_3A_latest');
  t.equal(escapeRef('containers-storage:localhost/my_img:tag'), 'containers-storage_3A_localhost/my__img_3A_tag');
  // refescape.rs doc and unit tests
  t.equal(prefixEscapeRef('container', 'registry:quay.io/coreos/fedora:latest'), 'container/registry_3A_quay_2E_io/coreos/fedora_3A_latest');
  t.equal(escapeRef('localhost:5000/foo:latest'), 'localhost_3A_5000/foo_3A_latest');
  t.equal(escapeRef('é'), '_E9_');
  t.equal(escapeRef('\u{1F600}'), '_1F600_');
  t.equal(escapeRef('a\tb'), 'a_09_b', 'at least two hex digits');
});

t.test('unchanged strings and the "/" rule', async (t) => {
  for (const s of ['foo', 'foo/bar/baz-blah/foo']) t.equal(escapeRef(s), s);
  t.equal(escapeRef('/'), '_2F_', 'leading and only');
  t.equal(escapeRef('blah/'), 'blah_2F_', 'trailing');
  t.equal(escapeRef('/foo/'), '_2F_foo_2F_');
  t.equal(escapeRef('a//b'), 'a/_2F_b', 'second slash has no alphanumeric before it');
  t.equal(escapeRef('a-/b'), 'a-_2F_b', '"-" is not alphanumeric');
  t.equal(escapeRef('a_b'), 'a__b');
  t.equal(escapeRef('-'), '-');
});

t.test('round trips (refescape.rs ROUNDTRIP + CORNERCASES + more)', async (t) => {
  const cases = [
    'foo',
    'foo/bar/baz-blah/foo',
    'localhost:5000/foo:latest',
    'fedora/x86_64/coreos',
    '/foo/bar/foo.oci-archive',
    '/foo/bar/foo.docker-archive',
    'docker://quay.io/exampleos/blah:latest',
    'oci-archive:/path/to/foo.ociarchive',
    'docker-archive:/path/to/foo.dockerarchive',
    '/',
    'blah/',
    '/foo/',
    '__',
    '_3A_',
    'ünïcödé 名前 \u{1F600}',
    'docker://127.0.0.1:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  ];
  for (const s of cases) {
    const r = prefixEscapeRef('testprefix/blah', s);
    t.equal(unprefixUnescapeRef('testprefix/blah', r), s, JSON.stringify(s));
    t.match(r.slice('testprefix/blah/'.length), /^[A-Za-z0-9_/-]+$/, 'only ref-safe characters');
  }
});

t.test('errors', async (t) => {
  t.throws(() => escapeRef(''), /empty/);
  t.throws(() => escapeRef('a\0b'), /NUL/);
  t.throws(() => unescapeRef('a.b'), /invalid character/);
  t.throws(() => unescapeRef('a_3A'), /bad escape/, 'unterminated');
  t.throws(() => unescapeRef('a_'), /bad escape/, 'lone trailing underscore');
  t.throws(() => unescapeRef('_D800_'), /not a Unicode scalar value/);
  t.throws(() => unprefixUnescapeRef('ostree/container/image', 'ostree/container/blob/x'), /does not start with/);
});

t.test('escaped refs are valid ostree refs (ostree refs --create)', async (t) => {
  const d = tmp(t);
  const repo = join(d, 'repo');
  ostreeInit(repo, 'bare-user');
  mkdirSync(join(d, 'tree'));
  writeFileSync(join(d, 'tree', 'f'), 'x');
  const c = ostreeCommit(repo, join(d, 'tree'));
  const names = [
    imageRefFor('docker://quay.io/exampleos/blah:latest'),
    imageRefFor('oci:/var/tmp/foo.oci:latest'),
    layerRefFor('sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae'),
    prefixEscapeRef('ostree/container/image', '/weird//path_with ünïcödé/'),
  ];
  for (const n of names) execFileSync('ostree', ['refs', `--repo=${repo}`, `--create=${n}`, c]);
  const listed = execFileSync('ostree', ['refs', `--repo=${repo}`], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
  t.same(listed, [...names, 'main'].sort());
});
