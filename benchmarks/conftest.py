"""pytest-benchmark suite settings: ``pytest --benchmark-only`` times every available
implementation on a preset grid through the same measurement code as the runner.

Options (or environment variables):

- ``--xent-preset NAME`` (``XENT_BENCH_PRESET``): the grid, a timing preset of
  ``xent-bench list`` (default ``smoke``: each framework's native op, both forms and passes;
  ``default`` is the full CPU grid).
- ``--xent-impl GLOB`` (repeatable): only these implementation ids.
- ``--xent-size NxC`` (repeatable): sizes replacing the preset's.
- ``--xent-budget SECONDS``: time of timed rounds per benchmark (default: the preset's).
- ``--xent-threads N``: CPU threads for every framework (default: the harness's thread rule,
  ``xent_bench/harness/threads.py``: 1 thread on 2 cores or fewer).

Without ``--benchmark-only`` these benchmarks are skipped, so plain ``pytest`` stays quick.
"""

from __future__ import annotations

import os

import pytest

from xent_bench.harness import floor
from xent_bench.harness.presets import build_cells, get_preset
from xent_bench.harness.runner import worker_env
from xent_bench.harness.threads import default_threads, pick_cpus


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xent-bench")
    group.addoption("--xent-preset", default=os.environ.get("XENT_BENCH_PRESET", "smoke"),
                    help="timing preset for the benchmark grid (default: smoke)")
    group.addoption("--xent-impl", action="append", default=[],
                    help="only implementation ids matching this glob (repeatable)")
    group.addoption("--xent-size", action="append", default=[],
                    help="NxC sizes replacing the preset's, e.g. 1024x32000 (repeatable)")
    group.addoption("--xent-budget", type=float, default=None,
                    help="seconds of timed rounds per benchmark (default: the preset's)")
    group.addoption("--xent-threads", type=int, default=default_threads()[0],
                    help="CPU threads for every framework (default: 1 on 2 cores or fewer, "
                         "else the cores the load average leaves free)")


def pytest_configure(config: pytest.Config) -> None:
    preset = get_preset(config.getoption("--xent-preset"))
    if preset.kind != "timing":
        raise pytest.UsageError(f"--xent-preset {preset.name!r} is not a timing preset")
    if config.getoption("benchmark_only", default=False):
        # The same thread count for every framework, set before any framework is imported.
        env = worker_env(config.getoption("--xent-threads"), "default")
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS", "TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS"):
            if key in env:
                os.environ[key] = env[key]
        # Pinned as the runner pins its workers (xent_bench.harness.threads), before any
        # framework starts a thread, so the frameworks' threads inherit the affinity.
        cpus = pick_cpus(config.getoption("--xent-threads"))
        if cpus is not None:
            os.sched_setaffinity(0, cpus)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="cross-entropy benchmarks run with: pytest --benchmark-only")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


class Session:
    """What the whole benchmark session shares: the selected cells, thread count, configured
    backends and the machine ceilings."""

    def __init__(self, config: pytest.Config):
        import xent_impls

        self.config = config
        self.preset = get_preset(config.getoption("--xent-preset"))
        self.threads = config.getoption("--xent-threads")
        budget = config.getoption("--xent-budget")
        self.budget_s = self.preset.budget_s if budget is None else budget
        sizes = [xent_impls.parse_size(s) for s in config.getoption("--xent-size")] or None
        self.cells = build_cells(self.preset, impl_patterns=config.getoption("--xent-impl") or None,
                                 sizes=sizes)
        self.configured: dict[str, str] = {}
        self.ceilings: dict | None = None
        # The frameworks of the benchmarks that will run, once collection is finished
        # (pytest_collection_finish); None until then.
        self.selected: set[str] | None = None

    def backend(self, framework: str):
        import xent_impls

        be = xent_impls.backend(framework)
        if framework not in self.configured:
            self.configured[framework] = be.configure(self.threads)
        return be

    def measure_ceilings(self, device: str) -> dict:
        """Copy / read / exp ceilings with every framework that has a benchmark to run (and
        NumPy on CPU), measured once per session, as a runner run measures them with the
        frameworks of its grid: ``-k torch`` imports and measures neither JAX nor TensorFlow."""
        if self.ceilings is None:
            frameworks = (self.selected if self.selected is not None
                          else {c["framework"] for c in self.cells})
            names = sorted(frameworks | ({"numpy"} if device == "cpu" else set()))
            per_fw = {fw: floor.measure_ceilings(self.backend(fw), device) for fw in names}
            self.ceilings = {"per_framework": per_fw, "best": floor.best_ceilings(per_fw)}
        return self.ceilings


XENT_SESSION = pytest.StashKey[Session]()


def _session(config: pytest.Config) -> Session:
    if XENT_SESSION not in config.stash:
        config.stash[XENT_SESSION] = Session(config)
    return config.stash[XENT_SESSION]


@pytest.fixture(scope="session")
def xent_session(request: pytest.FixtureRequest) -> Session:
    return _session(request.config)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note the frameworks of the benchmarks left after ``-k``, ``-m`` and node-id selection."""
    if not session.config.getoption("benchmark_only", default=False):
        return
    cells = [item.callspec.params.get("xent_cell") for item in session.items
             if hasattr(item, "callspec")]
    _session(session.config).selected = {c["framework"] for c in cells if c}


def cell_id(cell: dict) -> str:
    return f"{cell['impl']}-{cell['n']}x{cell['c']}-{cell['dtype']}-{cell['pass']}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One parameter ``xent_cell`` per selected cell (plain string ids, so the saved JSON stays
    clean); a framework that is not installed is one skipped parameter with the reason."""
    import xent_impls

    if "xent_cell" not in metafunc.fixturenames:
        return
    params = [pytest.param(cell, id=cell_id(cell)) for cell in _session(metafunc.config).cells]
    for note in xent_impls.skipped_notes():
        framework = note.split(":", 1)[0]
        if framework != "numpy":
            params.append(pytest.param(None, id=f"{framework}-not-installed",
                                       marks=pytest.mark.skip(reason=note)))
    metafunc.parametrize("xent_cell", params)


# Distributions whose versions say which frameworks a session measured (read from their
# metadata, without importing them).
DISTRIBUTIONS = ("numpy", "torch", "jax", "jaxlib", "optax", "tensorflow", "tensorflow-cpu",
                 "keras", "triton")
# Fields of pytest-benchmark's own CPU information that change from one reading to the next.
VOLATILE_CPU_KEYS = ("hz_actual", "hz_actual_friendly")


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    """What stays the same between sessions on one machine and environment: the CPU model,
    the preset and thread option, the allocator and the installed framework versions.

    pytest-benchmark compares ``machine_info`` with that of a saved run
    (``--benchmark-compare``) and warns when they differ, so nothing that changes between
    sessions goes here: the measured ceilings, the git commit, the CPUs pinned to and the
    thread settings applied go into each benchmark's ``extra_info`` (test_cross_entropy.py),
    and the CPU clock that pytest-benchmark reads is dropped."""
    import importlib.metadata

    from xent_bench.harness import provenance

    packages = {}
    for name in DISTRIBUTIONS:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    machine_info["xent"] = {
        "cpu_model": provenance.cpu_model(),
        "preset": config.getoption("--xent-preset"),
        "threads": config.getoption("--xent-threads"),
        "allocator": "default",
        "packages": packages,
    }
    cpu = machine_info.get("cpu")
    if isinstance(cpu, dict):
        for key in VOLATILE_CPU_KEYS:
            cpu.pop(key, None)
