/*
 * SHA-256 of many 4096-byte messages at once: the level-0 and tree blocks of fs-verity. All
 * messages have the same length, so they are hashed side by side in SIMD lanes (16 with AVX-512,
 * 8 with AVX2), several times faster per core than one-message-at-a-time SHA-256 on CPUs without
 * SHA extensions. Written from FIPS 180-4; no code taken from elsewhere.
 *
 * sha256_4k_level() tells which kernel runs here (0: none, the caller hashes another way).
 * sha256_4k_many(in, n, out) writes SHA-256(in[i*4096 .. i*4096+4096)) to out[i*32 .. i*32+32).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define BLOCK 4096

static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The round function and message schedule, written once over a vector type's operations. */
#define SHA256_COMPRESS(V, ADD, SET1, ROR, SHR, XOR3, CH, MAJ)                                   \
  V w[16];                                                                                       \
  for (int i = 0; i < 16; i++) w[i] = w_in[i];                                                   \
  V a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];      \
  for (int t = 0; t < 64; t++) {                                                                 \
    V wt;                                                                                        \
    if (t < 16) {                                                                                \
      wt = w[t];                                                                                 \
    } else {                                                                                     \
      V w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];                                            \
      V s0 = XOR3(ROR(w15, 7), ROR(w15, 18), SHR(w15, 3));                                       \
      V s1 = XOR3(ROR(w2, 17), ROR(w2, 19), SHR(w2, 10));                                        \
      wt = ADD(ADD(w[t & 15], s0), ADD(w[(t - 7) & 15], s1));                                    \
      w[t & 15] = wt;                                                                            \
    }                                                                                            \
    V t1 = ADD(ADD(h, XOR3(ROR(e, 6), ROR(e, 11), ROR(e, 25))), ADD(CH(e, f, g), ADD(SET1(K[t]), wt))); \
    V t2 = ADD(XOR3(ROR(a, 2), ROR(a, 13), ROR(a, 22)), MAJ(a, b, c));                           \
    h = g; g = f; f = e; e = ADD(d, t1); d = c; c = b; b = a; a = ADD(t1, t2);                   \
  }                                                                                              \
  st[0] = ADD(st[0], a); st[1] = ADD(st[1], b); st[2] = ADD(st[2], c); st[3] = ADD(st[3], d);    \
  st[4] = ADD(st[4], e); st[5] = ADD(st[5], f); st[6] = ADD(st[6], g); st[7] = ADD(st[7], h);

/* Hashes LANES messages: lane l reads in + idx[l]*4096; its digest goes to out[l]. */
#define SHA256_LANES(V, LANES, ADD, SET1, LOADIDX, GATHER, BSWAP, STORE, COMPRESS)               \
  V vidx = LOADIDX(idx);                                                                         \
  V st[8];                                                                                       \
  for (int i = 0; i < 8; i++) st[i] = SET1(H0[i]);                                               \
  V w[16];                                                                                       \
  for (int blk = 0; blk < BLOCK / 64; blk++) {                                                   \
    const uint8_t *base = in + blk * 64;                                                         \
    for (int t = 0; t < 16; t++) w[t] = BSWAP(GATHER(vidx, base + t * 4));                       \
    COMPRESS(st, w);                                                                             \
  }                                                                                              \
  /* The padding block of a 4096-byte message: 0x80, zeros, the length in bits. */              \
  for (int t = 0; t < 16; t++) w[t] = SET1(0);                                                   \
  w[0] = SET1(0x80000000u);                                                                      \
  w[15] = SET1(BLOCK * 8u);                                                                      \
  COMPRESS(st, w);                                                                               \
  uint32_t lanes[8][LANES];                                                                      \
  for (int i = 0; i < 8; i++) STORE(lanes[i], st[i]);                                            \
  for (int l = 0; l < LANES; l++)                                                                \
    for (int i = 0; i < 8; i++) {                                                                \
      uint32_t v = lanes[i][l];                                                                  \
      out[l][i * 4] = (uint8_t)(v >> 24); out[l][i * 4 + 1] = (uint8_t)(v >> 16);                \
      out[l][i * 4 + 2] = (uint8_t)(v >> 8); out[l][i * 4 + 3] = (uint8_t)v;                    \
    }

/* ---- AVX-512: 16 lanes, native rotates and three-input logic ---- */
#define Z_ADD(a, b) _mm512_add_epi32(a, b)
#define Z_SET1(x) _mm512_set1_epi32((int)(x))
#define Z_ROR(x, n) _mm512_ror_epi32(x, n)
#define Z_SHR(x, n) _mm512_srli_epi32(x, n)
#define Z_XOR3(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0x96)
#define Z_CH(e, f, g) _mm512_ternarylogic_epi32(e, f, g, 0xCA)
#define Z_MAJ(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0xE8)
#define Z_LOADIDX(p) _mm512_mullo_epi32(_mm512_loadu_si512((const void *)(p)), Z_SET1(BLOCK / 4))
#define Z_GATHER(vi, p) _mm512_i32gather_epi32(vi, (const void *)(p), 4)
#define Z_BSWAP(x) _mm512_shuffle_epi8(x, _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203))
#define Z_STORE(p, x) _mm512_storeu_si512((void *)(p), x)

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
compress_x16(__m512i st[8], const __m512i w_in[16]) {
  SHA256_COMPRESS(__m512i, Z_ADD, Z_SET1, Z_ROR, Z_SHR, Z_XOR3, Z_CH, Z_MAJ)
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
hash_x16(const uint8_t *in, const int32_t idx[16], uint8_t *out[16]) {
  SHA256_LANES(__m512i, 16, Z_ADD, Z_SET1, Z_LOADIDX, Z_GATHER, Z_BSWAP, Z_STORE, compress_x16)
}

/* ---- AVX2: 8 lanes, rotates from two shifts ---- */
#define Y_ADD(a, b) _mm256_add_epi32(a, b)
#define Y_SET1(x) _mm256_set1_epi32((int)(x))
#define Y_ROR(x, n) _mm256_or_si256(_mm256_srli_epi32(x, n), _mm256_slli_epi32(x, 32 - (n)))
#define Y_SHR(x, n) _mm256_srli_epi32(x, n)
#define Y_XOR3(a, b, c) _mm256_xor_si256(_mm256_xor_si256(a, b), c)
#define Y_CH(e, f, g) _mm256_xor_si256(_mm256_and_si256(e, f), _mm256_andnot_si256(e, g))
#define Y_MAJ(a, b, c) _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(c, _mm256_or_si256(a, b)))
#define Y_LOADIDX(p) _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(p)), Y_SET1(BLOCK / 4))
#define Y_GATHER(vi, p) _mm256_i32gather_epi32((const int *)(p), vi, 4)
#define Y_BSWAP(x)                                                                               \
  _mm256_shuffle_epi8(x, _mm256_set_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203,        \
                                          0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203))
#define Y_STORE(p, x) _mm256_storeu_si256((__m256i *)(p), x)

__attribute__((target("avx2"))) static void compress_x8(__m256i st[8], const __m256i w_in[16]) {
  SHA256_COMPRESS(__m256i, Y_ADD, Y_SET1, Y_ROR, Y_SHR, Y_XOR3, Y_CH, Y_MAJ)
}

__attribute__((target("avx2"))) static void hash_x8(const uint8_t *in, const int32_t idx[8], uint8_t *out[8]) {
  SHA256_LANES(__m256i, 8, Y_ADD, Y_SET1, Y_LOADIDX, Y_GATHER, Y_BSWAP, Y_STORE, compress_x8)
}

/*
 * 2: AVX-512, 1: AVX2, 0: neither. OSTREE_OCI_SHA256_LANES=8 forces AVX2 (to test it). Worker
 * threads may ask at the same time: each computes the same answer, stored atomically.
 */
static int level = -1;

int sha256_4k_level(void) {
  int known = __atomic_load_n(&level, __ATOMIC_ACQUIRE);
  if (known >= 0) return known;
  {
    __builtin_cpu_init();
    int l = 0;
    if (__builtin_cpu_supports("avx2")) l = 1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      l = 2;
    const char *force = getenv("OSTREE_OCI_SHA256_LANES");
    if (force && strcmp(force, "8") == 0 && l >= 1) l = 1;
    __atomic_store_n(&level, l, __ATOMIC_RELEASE);
    return l;
  }
}

int sha256_4k_many(const uint8_t *in, size_t n, uint8_t *out) {
  int lv = sha256_4k_level();
  if (lv == 0) return -1;
  const size_t lanes = lv == 2 ? 16 : 8;
  uint8_t scratch[32];
  for (size_t i = 0; i < n; i += lanes) {
    int32_t idx[16];
    uint8_t *o[16];
    for (size_t l = 0; l < lanes; l++) {
      /* Lanes past the end hash message 0 again into a scratch digest. */
      idx[l] = i + l < n ? (int32_t)l : 0;
      o[l] = i + l < n ? out + (i + l) * 32 : scratch;
    }
    if (lv == 2) hash_x16(in + i * BLOCK, idx, o);
    else hash_x8(in + i * BLOCK, idx, o);
  }
  return 0;
}


/*
 * SHA-256 of n messages of any lengths: message i is base[off[i] .. off[i] + len[i]), its digest
 * goes to out[32 i ..]. Each lane hashes one message block by block; a lane whose message ends
 * takes the next one, so lanes stay busy whatever the mix of sizes. A message's last one or two
 * blocks (the rest of its bytes, 0x80, zeros, the bit length) are built in the lane's tail buffer.
 */
struct lane {
  const uint8_t *next;   /* the next full block of the message, or NULL once in the tail */
  size_t full;           /* full message blocks left */
  uint8_t tail[128];
  int tail_blocks;       /* tail blocks left */
  int tail_at;
  long msg;              /* the message in this lane, -1 when idle */
};

static void lane_start(struct lane *ln, const uint8_t *base, const uint64_t *off, const uint64_t *len, long i) {
  const uint8_t *m = base + off[i];
  uint64_t L = len[i];
  ln->msg = i;
  ln->full = L / 64;
  ln->next = m;
  size_t r = L % 64;
  memset(ln->tail, 0, sizeof ln->tail);
  memcpy(ln->tail, m + ln->full * 64, r);
  ln->tail[r] = 0x80;
  ln->tail_blocks = r <= 55 ? 1 : 2;
  uint64_t bits = L * 8;
  for (int k = 0; k < 8; k++) ln->tail[ln->tail_blocks * 64 - 1 - k] = (uint8_t)(bits >> (8 * k));
  ln->tail_at = 0;
}

/* The lane's current block, and advance; NULL when the message is done. */
static const uint8_t *lane_block(struct lane *ln) {
  if (ln->msg < 0) return NULL;
  if (ln->full > 0) {
    const uint8_t *b = ln->next;
    ln->next += 64;
    ln->full--;
    return b;
  }
  if (ln->tail_at < ln->tail_blocks) return ln->tail + 64 * ln->tail_at++;
  return NULL;
}

static inline uint32_t load_be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#define SHA256_MULTI(V, LANES, SET1, LOADU, STORE, BLEND, COMPRESS)                              \
  struct lane ln[LANES];                                                                         \
  long next_msg = 0;                                                                             \
  V st[8];                                                                                       \
  for (int i = 0; i < 8; i++) st[i] = SET1(H0[i]);                                               \
  for (int l = 0; l < LANES; l++) {                                                              \
    ln[l].msg = -1;                                                                              \
    if (next_msg < (long)n) lane_start(&ln[l], base, off, len, next_msg++);                      \
  }                                                                                              \
  static const uint8_t zero[64];                                                                 \
  for (;;) {                                                                                     \
    uint32_t w32[16][LANES];                                                                     \
    int active = 0;                                                                              \
    for (int l = 0; l < LANES; l++) {                                                            \
      const uint8_t *b = lane_block(&ln[l]);                                                     \
      while (b == NULL && ln[l].msg >= 0) {                                                      \
        /* The message is done: its digest out, the next message in. */                         \
        uint32_t s[8][LANES];                                                                    \
        for (int i = 0; i < 8; i++) STORE(s[i], st[i]);                                          \
        uint8_t *o = out + 32 * ln[l].msg;                                                       \
        for (int i = 0; i < 8; i++) {                                                            \
          o[4 * i] = (uint8_t)(s[i][l] >> 24); o[4 * i + 1] = (uint8_t)(s[i][l] >> 16);          \
          o[4 * i + 2] = (uint8_t)(s[i][l] >> 8); o[4 * i + 3] = (uint8_t)s[i][l];               \
        }                                                                                        \
        ln[l].msg = -1;                                                                          \
        for (int i = 0; i < 8; i++) st[i] = BLEND(l, st[i], SET1(H0[i]));                        \
        if (next_msg < (long)n) {                                                                \
          lane_start(&ln[l], base, off, len, next_msg++);                                        \
          b = lane_block(&ln[l]);                                                                \
        }                                                                                        \
      }                                                                                          \
      if (b) active++;                                                                           \
      else b = zero;                                                                             \
      for (int t = 0; t < 16; t++) w32[t][l] = load_be32(b + 4 * t);                             \
    }                                                                                            \
    if (!active) break;                                                                          \
    V w[16];                                                                                     \
    for (int t = 0; t < 16; t++) w[t] = LOADU(w32[t]);                                           \
    COMPRESS(st, w);                                                                             \
  }

#define Z_LOADU(p) _mm512_loadu_si512((const void *)(p))
#define Z_BLEND(l, a, b) _mm512_mask_blend_epi32((__mmask16)(1u << (l)), a, b)
#define Y_LOADU(p) _mm256_loadu_si256((const __m256i *)(p))
#define Y_BLEND(l, a, b)                                                                         \
  _mm256_blendv_epi8(a, b, _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(l)))

__attribute__((target("avx512f,avx512bw,avx512vl"))) static void
multi_x16(const uint8_t *base, const uint64_t *off, const uint64_t *len, size_t n, uint8_t *out) {
  SHA256_MULTI(__m512i, 16, Z_SET1, Z_LOADU, Z_STORE, Z_BLEND, compress_x16)
}

__attribute__((target("avx2"))) static void
multi_x8(const uint8_t *base, const uint64_t *off, const uint64_t *len, size_t n, uint8_t *out) {
  SHA256_MULTI(__m256i, 8, Y_SET1, Y_LOADU, Y_STORE, Y_BLEND, compress_x8)
}

int sha256_multi(const uint8_t *base, const uint64_t *off, const uint64_t *len, size_t n, uint8_t *out) {
  int lv = sha256_4k_level();
  if (lv == 0) return -1;
  if (lv == 2) multi_x16(base, off, len, n, out);
  else multi_x8(base, off, len, n, out);
  return 0;
}

#else
int sha256_4k_level(void) { return 0; }
int sha256_4k_many(const uint8_t *in, size_t n, uint8_t *out) { (void)in; (void)n; (void)out; return -1; }
int sha256_multi(const uint8_t *base, const uint64_t *off, const uint64_t *len, size_t n, uint8_t *out) {
  (void)base; (void)off; (void)len; (void)n; (void)out;
  return -1;
}
#endif
