"""Optional compiled kernels for the hot loops of a tiny model on a CPU.

Why this package exists: on a CPU, a 5-token attention step is thousands of
tiny products, and every torch formulation of them either pays per-matrix
overhead (batched matmul) or streams large broadcast intermediates through
memory; LayerNorm over 64-wide rows is dominated by per-row overhead.  Plain
C loops are 3-7x faster.  The C source (``kernels.c``) is compiled on first
use with the system C compiler into a per-user cache; if there is no
compiler, or ``CLAMP_NATIVE=0`` is set, :func:`lib` returns None and the
callers (:mod:`clamp.model.shortattn`, :mod:`clamp.model.layernorm`) use torch code.

The attention kernels do the same float operations in the same order as the
torch code (no fused multiply-add), so both paths give the same numbers
(tested).  The LayerNorm kernels agree with ``torch.nn.functional.layer_norm``
to float rounding (about 1e-7 relative), not bit for bit.  Either way the
numbers are deterministic: same machine, same numbers.

Environment:
    ``CLAMP_NATIVE=0``   never build or load the kernels.
    ``CLAMP_CACHE_DIR``  where built kernels are kept (default ``~/.cache/clamp``).
    ``CC``               the C compiler (default ``cc``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-shared", "-fPIC")
ARCH_FLAGS = ("-march=native",)

_state: dict[str, object] = {}

_i64, _ptr, _f32 = ctypes.c_longlong, ctypes.c_void_p, ctypes.c_float
_SIGNATURES = {
    "to_heads": [_ptr] + [_i64] * 5 + [_i64] * 5 + [_ptr, _i64, _i64, _ptr, _ptr],
    "from_heads": [_ptr, _i64, _i64] + [_i64] * 5 + [_ptr] + [_i64] * 5 + [_ptr, _ptr],
    "contract": [_ptr, _i64, _i64, _ptr, _i64, _i64] + [_i64] * 4 + [_ptr, _f32, _ptr],
    "ln_fwd": [_ptr, _ptr, _ptr, _i64, _i64, _i64, _f32, _ptr, _ptr, _ptr],
    "ln_bwd": [_ptr] * 5 + [_i64] * 3 + [_ptr] * 3,
    "softmax_fwd": [_ptr, _ptr, _i64, _i64],
    "softmax_bwd": [_ptr, _ptr, _ptr, _i64, _i64],
    "attn_fwd": [_ptr, _ptr] + [_i64] * 5 + [_ptr, _ptr, _f32, _ptr, _ptr, _ptr],
    "attn_bwd": [_ptr, _ptr] + [_i64] * 5 + [_ptr, _ptr, _f32, _ptr, _ptr, _ptr, _ptr],
    "set_scratch_limit": [_i64],
}
_RESTYPES = {"attn_fwd": ctypes.c_int, "attn_bwd": ctypes.c_int}  # 0, or NO_MEMORY: nothing was written
NO_MEMORY = 1


def _cpu_id() -> str:
    """What the built code depends on: the machine and, on Linux, the CPU's feature flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.system()}-{platform.machine()}-{flags}"


def cache_dir() -> Path:
    return Path(os.environ.get("CLAMP_CACHE_DIR") or Path.home() / ".cache" / "clamp") / "native"


def _build(target: Path, compiler: str) -> str | None:
    """Compile the kernels to ``target``; returns None on success, else the compiler's complaint."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for arch in (ARCH_FLAGS, ()):  # -march=native where the compiler knows it
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *FLAGS, *arch, str(SOURCE), "-o", tmp, "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            os.unlink(tmp)
            return f"{' '.join(cmd)}: {e}"
        if done.returncode == 0:
            os.replace(tmp, target)  # atomic: concurrent builders each write a whole file
            return None
        os.unlink(tmp)
        errors.append(done.stderr.strip()[-500:])
    return "; ".join(errors)


def lib() -> ctypes.CDLL | None:
    """The compiled kernels, building them on first use; None where they cannot be had.

    Example:
        >>> lib() is None or hasattr(lib(), "contract")
        True
    """
    if "lib" in _state:
        return _state["lib"]  # type: ignore[return-value]
    _state["lib"] = None
    _state["why"] = "disabled by CLAMP_NATIVE=0"
    if os.environ.get("CLAMP_NATIVE", "1") == "0":
        return None
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        _state["why"] = f"no C compiler ({compiler!r} not found)"
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + repr((compiler, FLAGS, ARCH_FLAGS, _cpu_id())).encode()).hexdigest()[:16]
    target = cache_dir() / f"kernels-{key}.so"
    if not target.exists():
        err = _build(target, compiler)
        if err is not None:
            _state["why"] = f"build failed: {err}"
            warnings.warn(f"clamp: compiled attention kernels unavailable ({err}); using the torch path (slower, same numbers).")
            return None
    try:
        handle = ctypes.CDLL(str(target))
    except OSError as e:
        _state["why"] = f"load failed: {e}"
        return None
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(handle, name)
        fn.argtypes, fn.restype = argtypes, _RESTYPES.get(name)
    _state["lib"], _state["why"] = handle, f"compiled ({target})"
    return handle


def status() -> str:
    """One line saying whether the compiled kernels are in use, and if not why."""
    lib()
    return ("native: " if _state["lib"] is not None else "torch: ") + str(_state["why"])
