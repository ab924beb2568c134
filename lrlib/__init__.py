"""lrlib -- the library of the course "Efficient Deep Learning: low-rank model compression
for faster inference".

One module per idea; the notebook that introduces each is named in its docstring:

* ``lrlib.env``     -- what machine this is (00)
* ``lrlib.validate`` -- the argument checks every module shares (00)
* ``lrlib.checks``  -- one checker per exercise (00 onwards)
* ``lrlib.claims``  -- what the text says about a measurement, checked as it runs (00 onwards)
* ``lrlib.data``    -- the shipped Fashion-MNIST subset and synthetic inputs (00)
* ``lrlib.models``  -- the reference models and their trained weights (00)
* ``lrlib.train``   -- fit and evaluate loops (00)
* ``lrlib.viz``     -- plots and interactive explorers (00)
* ``lrlib.bench``   -- latency, throughput, comparisons, a serving simulation (01)
* ``lrlib.profile`` -- parameters, FLOPs, bytes, per-layer time, the roofline (02)
* ``lrlib.optimize`` -- optimizations that keep the maths, e.g. BatchNorm folding (02)
* ``lrlib.svd``     -- truncated and randomized SVD, Eckart–Young, rank rules (03)
* ``lrlib.calibration`` -- what each layer receives on calibration data: Gram matrices, mean |x| (03)
* ``lrlib.data_aware``  -- whitened SVD and activation-aware SVD, output errors from the Gram matrix (03)
* ``lrlib.layers``  -- factorized layers: LowRankLinear (03), SVDConv2d, Tucker2Conv2d, CPConv2d (05)
* ``lrlib.factorizations`` -- the registry of methods: one place that turns a name into a layer (03)
* ``lrlib.rank_rules`` -- rank rules: int, fraction, Energy, VBMF, FlopReduction (03, 05)
* ``lrlib.compress`` -- replace a model's layers by factorized ones, with a report (03)
* ``lrlib.sensitivity`` -- accuracy lost per layer, to choose ranks (05)
* ``lrlib.tensor``  -- unfold/fold, mode-n product, Khatri–Rao, MTTKRP, CP-ALS, HOSVD, HOOI (04)
* ``lrlib.vbmf``    -- EVBMF: how many singular values of a noisy matrix stand out (04)
* ``lrlib.blocks``  -- 1×1 convolutions: Fire, depthwise separable, bottleneck (06)
* ``lrlib.deploy``  -- save and rebuild a compressed model, torch.export, dynamic int8 quantization (07)
"""

__version__ = "0.1.0"

from . import (bench, blocks, calibration, checks, claims, compress, data, data_aware, deploy,  # noqa: E402
               env, factorizations, layers, models, optimize, profile, rank_rules, sensitivity, svd,
               tensor, train, validate, vbmf, viz)
from .data import CLASS_NAMES, ImageSet, fashion_mnist, synthetic_input  # noqa: E402
from .models import CNN, MLP, load_reference  # noqa: E402
from .layers import CPConv2d, LowRankLinear, SVDConv2d, Tucker2Conv2d  # noqa: E402
from .train import EvalResult, evaluate, fine_tune, fit  # noqa: E402

__all__ = [
    "__version__",
    "bench",
    "blocks",
    "checks",
    "claims",
    "compress",
    "data",
    "deploy",
    "env",
    "factorizations",
    "layers",
    "models",
    "optimize",
    "profile",
    "rank_rules",
    "sensitivity",
    "svd",
    "tensor",
    "train",
    "validate",
    "vbmf",
    "viz",
    "CLASS_NAMES",
    "ImageSet",
    "fashion_mnist",
    "synthetic_input",
    "CNN",
    "MLP",
    "load_reference",
    "EvalResult",
    "evaluate",
    "fine_tune",
    "fit",
    "LowRankLinear",
    "SVDConv2d",
    "Tucker2Conv2d",
    "CPConv2d",
]
