"""The compiled kernels under faults: allocation failure is an error, NaN never reaches a float -> int cast."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from clamp.model import native, shortattn
from clamp.model.layers import rope_tables

needs_native = pytest.mark.skipif(native.lib() is None, reason=f"no compiled kernels here ({native.status()})")


def _inputs(R=2, B=3, T=5, H=8, dh=8):
    qkv = torch.randn(R, B, T, 3, H, dh, requires_grad=True)
    rot = shortattn.rope_rotation(*rope_tables(T, dh, 10_000.0, torch.device("cpu")))
    mask = torch.full((T, T), float("-inf")).triu(1)[:, :, None]
    return qkv, rot, dh ** -0.5, mask


@pytest.fixture
def scratch_limit():
    lib = native.lib()
    yield lib.set_scratch_limit
    lib.set_scratch_limit(-1)


@needs_native
def test_fused_forward_reports_allocation_failure(scratch_limit):
    qkv, rot, scale, mask = _inputs(B=7)  # a size no earlier call used, so the scratch must grow
    scratch_limit(0)
    with pytest.raises(MemoryError, match="could not allocate .* CLAMP_NATIVE=0"):
        shortattn.fused_attention(qkv, rot, scale, mask)


@needs_native
def test_fused_backward_reports_allocation_failure(scratch_limit):
    qkv, rot, scale, mask = _inputs(B=9)
    R, B, T, _, H, dh = qkv.shape
    N = R * B * H
    z, _ = shortattn.fused_attention(qkv, rot, scale, mask)
    scratch_limit(4 * N * (4 * dh * T + T * T))  # what the forward needed; the backward needs more
    with pytest.raises(MemoryError, match="backward"):
        z.sum().backward()
    scratch_limit(-1)
    z, _ = shortattn.fused_attention(qkv, rot, scale, mask)
    z.sum().backward()  # and without the limit all is well again
    assert torch.isfinite(qkv.grad).all()


@needs_native
def test_a_real_malloc_failure_returns_the_error_code():
    """Sizes no machine can hold (petabytes): the kernel returns NO_MEMORY before touching any buffer."""
    buf = torch.zeros(16)
    st = torch.zeros(6, dtype=torch.int64)
    p = buf.data_ptr()
    status = native.lib().attn_fwd(p, st.data_ptr(), 2**20, 2**20, 5, 8, 8, None, None, 1.0, p, p, p)
    assert status == native.NO_MEMORY
    assert torch.equal(buf, torch.zeros(16))


@needs_native
def test_softmax_propagates_nan_like_torch():
    s = torch.randn(5, 5, 40) + torch.full((5, 5), float("-inf")).triu(1)[:, :, None]
    s[2, 1, 3] = float("nan")  # one NaN score: its row comes out NaN
    s[4, :, 7] = float("-inf")  # a row masked everywhere: NaN too (0/0), as in torch
    p = shortattn.softmax(s)
    ref = torch.softmax(s, dim=1)
    assert torch.equal(p.isnan(), ref.isnan())
    assert p.isnan().any(dim=1).sum() == 2
    torch.testing.assert_close(p.nan_to_num(), ref.nan_to_num(), rtol=1e-6, atol=1e-7)


MAIN = r"""
#include <math.h>
#include <stdio.h>
void softmax_fwd(const float *s, float *p, long long T, long long N);
int main(void) {
    float s[8] = {NAN, 0.0f, 1.0f, -INFINITY, INFINITY, 0.0f, -INFINITY, -INFINITY}, p[8];
    softmax_fwd(s, p, 2, 2);  /* (T, T, N) = (2, 2, 2): NaN, +inf and fully masked rows */
    for (int i = 0; i < 8; i++) printf("%g ", p[i]);
    return 0;
}
"""


def test_no_nan_is_cast_to_int_under_the_sanitizer(tmp_path):
    """Build the kernels with UBSan's float-cast-overflow check (a NaN or out-of-range float converted to
    an int aborts; so do overflowing shifts and signed sums) and feed the softmax NaN, +inf and fully
    masked rows."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    (tmp_path / "main.c").write_text(MAIN)
    exe = tmp_path / "softmax_ub"
    flags = ["-O2", "-ffp-contract=off", "-fsanitize=float-cast-overflow,shift,signed-integer-overflow",
             "-fno-sanitize-recover=all"]
    built = subprocess.run([cc, *flags, str(native.SOURCE), str(tmp_path / "main.c"), "-o", str(exe), "-lm"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        pytest.skip(f"no UBSan here: {built.stderr[-200:]}")
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = [float(v) for v in done.stdout.split()]
    # p[(i * 2 + j) * 2 + n]: rows (i=0, n=0) = (NaN, 1) and (i=1, n=0) = (+inf, -inf) come out NaN,
    # rows (0, -inf) stay (1, 0).
    assert all(out[k] != out[k] for k in (0, 2, 4, 6)), out
    assert [out[k] for k in (1, 3, 5, 7)] == [1.0, 0.0, 1.0, 0.0], out
