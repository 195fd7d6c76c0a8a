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
 */
#include <stddef.h>

typedef long long i64;

/* out[d, t, n] (strides od, ot; n contiguous) = x[r, b, t, h, d] for n = (r*B + b)*H + h,
 * optionally rotated (RoPE): with half = dh/2, c = cos[d % half, t], s = sign*sin[...],
 *   out[d < half]  = x[d] * c - x[d + half] * s
 *   out[d >= half] = x[d - half] * s + x[d] * c
 * sign = -1 applies the inverse rotation (the gradient of the forward one). */
void to_heads(const float *restrict x, const i64 *restrict st, i64 R, i64 B, i64 T, i64 H, i64 dh,
              float *restrict out, i64 od, i64 ot, const float *restrict cos_t, const float *restrict sin_t,
              float sign) {
    const i64 N = R * B * H, half = dh / 2;
    for (i64 r = 0; r < R; r++)
        for (i64 b = 0; b < B; b++)
            for (i64 t = 0; t < T; t++) {
                const float *xt = x + r * st[0] + b * st[1] + t * st[2];
                float *o = out + t * ot + (r * B + b) * H;
                for (i64 d = 0; d < dh; d++) {
                    float *od_ = o + d * od;
                    if (cos_t == NULL) {
                        for (i64 h = 0; h < H; h++) od_[h] = xt[h * st[3] + d * st[4]];
                    } else if (d < half) {
                        const float c = cos_t[d * T + t], s = sign * sin_t[d * T + t];
                        for (i64 h = 0; h < H; h++)
                            od_[h] = xt[h * st[3] + d * st[4]] * c - xt[h * st[3] + (d + half) * st[4]] * s;
                    } else {
                        const float c = cos_t[(d - half) * T + t], s = sign * sin_t[(d - half) * T + t];
                        for (i64 h = 0; h < H; h++)
                            od_[h] = xt[h * st[3] + (d - half) * st[4]] * s + xt[h * st[3] + d * st[4]] * c;
                    }
                }
            }
    (void)N;
}

/* The reverse of to_heads: out[r, b, t, h, d] (contiguous) from x[d, t, n] (strides xd, xt),
 * with the same optional rotation. */
void from_heads(const float *restrict x, i64 xd, i64 xt_, i64 R, i64 B, i64 T, i64 H, i64 dh,
                float *restrict out, const float *restrict cos_t, const float *restrict sin_t, float sign) {
    const i64 half = dh / 2;
    for (i64 r = 0; r < R; r++)
        for (i64 b = 0; b < B; b++)
            for (i64 t = 0; t < T; t++) {
                const float *xs = x + t * xt_ + (r * B + b) * H;
                float *o = out + (((r * B + b) * T + t) * H) * dh;
                for (i64 h = 0; h < H; h++) {
                    float *oh = o + h * dh;
                    for (i64 d = 0; d < dh; d++) {
                        if (cos_t == NULL) {
                            oh[d] = xs[d * xd + h];
                        } else if (d < half) {
                            const float c = cos_t[d * T + t], s = sign * sin_t[d * T + t];
                            oh[d] = xs[d * xd + h] * c - xs[(d + half) * xd + h] * s;
                        } else {
                            const float c = cos_t[(d - half) * T + t], s = sign * sin_t[(d - half) * T + t];
                            oh[d] = xs[(d - half) * xd + h] * s + xs[d * xd + h] * c;
                        }
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
