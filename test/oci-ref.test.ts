import t from 'tap';
import { canonicalJson, formatImageReference, parseImageReference, OciFormatError } from '../src/oci/index.js';

t.test('parse and format references', async (t) => {
  const cases: [string, object][] = [
    ['oci:/var/tmp/foo.oci:latest', { transport: 'oci', path: '/var/tmp/foo.oci', tag: 'latest' }],
    ['oci:relative/dir', { transport: 'oci', path: 'relative/dir' }],
    ['oci:/x:a/b-c.d_e', { transport: 'oci', path: '/x', tag: 'a/b-c.d_e' }],
    ['oci:/x:v1:extra', { transport: 'oci', path: '/x', tag: 'v1:extra' }],
    ['oci-archive:/tmp/a.tar', { transport: 'oci-archive', path: '/tmp/a.tar' }],
    ['oci-archive:/tmp/a.tar:Tag_1.0-x', { transport: 'oci-archive', path: '/tmp/a.tar', tag: 'Tag_1.0-x' }],
    ['docker://quay.io/exampleos/blah', { transport: 'docker', name: 'quay.io/exampleos/blah', domain: 'quay.io', repository: 'exampleos/blah' }],
    ['docker://127.0.0.1:5000/test/img:v1', { transport: 'docker', name: '127.0.0.1:5000/test/img', domain: '127.0.0.1:5000', repository: 'test/img', tag: 'v1' }],
    ['docker://localhost/img', { transport: 'docker', name: 'localhost/img', domain: 'localhost', repository: 'img' }],
    ['docker://busybox', { transport: 'docker', name: 'busybox', domain: 'docker.io', repository: 'library/busybox' }],
    ['docker://fedora/x:1', { transport: 'docker', name: 'fedora/x', domain: 'docker.io', repository: 'fedora/x', tag: '1' }],
    [`docker://reg.example.com:443/a/b/c@sha256:${'0f'.repeat(32)}`, { transport: 'docker', domain: 'reg.example.com:443', repository: 'a/b/c', digest: `sha256:${'0f'.repeat(32)}` }],
    ['docker://reg/a__b.c-d---e', { transport: 'docker', domain: 'docker.io', repository: 'reg/a__b.c-d---e' }],
  ];
  for (const [s, want] of cases) {
    const r = parseImageReference(s);
    t.match(r, want, s);
    t.equal(formatImageReference(r), s, `${s} formats back`);
  }
  t.notOk('tag' in parseImageReference('docker://host.x/img@sha256:' + 'a'.repeat(64)), 'digest ref has no tag');
});

t.test('canonical JSON', async (t) => {
  t.equal(canonicalJson({ b: 1, a: [3, { d: null, c: true }], '': 'e' }), '{"":"e","a":[3,{"c":true,"d":null}],"b":1}');
  t.equal(canonicalJson({ z: undefined, y: 1.5, x: -0, w: 1e21, v: 10 }), '{"v":10,"w":1e+21,"x":0,"y":1.5}');
  t.equal(canonicalJson('é\n\u0001"\\/<>&'), '"é\\n\\u0001\\"\\\\/<>&"', 'ECMAScript escaping, raw non-ASCII, no HTML escaping');
  // keys sorted by UTF-16 code units: U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB01
  // (by code points it would sort after)
  t.equal(canonicalJson({ '\uFB01': 1, '\u{1F600}': 2, a: 3, B: 4 }), `{"B":4,"a":3,"\u{1F600}":2,"\uFB01":1}`);
  t.equal(canonicalJson([]), '[]');
  t.equal(canonicalJson({}), '{}');
  t.throws(() => canonicalJson({ a: NaN }), OciFormatError);
  t.throws(() => canonicalJson({ a: { b: Infinity } }), /\$\.a\.b is not a finite number/);
  const v = { schemaVersion: 2, layers: [{ size: 3, digest: 'sha256:x', mediaType: 'm' }], annotations: { 'k.b': 'v', 'k.a': 'w' } };
  t.same(JSON.parse(canonicalJson(v)), v, 'round-trips');
  t.notMatch(canonicalJson(v), /\s/, 'no whitespace');
});
