"""Named grids. A preset fixes sizes, dtypes, passes, scales and which implementations run;
command-line filters narrow it further."""

from __future__ import annotations

import dataclasses

import xent_impls
from xent_bench.harness import behaviour
from xent_bench.harness.cells import make_cell
from xent_impls import Case
from xent_impls.names import unknown_name


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # "agreement", "timing" or "behaviour"
    description: str
    sizes: tuple[tuple[int, int], ...]
    dtypes: tuple[str, ...]
    passes: tuple[str, ...] = ("forward", "forward_backward")
    scales: tuple[float, ...] = (1.0,)
    impls: tuple[str, ...] = ("*",)  # glob patterns on ids
    device: str = "cpu"
    budget_s: float = 0.25  # seconds of timed rounds per cell and repeat
    # Repeats of the whole grid, each through fresh worker processes: a cell's figure pools the
    # clean rounds of all repeats, and the spread between repeats is its interval.
    repeats: int = 1
    min_rounds: int = 5
    max_rounds: int = 500


NATIVE_ONLY = ("torch/native/*", "jax/optax/*", "tensorflow/native/*")
TIMED = ("torch/*", "jax/*", "tensorflow/*")  # the float64 NumPy oracle is not timed
# The fused and chunked implementations (xent_impls/fused) beside the native ops they replace.
FUSED_AND_NATIVE = ("torch/native/*", "torch/chunked/*", "torch/triton/*", "jax/optax/*",
                    "jax/chunked/*", "jax/pallas/*", "tensorflow/native-xla/*",
                    "tensorflow/chunked-xla/*")

PRESETS = {
    p.name: p
    for p in [
        Preset("agreement", "agreement",
               "loss and gradient against the float64 oracle: every implementation, 3 dtypes, "
               "logit scales 1, 10, 100",
               sizes=((256, 10), (64, 1000), (16, 32000)),
               dtypes=("float32", "bfloat16", "float16"),
               passes=("forward_backward",), scales=(1.0, 10.0, 100.0)),
        Preset("agreement-smoke", "agreement",
               "a quick agreement check: native ops and their variants at one size",
               sizes=((32, 100),), dtypes=("float32", "bfloat16"),
               passes=("forward_backward",), scales=(1.0, 10.0)),
        Preset("smoke", "timing",
               "each framework's native op, both forms and passes, one small size (< 1 min)",
               sizes=((256, 1000),), dtypes=("float32",), impls=NATIVE_ONLY,
               budget_s=0.05, min_rounds=5, max_rounds=50),
        Preset("stability", "timing",
               "the smoke grid plus each framework's hand-written variant, so that speedups over "
               "the native op are measured too (xent-bench stability)",
               sizes=((256, 1000),), dtypes=("float32",),
               impls=NATIVE_ONLY + ("torch/manual/*", "jax/manual/*"),
               budget_s=0.05, min_rounds=5, max_rounds=50, repeats=2),
        Preset("default", "timing",
               "every installed implementation, both forms and passes, float32 and bfloat16, "
               "C = 10, 1000 and 32000 on CPU",
               sizes=((4096, 10), (1024, 1000), (256, 32000)),
               dtypes=("float32", "bfloat16"), impls=TIMED, budget_s=0.15, min_rounds=5,
               max_rounds=300),
        Preset("cpu-large", "timing",
               "a language-model row on CPU: 1024 x 32000, float32",
               sizes=((1024, 32000),), dtypes=("float32",), impls=TIMED, budget_s=1.0),
        Preset("behaviour", "behaviour",
               "every edge-case probe (xent_impls.edge_cases) against every implementation, "
               "plus each framework's options side by side (xent-bench behaviour, a few minutes)",
               sizes=((8, 5),), dtypes=("float32",), passes=("forward_backward",)),
        Preset("fused-agreement", "agreement",
               "the fused and chunked implementations and the native ops against the oracle, "
               "including a 128256-class vocabulary (the first half of xent-bench gpu-check)",
               sizes=((256, 10), (64, 1000), (16, 32000), (4, 128256)),
               dtypes=("float32", "bfloat16", "float16"), passes=("forward_backward",),
               scales=(1.0, 100.0), impls=FUSED_AND_NATIVE),
        Preset("gpu-check", "timing",
               "fused and chunked implementations against the native ops on one GPU, sparse "
               "labels, C = 10, 1000 and 128256 (the second half of xent-bench gpu-check)",
               sizes=((65536, 10), (65536, 1000), (8192, 128256)),
               dtypes=("float32", "bfloat16"), impls=tuple(p[:-1] + "sparse"
                                                           for p in FUSED_AND_NATIVE),
               device="cuda", budget_s=0.3, min_rounds=10, max_rounds=100),
        Preset("gpu", "timing",
               "language-model vocabularies on one GPU: 8192 x 128256 and 4096 x 256000, "
               "plus C = 10 and 1000 at N = 65536",
               sizes=((65536, 10), (65536, 1000), (8192, 128256), (4096, 256000)),
               dtypes=("float32", "bfloat16"), impls=TIMED, device="cuda", budget_s=0.5,
               min_rounds=10, max_rounds=200),
    ]
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise unknown_name("preset", name, list(PRESETS))
    return PRESETS[name]


def build_cells(preset: Preset, *, impl_patterns=None, frameworks=None, forms=None, sizes=None,
                dtypes=None, passes=None, scales=None, device=None) -> list[dict]:
    """The preset's cells; each given filter replaces the preset's choice for that dimension.

    Raises ValueError for unknown names; implementations not supporting a dtype or the device
    are left out of the grid.
    """
    device = device or preset.device
    impls = xent_impls.select(patterns=impl_patterns or preset.impls, frameworks=frameworks,
                              forms=forms)
    if preset.kind == "behaviour":  # probes replace sizes, dtypes, passes and scales
        return behaviour.build_cells(impls, device=device)
    for dt in dtypes or ():
        xent_impls.numpy_dtype(dt)
    cells = []
    for impl in impls:
        if not impl.runs_on(device, timed=preset.kind == "timing"):
            continue
        for n, c in sizes or preset.sizes:
            for dtype in dtypes or preset.dtypes:
                if dtype not in impl.dtypes:
                    continue
                for scale in scales or preset.scales:
                    case = Case(n, c, dtype, float(scale))
                    for pass_ in passes or preset.passes:
                        cells.append(make_cell(preset.kind, impl, case, pass_, device))
    return cells
