"""The fused and chunked implementations pass the agreement grid on the CPU: every case of the
``agreement`` preset (3 sizes up to C = 32000, float32 / bfloat16 / float16, logit scales 1, 10
and 100), loss and gradient against the float64 oracle, judged like the report judges them
(float32 within the tolerance table; 16-bit within it or no worse than the framework's native
op). Triton kernels run in Triton's interpreter and Pallas kernels with ``interpret=True``."""

from __future__ import annotations

import pytest

import xent_impls
from xent_bench.harness.agreement import native_id, verdict
from xent_bench.harness.cells import cell_case, make_cell
from xent_bench.harness.presets import build_cells, get_preset
from xent_bench.harness.worker import measure_agreement

FUSED_VARIANTS = ("chunked", "fused-compiled", "triton", "pallas", "chunked-xla")
FUSED_IDS = [i.id for i in xent_impls.all_impls() if i.variant in FUSED_VARIANTS]


def _metrics(impl, cell):
    metrics, _, _ = measure_agreement(impl, cell, {})
    return metrics


@pytest.mark.slow
@pytest.mark.parametrize("impl_id", FUSED_IDS)
def test_agreement_grid_passes(impl_id):
    impl = next(i for i in xent_impls.all_impls() if i.id == impl_id)
    if not impl.installed:
        pytest.skip(f"{impl_id} is not installed")
    impl = xent_impls.get(impl_id)
    native = xent_impls.get(native_id(impl.framework, impl.form))
    cells = build_cells(get_preset("agreement"), impl_patterns=[impl_id], device="cpu")
    assert cells, f"{impl_id} takes no cell of the agreement grid on the CPU"
    failures = []
    for cell in cells:
        metrics = _metrics(impl, cell)
        bar = None
        if cell["dtype"] != "float32":
            bar = _metrics(native, make_cell("agreement", native, cell_case(cell),
                                             cell["pass"], "cpu"))
        got = verdict(metrics, cell["dtype"], bar)
        if got not in ("pass", "as-native"):
            failures.append(f"{cell['n']}x{cell['c']} {cell['dtype']} scale {cell['scale']:g}: "
                            f"{got} (loss {metrics['loss_err_eps']:.3g} eps, gradient "
                            f"{metrics['grad_err_eps']:.3g} eps)")
    assert not failures, "\n".join(failures)

