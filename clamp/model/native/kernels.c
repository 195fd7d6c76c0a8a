/* Attention kernels for short contexts, in the heads-last layout of clamp/shortattn.py.
 *
 * Every function here computes exactly what its torch counterpart in
 * clamp/shortattn.py computes, operation for operation and in the same order
 * (sums run over the contracted axis from index 0 up; no fused multiply-add:
 * build with -ffp-contract=off), so the two paths give bit-identical results.
 * The innermost loop always runs over the contiguous N = R*B*H axis, which
 * the compiler vectorises.
 *
 * Layouts (float32, contiguous unless strides are passed):
 *   q, k     [dh, T, N]
 *   scores   [T, T, N]   (query, key, n)
 *   pattern  [T, T, N]
 *   v, z     [T, dh, N]
 *   heads    [R, B, T, H, dh] with arbitrary strides (the hook-point layout)
 * The layout changes have an AVX path for dh = 8 and H a multiple of 8 (the flagship model).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef long long i64;

/* Rotation coefficients: with rot = (cr, sr) given ([T, dh] each), position t and partner
 * p(d) = (d + dh/2) % dh, a rotated value is  x[d] * cr[t, d] + x[p(d)] * sr[t, d].
 * clamp/shortattn.py builds cr = (cos, cos), sr = (-sin, sin) (sin negated for the inverse
 * rotation), which is exactly its torch RoPE: x1*cos - x2*sin and x1*sin + x2*cos.
 * cr == NULL means no rotation (a plain copy). */

#if defined(__AVX__)
#include <immintrin.h>
#define HAVE_AVX8 1
/* Transpose the 8 x 8 block held in r[0..7] (row i = r[i]) in place. */
static inline void transpose8(__m256 *r) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
/* x[d] * c[d] + x[(d + 4) % 8] * s[d] for the 8 lanes of v (separate multiply and add). */
static inline __m256 rotate8(__m256 v, __m256 c, __m256 s) {
    return _mm256_add_ps(_mm256_mul_ps(v, c), _mm256_mul_ps(_mm256_permute2f128_ps(v, v, 0x01), s));
}
#else
#define HAVE_AVX8 0
#endif

/* out[d, t, n] (strides od, ot; n contiguous) = x[r, b, t, h, d] for n = (r*B + b)*H + h,
 * x read through its strides st[5], optionally rotated. */
void to_heads(const float *restrict x, i64 s0, i64 s1, i64 s2, i64 s3, i64 s4, i64 R, i64 B, i64 T, i64 H,
              i64 dh, float *restrict out, i64 od, i64 ot, const float *restrict cr, const float *restrict sr) {
    const i64 st[5] = {s0, s1, s2, s3, s4};
#if HAVE_AVX8
    if (dh == 8 && H % 8 == 0 && st[4] == 1) {
        for (i64 t = 0; t < T; t++) {
            const __m256 c = cr ? _mm256_loadu_ps(cr + t * 8) : _mm256_setzero_ps();
            const __m256 s = cr ? _mm256_loadu_ps(sr + t * 8) : _mm256_setzero_ps();
            for (i64 r = 0; r < R; r++)
                for (i64 b = 0; b < B; b++)
                    for (i64 h0 = 0; h0 < H; h0 += 8) {
                        const float *xt = x + r * st[0] + b * st[1] + t * st[2] + h0 * st[3];
                        __m256 y[8];
                        for (int h = 0; h < 8; h++) {
                            const __m256 v = _mm256_loadu_ps(xt + h * st[3]);
                            y[h] = cr ? rotate8(v, c, s) : v;
                        }
                        transpose8(y);
                        float *o = out + t * ot + (r * B + b) * H + h0;
                        for (int d = 0; d < 8; d++) _mm256_storeu_ps(o + d * od, y[d]);
                    }
        }
        return;
    }
#endif
    const i64 half = dh / 2;
    for (i64 t = 0; t < T; t++)
        for (i64 r = 0; r < R; r++)
            for (i64 b = 0; b < B; b++) {
                const float *xt = x + r * st[0] + b * st[1] + t * st[2];
                float *o = out + t * ot + (r * B + b) * H;
                for (i64 d = 0; d < dh; d++) {
                    const i64 pd = (d + half) % dh;
                    float *odd = o + d * od;
                    if (cr) {
                        const float c = cr[t * dh + d], s = sr[t * dh + d];
                        for (i64 h = 0; h < H; h++)
                            odd[h] = xt[h * st[3] + d * st[4]] * c + xt[h * st[3] + pd * st[4]] * s;
                    } else {
                        for (i64 h = 0; h < H; h++) odd[h] = xt[h * st[3] + d * st[4]];
                    }
                }
            }
}

/* The reverse of to_heads: out[r, b, t, h, d] (strides o0..o4) from x[d, t, n] (strides xd, xt_),
 * with the same optional rotation. */
void from_heads(const float *restrict x, i64 xd, i64 xt_, i64 R, i64 B, i64 T, i64 H, i64 dh,
                float *restrict out, i64 o0, i64 o1, i64 o2, i64 o3, i64 o4,
                const float *restrict cr, const float *restrict sr) {
#if HAVE_AVX8
    if (dh == 8 && H % 8 == 0 && o4 == 1) {
        for (i64 t = 0; t < T; t++) {
            const __m256 c = cr ? _mm256_loadu_ps(cr + t * 8) : _mm256_setzero_ps();
            const __m256 s = cr ? _mm256_loadu_ps(sr + t * 8) : _mm256_setzero_ps();
            for (i64 r = 0; r < R; r++)
                for (i64 b = 0; b < B; b++)
                    for (i64 h0 = 0; h0 < H; h0 += 8) {
                        const float *xs = x + t * xt_ + (r * B + b) * H + h0;
                        __m256 y[8];
                        for (int d = 0; d < 8; d++) y[d] = _mm256_loadu_ps(xs + d * xd);
                        transpose8(y);
                        float *o = out + r * o0 + b * o1 + t * o2 + h0 * o3;
                        for (int h = 0; h < 8; h++) _mm256_storeu_ps(o + h * o3, cr ? rotate8(y[h], c, s) : y[h]);
                    }
        }
        return;
    }
#endif
    const i64 half = dh / 2;
    for (i64 r = 0; r < R; r++)
        for (i64 b = 0; b < B; b++)
            for (i64 t = 0; t < T; t++) {
                const float *xs = x + t * xt_ + (r * B + b) * H;
                float *o = out + r * o0 + b * o1 + t * o2;
                for (i64 h = 0; h < H; h++) {
                    float *oh = o + h * o3;
                    for (i64 d = 0; d < dh; d++) {
                        const i64 pd = (d + half) % dh;
                        oh[d * o4] = cr ? xs[d * xd + h] * cr[t * dh + d] + xs[pd * xd + h] * sr[t * dh + d]
                                        : xs[d * xd + h];
                    }
                }
            }
}

/* out[a, c, n] = sum_{b=0..nb-1} x[b, a, n] * y[b, c, n], summed from b = 0 up,
 * for x with strides (xb, xa) and y with strides (yb, yc), n contiguous in both;
 * then out = out * scale + mask[a, c] when mask is given (mask [na, nc]). */
void contract(const float *restrict x, i64 xb, i64 xa, const float *restrict y, i64 yb, i64 yc,
              i64 nb, i64 na, i64 nc, i64 N, float *restrict out, float scale, const float *restrict mask) {
    for (i64 a = 0; a < na; a++)
        for (i64 c = 0; c < nc; c++) {
            float *o = out + (a * nc + c) * N;
            const float *x0 = x + a * xa, *y0 = y + c * yc;
            for (i64 n = 0; n < N; n++) o[n] = x0[n] * y0[n];
            for (i64 b = 1; b < nb; b++) {
                const float *xb_ = x0 + b * xb, *yb_ = y0 + b * yb;
                for (i64 n = 0; n < N; n++) o[n] = o[n] + xb_[n] * yb_[n];
            }
            if (mask != NULL) {
                const float m = mask[a * nc + c];
                for (i64 n = 0; n < N; n++) o[n] = o[n] * scale + m;
            } else if (scale != 1.0f) {
                for (i64 n = 0; n < N; n++) o[n] = o[n] * scale;
            }
        }
}

/* ------------------------------------------------------------------------------------------
 * LayerNorm over the last axis with a per-run gain and bias (clamp.model.transformer.RunLayerNorm).
 * x, y: [R, M, D] contiguous; w, b: [R, D]; mean, rstd: [R, M].  Unlike the attention
 * kernels these are not bit-identical to torch.nn.functional.layer_norm (whose reduction
 * order is its own); they agree to float rounding (tested).  Row sums use 16 partial sums
 * so that the compiler can vectorise them; the order is fixed, so results are reproducible.
 */
static inline float row_sum(const float *restrict v, i64 D) {
    float acc[16] = {0};
    i64 d = 0;
    for (; d + 16 <= D; d += 16)
        for (int j = 0; j < 16; j++) acc[j] = acc[j] + v[d + j];
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s = s + acc[j];
    for (; d < D; d++) s = s + v[d];
    return s;
}

static inline float row_dot(const float *restrict u, const float *restrict v, i64 D) {
    float acc[16] = {0};
    i64 d = 0;
    for (; d + 16 <= D; d += 16)
        for (int j = 0; j < 16; j++) acc[j] = acc[j] + u[d + j] * v[d + j];
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s = s + acc[j];
    for (; d < D; d++) s = s + u[d] * v[d];
    return s;
}

void ln_fwd(const float *restrict x, const float *restrict w, const float *restrict b, i64 R, i64 M, i64 D,
            float eps, float *restrict y, float *restrict mean, float *restrict rstd) {
    float xc[1024];
    for (i64 r = 0; r < R; r++) {
        const float *wr = w + r * D, *br = b + r * D;
        for (i64 m = 0; m < M; m++) {
            const float *row = x + (r * M + m) * D;
            float *out = y + (r * M + m) * D;
            const float mu = row_sum(row, D) / (float)D;
            float var = 0.0f;
            if (D <= 1024) {
                for (i64 d = 0; d < D; d++) xc[d] = row[d] - mu;
                var = row_dot(xc, xc, D) / (float)D;
            } else {
                for (i64 d = 0; d < D; d++) var = var + (row[d] - mu) * (row[d] - mu);
                var = var / (float)D;
            }
            const float rs = 1.0f / sqrtf(var + eps);
            for (i64 d = 0; d < D; d++) out[d] = (row[d] - mu) * rs * wr[d] + br[d];
            mean[r * M + m] = mu;
            rstd[r * M + m] = rs;
        }
    }
}

/* Gradients of ln_fwd: gx [R, M, D]; gw, gb [R, D] (overwritten). */
void ln_bwd(const float *restrict g, const float *restrict x, const float *restrict mean, const float *restrict rstd,
            const float *restrict w, i64 R, i64 M, i64 D, float *restrict gx, float *restrict gw, float *restrict gb) {
    float xh[1024], gh[1024];
    for (i64 r = 0; r < R; r++) {
        const float *wr = w + r * D;
        float *gwr = gw + r * D, *gbr = gb + r * D;
        for (i64 d = 0; d < D; d++) gwr[d] = gbr[d] = 0.0f;
        for (i64 m = 0; m < M; m++) {
            const i64 row = (r * M + m) * D;
            const float mu = mean[r * M + m], rs = rstd[r * M + m];
            const float *gr = g + row, *xr = x + row;
            float *out = gx + row;
            if (D <= 1024) {
                for (i64 d = 0; d < D; d++) {
                    xh[d] = (xr[d] - mu) * rs;
                    gh[d] = gr[d] * wr[d];
                    gwr[d] = gwr[d] + gr[d] * xh[d];
                    gbr[d] = gbr[d] + gr[d];
                }
                const float a = row_sum(gh, D) / (float)D, c = row_dot(gh, xh, D) / (float)D;
                for (i64 d = 0; d < D; d++) out[d] = (gh[d] - a - xh[d] * c) * rs;
            } else {
                float a = 0.0f, c = 0.0f;
                for (i64 d = 0; d < D; d++) {
                    const float xd = (xr[d] - mu) * rs, gd = gr[d] * wr[d];
                    gwr[d] = gwr[d] + gr[d] * xd;
                    gbr[d] = gbr[d] + gr[d];
                    a = a + gd;
                    c = c + gd * xd;
                }
                a = a / (float)D;
                c = c / (float)D;
                for (i64 d = 0; d < D; d++)
                    out[d] = (gr[d] * wr[d] - a - (xr[d] - mu) * rs * c) * rs;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------
 * Softmax over the key axis of scores [Tq, Tk, n] (n contiguous, row stride ld), with a
 * branch-free exp the compiler vectorises.  The step-by-step path (shortattn.softmax) and the
 * fused attention kernels below both use exactly these functions, so they agree bit for bit;
 * against torch.softmax they agree to float rounding.
 */

/* exp(x) for x <= 0 (softmax arguments, x - max), to about 1 ulp; exp(-inf) = 0 and below the
 * smallest normal result (x < -87.33) the result is 0.  Cephes' expf polynomial.
 * NaN in, NaN out (so a row of scores holding a NaN, or masked everywhere, comes out NaN as
 * in torch.softmax).  There is no float -> int conversion (undefined behaviour for a NaN):
 * the exponent is read from the bits of a float, in unsigned arithmetic. */
static inline float exp_neg(float x) {
    const float lo = -87.3365447505f;
    const float xx = x < lo ? lo : x;
    const float fx = floorf(xx * 1.44269504088896341f + 0.5f);
    const float r = (xx - fx * 0.693359375f) - fx * -2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    /* 2^fx from its exponent bits; fx's integer value is read from the bits of fx + 1.5 * 2^23
     * (exact for |fx| < 2^22; for x in [lo, 0], fx is in [-126, 0]).  For a NaN the bits are
     * meaningless but defined, and y is NaN, so the result is NaN. */
    union { unsigned int u; float f; } two_n, shifted, magic;
    shifted.f = fx + 12582912.0f;
    magic.f = 12582912.0f;
    two_n.u = (shifted.u - magic.u + 127u) << 23;
    return x < lo ? 0.0f : y * two_n.f;
}

/* p[i, j, :] = softmax over j of s[i, j, :]; element (i, j, n) at [(i * Tk + j) * ld + n]. */
static void softmax_block(const float *restrict s, float *restrict p, i64 T, i64 n, i64 ld) {
    float m[256], sum[256];
    for (i64 n0 = 0; n0 < n; n0 += 256) {
        const int nn = n - n0 < 256 ? (int)(n - n0) : 256;
        for (i64 i = 0; i < T; i++) {
            const float *si = s + i * T * ld + n0;
            float *pi = p + i * T * ld + n0;
            for (int l = 0; l < nn; l++) m[l] = si[l];
            for (i64 j = 1; j < T; j++) {
                const float *sij = si + j * ld;
                for (int l = 0; l < nn; l++) m[l] = sij[l] > m[l] ? sij[l] : m[l];
            }
            for (int l = 0; l < nn; l++) sum[l] = 0.0f;
            for (i64 j = 0; j < T; j++) {
                const float *sij = si + j * ld;
                float *pij = pi + j * ld;
                for (int l = 0; l < nn; l++) {
                    const float e = exp_neg(sij[l] - m[l]);
                    pij[l] = e;
                    sum[l] = sum[l] + e;
                }
            }
            for (i64 j = 0; j < T; j++) {
                float *pij = pi + j * ld;
                for (int l = 0; l < nn; l++) pij[l] = pij[l] / sum[l];
            }
        }
    }
}

/* gs = p * (g - sum_k p[k] g[k]) over the key axis (torch's softmax gradient), same layout. */
static void softmax_bwd_block(const float *restrict p, const float *restrict g, float *restrict gs, i64 T, i64 n,
                              i64 ld) {
    float dot[256];
    for (i64 n0 = 0; n0 < n; n0 += 256) {
        const int nn = n - n0 < 256 ? (int)(n - n0) : 256;
        for (i64 i = 0; i < T; i++) {
            const i64 row = i * T * ld + n0;
            for (int l = 0; l < nn; l++) dot[l] = 0.0f;
            for (i64 j = 0; j < T; j++) {
                const float *pj = p + row + j * ld, *gj = g + row + j * ld;
                for (int l = 0; l < nn; l++) dot[l] = dot[l] + pj[l] * gj[l];
            }
            for (i64 j = 0; j < T; j++) {
                const float *pj = p + row + j * ld, *gj = g + row + j * ld;
                float *oj = gs + row + j * ld;
                for (int l = 0; l < nn; l++) oj[l] = (gj[l] - dot[l]) * pj[l];
            }
        }
    }
}

void softmax_fwd(const float *restrict s, float *restrict p, i64 T, i64 N) { softmax_block(s, p, T, N, N); }

void softmax_bwd(const float *restrict p, const float *restrict g, float *restrict gs, i64 T, i64 N) {
    softmax_bwd_block(p, g, gs, T, N, N);
}

/* ------------------------------------------------------------------------------------------
 * Fused attention: from the q/k/v projection [R, B, T, 3, H, dh] (strides st[6]) to z
 * [R, B, T, H, dh] (contiguous), and its gradient, each in one call.  Used when no hook point
 * inside the attention is watched.  They call the kernels above in exactly the order the
 * step-by-step path in clamp/shortattn.py does (to_heads, contract, softmax, contract,
 * from_heads), so the results are the same bit for bit; what they save is the Python, the
 * autograd nodes and the allocations between the kernels.
 */

/* Scratch memory kept between calls (per thread): a fresh large malloc is a fresh mmap, whose
 * page faults cost as much as the arithmetic here. */
static __thread float *scratch_buf = NULL;
static __thread i64 scratch_cap = 0;
static i64 scratch_limit = -1;  /* bytes; -1: none.  A test sets it to make the allocation fail on purpose. */

/* Set (bytes >= 0) or clear (bytes < 0) a limit above which the scratch allocation fails. */
void set_scratch_limit(i64 bytes) { scratch_limit = bytes; }

/* n floats of scratch memory, or NULL when they cannot be had (the callers then return
 * ATTN_NO_MEMORY and write nothing: the Python side raises MemoryError). */
static float *scratch(i64 n) {
    if (scratch_limit >= 0 && (n < 0 || n > scratch_limit / (i64)sizeof(float))) return NULL;
    if (n > scratch_cap) {
        free(scratch_buf);
        scratch_buf = NULL;
        scratch_cap = 0;
        if (n < 0 || (size_t)n > SIZE_MAX / sizeof(float)) return NULL;
        scratch_buf = (float *)malloc(sizeof(float) * (size_t)n);
        scratch_cap = scratch_buf ? n : 0;
    }
    return scratch_buf;
}

#define ATTN_OK 0
#define ATTN_NO_MEMORY 1

int attn_fwd(const float *restrict qkv, const i64 *restrict st, i64 R, i64 B, i64 T, i64 H, i64 dh,
              const float *restrict cr, const float *restrict sr, float scale, const float *restrict mask,
              float *restrict p_out, float *restrict z_out) {
    const i64 N = R * B * H;
    float *buf = scratch(N * (4 * dh * T + T * T));
    if (buf == NULL) return ATTN_NO_MEMORY;
    float *q = buf, *k = q + dh * T * N, *v = k + dh * T * N, *s = v + dh * T * N, *zh = s + T * T * N;
    to_heads(qkv, st[0], st[1], st[2], st[4], st[5], R, B, T, H, dh, q, T * N, N, cr, sr);
    to_heads(qkv + st[3], st[0], st[1], st[2], st[4], st[5], R, B, T, H, dh, k, T * N, N, cr, sr);
    to_heads(qkv + 2 * st[3], st[0], st[1], st[2], st[4], st[5], R, B, T, H, dh, v, N, dh * N, NULL, NULL);
    contract(q, T * N, N, k, T * N, N, dh, T, T, N, s, scale, mask);      /* scores[i, j] = sum_d q[d, i] k[d, j] */
    softmax_fwd(s, p_out, T, N);
    contract(p_out, N, T * N, v, dh * N, N, T, T, dh, N, zh, 1.0f, NULL);  /* z[i, d] = sum_j p[i, j] v[j, d] */
    from_heads(zh, N, dh * N, R, B, T, H, dh, z_out, B * T * H * dh, T * H * dh, H * dh, dh, 1, NULL, NULL);
    return ATTN_OK;
}

int attn_bwd(const float *restrict qkv, const i64 *restrict st, i64 R, i64 B, i64 T, i64 H, i64 dh,
              const float *restrict cr, const float *restrict sr, float scale, const float *restrict p,
              const float *restrict gz, const i64 *restrict gst, float *restrict gqkv) {
    const i64 N = R * B * H;
    float *buf = scratch(N * (7 * dh * T + 2 * T * T) + T * dh);  /* q k v g gq gk gv, gp gs, neg */
    if (buf == NULL) return ATTN_NO_MEMORY;
    float *q = buf, *k = q + dh * T * N, *v = k + dh * T * N, *g = v + dh * T * N, *gq = g + dh * T * N,
          *gk = gq + dh * T * N, *gp = gk + dh * T * N, *gs = gp + T * T * N, *gv = gs + T * T * N,
          *neg = gv + T * dh * N;
    to_heads(qkv, st[0], st[1], st[2], st[4], st[5], R, B, T, H, dh, q, T * N, N, cr, sr);
    to_heads(qkv + st[3], st[0], st[1], st[2], st[4], st[5], R, B, T, H, dh, k, T * N, N, cr, sr);
    to_heads(qkv + 2 * st[3], st[0], st[1], st[2], st[4], st[5], R, B, T, H, dh, v, N, dh * N, NULL, NULL);
    to_heads(gz, gst[0], gst[1], gst[2], gst[3], gst[4], R, B, T, H, dh, g, N, dh * N, NULL, NULL);
    contract(g, N, dh * N, v, N, dh * N, dh, T, T, N, gp, 1.0f, NULL);     /* gp[i, j] = sum_d g[i, d] v[j, d] */
    contract(p, T * N, N, g, dh * N, N, T, T, dh, N, gv, 1.0f, NULL);      /* gv[j, d] = sum_i p[i, j] g[i, d] */
    softmax_bwd(p, gp, gs, T, N);
    for (i64 l = 0; l < T * T * N; l++) gs[l] = gs[l] * scale;
    contract(k, N, T * N, gs, N, T * N, T, dh, T, N, gq, 1.0f, NULL);      /* gq[d, i] = sum_j k[d, j] gs[i, j] */
    contract(q, N, T * N, gs, T * N, N, T, dh, T, N, gk, 1.0f, NULL);      /* gk[d, j] = sum_i q[d, i] gs[i, j] */
    if (cr)
        for (i64 l = 0; l < T * dh; l++) neg[l] = -sr[l];  /* the inverse rotation */
    const i64 o0 = B * T * 3 * H * dh, o1 = T * 3 * H * dh, o2 = 3 * H * dh;
    from_heads(gq, T * N, N, R, B, T, H, dh, gqkv, o0, o1, o2, dh, 1, cr, cr ? neg : NULL);
    from_heads(gk, T * N, N, R, B, T, H, dh, gqkv + H * dh, o0, o1, o2, dh, 1, cr, cr ? neg : NULL);
    from_heads(gv, N, dh * N, R, B, T, H, dh, gqkv + 2 * H * dh, o0, o1, o2, dh, 1, NULL, NULL);
    return ATTN_OK;
}
