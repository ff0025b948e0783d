"""Sessions: tests (default), bench, agreement, behaviour, report, lint.

    nox -s tests                  unit and integration tests, every framework installed
    nox -s bench                  default timing preset on CPU -> results/<run id>/
    nox -s bench -- --preset smoke --framework torch      (arguments go to `xent-bench run`)
    nox -s agreement              agreement with the float64 oracle -> results/<run id>/
    nox -s behaviour              behaviour under bad input (matrix, semantics) -> results/
    nox -s report -- RUN_FOLDER   rebuild the reports of a run folder
    nox -s lint                   ruff and the layers' import rule (lint-imports)
    nox -s lint tests             what CI runs (.ci/run)
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

CONSTRAINTS = ("-c", "constraints/cpu.txt")
# The CPU builds of every framework, Triton (its interpreter checks the GPU kernels on the CPU)
# and the report dependencies.
EVERYTHING = "-e.[torch,jax,tensorflow-cpu,triton,report]"


def _install(session: nox.Session, *groups: str) -> None:
    session.install(*CONSTRAINTS, EVERYTHING)
    for group in groups:
        requirements = nox.project.dependency_groups(nox.project.load_toml(), group)
        session.install(*CONSTRAINTS, *requirements)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with PyTorch, JAX and TensorFlow all installed (none is skipped)."""
    _install(session, "test")
    session.run("pytest", *session.posargs, env={"XENT_REQUIRE_ALL_FRAMEWORKS": "1"})


@nox.session
def bench(session: nox.Session) -> None:
    """Time every installed implementation (default preset) and write the report."""
    _install(session)
    session.run("xent-bench", "run", *(session.posargs or ["--preset", "default"]))


@nox.session
def agreement(session: nox.Session) -> None:
    """Loss and gradient error of every implementation against the float64 oracle."""
    _install(session)
    session.run("xent-bench", "agreement", *(session.posargs or ["--preset", "agreement"]))


@nox.session
def behaviour(session: nox.Session) -> None:
    """Behaviour under bad input: every edge-case probe against every implementation."""
    _install(session)
    session.run("xent-bench", "behaviour", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Rebuild the reports of a run folder: nox -s report -- results/<run id>."""
    if not session.posargs:
        session.error("give the run folder: nox -s report -- results/<run id>")
    _install(session)
    session.run("xent-bench", "report", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff, then the import rule of the layers (import-linter: ``[tool.importlinter]`` in
    pyproject.toml, ``docs/architecture.md``). The project is installed (no framework) so that
    import-linter can find its packages."""
    requirements = nox.project.dependency_groups(nox.project.load_toml(), "lint")
    session.install(*CONSTRAINTS, "-e", ".", *requirements)
    session.run("ruff", "check", "xent_impls", "xent_bench", "benchmarks", "tests", "noxfile.py")
    session.run("lint-imports")
