"""Optimizations that keep the maths: the same function, computed faster.

Introduced in notebook ``02_compression_vs_optimization``, as the counterpart of
compression (lessons 03–06), which changes the function to make the model smaller.

Folding BatchNorm into the convolution before it is the classic example. In eval mode
BatchNorm is a fixed per-channel affine map,
``bn(y) = γ · (y − μ) / √(σ² + ε) + β``, so after a convolution ``y = W * x + b`` it can
be merged into the convolution's own weights (Jacob et al. 2018 describe it for
quantized inference):

    s = γ / √(σ² + ε)          (one scale per output channel)
    W' = s · W                  (scale each output channel's filter)
    b' = s · (b − μ) + β

One layer fewer to run, the same outputs up to rounding.

:func:`freeze` goes further with PyTorch's own inference optimizations: it records the
model as a TorchScript graph and lets ``torch.jit.optimize_for_inference`` fold BatchNorm,
fuse each convolution with the ReLU after it and pick the CPU convolution library's
preferred memory layout. The graph computes the same function; only the clock changes.

:func:`keep_freed_memory` changes no model at all: it stops the C library's memory
allocator from handing freed memory back to the operating system after every forward
pass, which on some machines costs more than the convolutions themselves.
"""

from __future__ import annotations

import copy
import ctypes
import sys
import warnings

import torch
from torch import nn

from .validate import check_bool, check_int, check_number, check_tensor, check_type

__all__ = ["fold_batchnorm", "fold_batchnorms", "freeze", "keep_freed_memory", "freed_memory_kept"]


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new ``nn.Conv2d`` equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    Neither argument is changed. The result always has a bias.
    """
    check_type(conv, "conv", nn.Conv2d)
    check_type(bn, "bn", nn.BatchNorm2d)
    if bn.num_features != conv.out_channels:
        raise ValueError(
            f"bn has {bn.num_features} features but conv has {conv.out_channels} output "
            "channels; they must match"
        )
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("bn must track running statistics (track_running_stats=True)")

    folded = copy.deepcopy(conv)
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        folded.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)
    return folded


def fold_batchnorms(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d inside an ``nn.Sequential``.

    Works on models built from ``nn.Sequential`` containers (such as
    ``lrlib.models.CNN``; pairs inside other modules are left alone, since their order of
    use is not known): each folded BatchNorm is replaced by ``nn.Identity``. A BatchNorm
    that follows a factorized convolution of ``lrlib.layers`` (``SVDConv2d``,
    ``Tucker2Conv2d``, ``CPConv2d``: chains whose last step is a 1×1 ``nn.Conv2d`` called
    ``last``) is folded into that last step, so a model can be factorized with its
    BatchNorms in place, fine-tuned, and folded at the end. The result is in eval mode.
    The caller's model is left unchanged unless ``inplace=True``.
    """
    check_type(model, "model", nn.Module)
    check_bool(inplace, "inplace")
    target = model if inplace else copy.deepcopy(model)
    _fold_children(target)
    return target.eval()


def freeze(model: nn.Module, example_input: torch.Tensor, *, check: bool = True,
           atol: float = 1e-4) -> torch.jit.ScriptModule:
    """A frozen, inference-optimized TorchScript copy of ``model`` (the caller's model is
    not changed).

    ``torch.jit.trace`` records the operations ``model`` runs on ``example_input`` (so
    the model must not branch on its input), ``torch.jit.optimize_for_inference`` freezes
    the weights into the graph and applies its fusions. With ``check=True`` the outputs
    on ``example_input`` are compared with the eager model's and a ``ValueError`` is raised
    when they differ by more than ``atol``. The result only runs inference; to fine-tune,
    keep the eager model. Save it with ``torch.jit.save`` and load it with
    ``torch.jit.load``, without lrlib.

    TorchScript is deprecated in recent PyTorch releases in favour of ``torch.compile``
    and ``torch.export``; its deprecation warnings are silenced here. It is used because
    it needs no C++ compiler (``torch.compile`` does, on a CPU) and still gives the fused
    CPU kernels; lesson 07 exports with ``torch.export`` for deployment.
    """
    check_type(model, "model", nn.Module)
    check_tensor(example_input, "example_input")
    check_bool(check, "check")
    check_number(atol, "atol", low=0)
    eager = copy.deepcopy(model).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        frozen = torch.jit.optimize_for_inference(torch.jit.trace(eager, example_input))
        if check:
            difference = (frozen(example_input) - eager(example_input)).abs().max().item()
            if not difference <= atol:
                raise ValueError(f"the frozen model differs from the eager one by {difference:.3g} "
                                 f"(more than atol={atol}) on example_input")
    return frozen


#: glibc's ``mallopt`` parameters (``<malloc.h>``) and the largest mmap threshold every
#: 64-bit glibc accepts (32 MiB).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_MMAP_THRESHOLD_MAX = 32 << 20


def keep_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Keep freed memory inside this process, so that each forward pass does not fetch its
    activations from the operating system again. Returns True where it took effect (Linux
    with glibc), False elsewhere (nothing changes there).

    Every forward pass allocates its activations and frees them. glibc's ``malloc`` serves a
    large block (above ``M_MMAP_THRESHOLD``, 128 KiB at first) with a fresh ``mmap`` and
    unmaps it on ``free``, and it returns free memory at the top of its heap to the system
    once there is more than ``M_TRIM_THRESHOLD``. The next pass then touches brand-new pages,
    and the kernel must zero and map each 4 KiB page on a page fault. On a virtual machine a
    page fault is expensive: on the 2-core virtual machine the course is tested on, a
    factorized chain, which writes 2–3 intermediate tensors where the dense layer writes
    one, sometimes ran several times slower than its own convolutions timed one by one
    (notebook 05, section 8, shows the check; ``benchmarks/conv_speedup.py`` measures with
    and without this setting).

    This sets both thresholds to ``limit_bytes`` (the mmap one to at most 32 MiB where glibc
    refuses more) with ``mallopt``; the same as starting Python with the environment
    variables ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_``. Serving stacks often
    reach the same end by loading jemalloc or tcmalloc with ``LD_PRELOAD``, as Intel's
    performance guide for PyTorch on CPUs recommends. The price: the process keeps the
    memory it used at its peak. It applies to the whole process and cannot be undone
    (glibc stops adapting its thresholds), so call it once, at the start of a process that
    serves or benchmarks a model.
    """
    global _freed_memory_kept
    check_int(limit_bytes, "limit_bytes", minimum=1 << 20)          # at least 1 MiB
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt          # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(limit_bytes, 2**31 - 1)
    if not mallopt(_M_TRIM_THRESHOLD, limit):
        return False
    kept = bool(mallopt(_M_MMAP_THRESHOLD, limit) or
                mallopt(_M_MMAP_THRESHOLD, min(limit, _GLIBC_MMAP_THRESHOLD_MAX)))
    _freed_memory_kept = _freed_memory_kept or kept
    return kept


_freed_memory_kept = False


def freed_memory_kept() -> bool:
    """Whether :func:`keep_freed_memory` has taken effect in this process."""
    return _freed_memory_kept


def _fold_children(module: nn.Module) -> None:
    """Fold conv → bn pairs among the children of every nn.Sequential inside ``module``.

    Only Sequential containers run their children in the order they are listed, so only
    there does "a BatchNorm2d right after a Conv2d" mean that one is applied to the
    other's output.
    """
    previous_name, previous = None, None
    for name, child in list(module.named_children()):
        if isinstance(module, nn.Sequential) and isinstance(child, nn.BatchNorm2d):
            if isinstance(previous, nn.Conv2d):
                setattr(module, previous_name, fold_batchnorm(previous, child))
                setattr(module, name, nn.Identity())
                previous_name, previous = name, None
                continue
            if _is_conv_chain(previous):
                previous.last = fold_batchnorm(previous.last, child)
                setattr(module, name, nn.Identity())
                previous_name, previous = name, None
                continue
        _fold_children(child)
        previous_name, previous = name, child


def _is_conv_chain(module) -> bool:
    """True for lrlib's factorized convolutions, whose output is that of their ``last`` 1×1 conv."""
    from .layers import CPConv2d, SVDConv2d, Tucker2Conv2d

    return isinstance(module, (SVDConv2d, Tucker2Conv2d, CPConv2d)) and isinstance(module.last, nn.Conv2d)
