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
 * dh = 8 and 16 have unrolled copies of the layout changes (the default models use 8).
 */
#include <stddef.h>

typedef long long i64;

/* Rotation coefficients: with rot = (cr, sr) given ([T, dh] each), position t and partner
 * p(d) = (d + dh/2) % dh, a rotated value is  x[d] * cr[t, d] + x[p(d)] * sr[t, d].
 * clamp/shortattn.py builds cr = (cos, cos), sr = (-sin, sin) (sin negated for the inverse
 * rotation), which is exactly its torch RoPE: x1*cos - x2*sin and x1*sin + x2*cos.
 * cr == NULL means no rotation (a plain copy). */

#define TO_HEADS_BODY(DH)                                                                          \
    for (i64 r = 0; r < R; r++)                                                                    \
        for (i64 b = 0; b < B; b++)                                                                \
            for (i64 t = 0; t < T; t++) {                                                          \
                const float *xt = x + r * st[0] + b * st[1] + t * st[2];                           \
                float *o = out + t * ot + (r * B + b) * H;                                         \
                const float *c = cr ? cr + t * (DH) : NULL, *s = cr ? sr + t * (DH) : NULL;        \
                for (i64 h = 0; h < H; h++) {                                                      \
                    const float *xh = xt + h * st[3];                                              \
                    float v[(DH) > 0 ? (DH) : 1];                                                  \
                    if (c) {                                                                       \
                        for (i64 d = 0; d < (DH); d++)                                             \
                            v[d] = xh[d] * c[d] + xh[(d + (DH) / 2) % (DH)] * s[d];                \
                    } else {                                                                       \
                        for (i64 d = 0; d < (DH); d++) v[d] = xh[d];                               \
                    }                                                                              \
                    for (i64 d = 0; d < (DH); d++) o[d * od + h] = v[d];                           \
                }                                                                                  \
            }

/* out[d, t, n] (strides od, ot; n contiguous) = x[r, b, t, h, d] for n = (r*B + b)*H + h,
 * x read through its strides st[5], optionally rotated.  The unrolled copies need st[4] == 1. */
static void to_heads_8(const float *restrict x, const i64 *restrict st, i64 R, i64 B, i64 T, i64 H,
                       float *restrict out, i64 od, i64 ot, const float *restrict cr, const float *restrict sr) {
    TO_HEADS_BODY(8)
}
static void to_heads_16(const float *restrict x, const i64 *restrict st, i64 R, i64 B, i64 T, i64 H,
                        float *restrict out, i64 od, i64 ot, const float *restrict cr, const float *restrict sr) {
    TO_HEADS_BODY(16)
}
void to_heads(const float *restrict x, const i64 *restrict st, i64 R, i64 B, i64 T, i64 H, i64 dh,
              float *restrict out, i64 od, i64 ot, const float *restrict cr, const float *restrict sr) {
    if (dh == 8 && st[4] == 1) { to_heads_8(x, st, R, B, T, H, out, od, ot, cr, sr); return; }
    if (dh == 16 && st[4] == 1) { to_heads_16(x, st, R, B, T, H, out, od, ot, cr, sr); return; }
    for (i64 r = 0; r < R; r++)
        for (i64 b = 0; b < B; b++)
            for (i64 t = 0; t < T; t++) {
                const float *xt = x + r * st[0] + b * st[1] + t * st[2];
                float *o = out + t * ot + (r * B + b) * H;
                const float *c = cr ? cr + t * dh : NULL, *s = cr ? sr + t * dh : NULL;
                for (i64 d = 0; d < dh; d++) {
                    const i64 pd = (d + dh / 2) % dh;
                    float *odd = o + d * od;
                    if (c) {
                        for (i64 h = 0; h < H; h++)
                            odd[h] = xt[h * st[3] + d * st[4]] * c[d] + xt[h * st[3] + pd * st[4]] * s[d];
                    } else {
                        for (i64 h = 0; h < H; h++) odd[h] = xt[h * st[3] + d * st[4]];
                    }
                }
            }
}

#define FROM_HEADS_BODY(DH)                                                                        \
    for (i64 r = 0; r < R; r++)                                                                    \
        for (i64 b = 0; b < B; b++)                                                                \
            for (i64 t = 0; t < T; t++) {                                                          \
                const float *xs = x + t * xt_ + (r * B + b) * H;                                   \
                float *o = out + (((r * B + b) * T + t) * H) * (DH);                               \
                const float *c = cr ? cr + t * (DH) : NULL, *s = cr ? sr + t * (DH) : NULL;        \
                for (i64 h = 0; h < H; h++) {                                                      \
                    float v[(DH) > 0 ? (DH) : 1];                                                  \
                    for (i64 d = 0; d < (DH); d++) v[d] = xs[d * xd + h];                          \
                    float *oh = o + h * (DH);                                                      \
                    if (c) {                                                                       \
                        for (i64 d = 0; d < (DH); d++) oh[d] = v[d] * c[d] + v[(d + (DH) / 2) % (DH)] * s[d]; \
                    } else {                                                                       \
                        for (i64 d = 0; d < (DH); d++) oh[d] = v[d];                               \
                    }                                                                              \
                }                                                                                  \
            }

/* The reverse of to_heads: out[r, b, t, h, d] (contiguous) from x[d, t, n] (strides xd, xt_),
 * with the same optional rotation. */
static void from_heads_8(const float *restrict x, i64 xd, i64 xt_, i64 R, i64 B, i64 T, i64 H,
                         float *restrict out, const float *restrict cr, const float *restrict sr) {
    FROM_HEADS_BODY(8)
}
static void from_heads_16(const float *restrict x, i64 xd, i64 xt_, i64 R, i64 B, i64 T, i64 H,
                          float *restrict out, const float *restrict cr, const float *restrict sr) {
    FROM_HEADS_BODY(16)
}
void from_heads(const float *restrict x, i64 xd, i64 xt_, i64 R, i64 B, i64 T, i64 H, i64 dh,
                float *restrict out, const float *restrict cr, const float *restrict sr) {
    if (dh == 8) { from_heads_8(x, xd, xt_, R, B, T, H, out, cr, sr); return; }
    if (dh == 16) { from_heads_16(x, xd, xt_, R, B, T, H, out, cr, sr); return; }
    for (i64 r = 0; r < R; r++)
        for (i64 b = 0; b < B; b++)
            for (i64 t = 0; t < T; t++) {
                const float *xs = x + t * xt_ + (r * B + b) * H;
                float *o = out + (((r * B + b) * T + t) * H) * dh;
                const float *c = cr ? cr + t * dh : NULL, *s = cr ? sr + t * dh : NULL;
                for (i64 h = 0; h < H; h++) {
                    float *oh = o + h * dh;
                    for (i64 d = 0; d < dh; d++) {
                        const i64 pd = (d + dh / 2) % dh;
                        oh[d] = c ? xs[d * xd + h] * c[d] + xs[pd * xd + h] * s[d] : xs[d * xd + h];
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
