"""The implementation registry: lazy imports, frozen records, lookups, missing frameworks and
plugins."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

import xent_impls
from xent_impls import impl as impl_module
from xent_impls import registry
from xent_impls.dtypes import DTYPES
from xent_impls.inputs import Case, make_inputs
from xent_impls.vocabulary import FORMS

REPO_ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = tuple(registry.FRAMEWORK_MODULES)
OPTIONAL_FRAMEWORKS = ("torch", "jax", "tensorflow")
CATALOG_IDS = [impl.id for impl in xent_impls.all_impls()]


@pytest.fixture(autouse=True)
def _no_plugins_from_environment(monkeypatch):
    """Every test sees the built-in catalog unless it installs a plugin itself."""
    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)


@pytest.fixture
def uninstall(monkeypatch):
    """``uninstall(fw)`` makes the registry believe ``fw`` (or one module) is not installed.

    ``importlib.util.find_spec`` is replaced by one that answers ``None`` for the hidden module
    names and defers to the real one otherwise; ``framework_installed`` is cached, so its cache is
    cleared when the set changes and again after the test.
    """
    hidden: set[str] = set()
    real_find_spec = importlib.util.find_spec

    def find_spec(name, package=None):
        return None if name in hidden else real_find_spec(name, package)

    monkeypatch.setattr(registry.importlib.util, "find_spec", find_spec)
    registry.framework_installed.cache_clear()

    def hide(*modules: str) -> None:
        for module in modules:
            hidden.update(registry.FRAMEWORK_MODULES.get(module, (module,)))
        registry.framework_installed.cache_clear()

    yield hide
    hidden.clear()
    registry.framework_installed.cache_clear()


def _installed_or_skip(framework: str) -> None:
    if not xent_impls.framework_installed(framework):
        pytest.skip(f"{framework} is not installed here")


# --- import is light -------------------------------------------------------------------------


def test_import_imports_no_framework():
    code = (
        "import sys, xent_impls\n"
        "xent_impls.available(); xent_impls.skipped_notes(); xent_impls.all_impls()\n"
        "xent_impls.get('numpy/reference/sparse'); xent_impls.select(['*/sparse'])\n"
        "print([m for m in ('torch', 'jax', 'tensorflow', 'optax', 'keras') if m in sys.modules])"
    )
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGINS_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"frameworks imported by `import xent_impls`: {proc.stdout}"


# --- the records -----------------------------------------------------------------------------


@pytest.mark.parametrize("impl_id", CATALOG_IDS)
def test_record_is_frozen(impl_id):
    impl = next(i for i in xent_impls.all_impls() if i.id == impl_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        impl.id = "x/y/z"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        impl.dtypes = ("float32",)  # type: ignore[misc]
    assert isinstance(impl.dtypes, tuple) and isinstance(impl.devices, tuple), (
        f"{impl_id}: dtypes/devices must be tuples so the record stays immutable and hashable"
    )
    hash(impl)  # make_step caches are keyed by the record


def test_ids_are_unique():
    duplicates = sorted({i for i in CATALOG_IDS if CATALOG_IDS.count(i) > 1})
    assert not duplicates, f"ids registered twice: {duplicates}"


@pytest.mark.parametrize("impl_id", CATALOG_IDS)
def test_record_fields_are_consistent(impl_id):
    impl = next(i for i in xent_impls.all_impls() if i.id == impl_id)
    assert impl.id == f"{impl.framework}/{impl.variant}/{impl.form}", impl
    assert impl.framework in FRAMEWORKS, impl.framework
    assert impl.form in FORMS, impl.form
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", impl.variant), impl.variant
    assert impl.dtypes and set(impl.dtypes) <= set(DTYPES), impl.dtypes
    assert impl.devices and set(impl.devices) <= {"cpu", "cuda"}, impl.devices
    module, sep, attr = impl.entry.partition(":")
    assert sep and attr, f"entry must be 'module:function', got {impl.entry!r}"
    assert module in (impl_module.BACKEND_MODULES[impl.framework],
                      f"xent_impls.fused.{module.rpartition('.')[2]}"), impl.entry
    assert set(impl.interpreted_on) <= {"cpu", "cuda"} - set(impl.devices), impl.interpreted_on
    assert impl.description.strip(), "every record needs a description for reports"
    assert dataclasses.replace(impl) == impl
    assert registry.Impl(**impl.as_dict()) == impl


def test_expected_failures_are_the_documented_ones():
    flagged = {i.id for i in xent_impls.all_impls() if i.expected_failure}
    expected = {
        f"{fw}/{variant}/{form}"
        for fw, variant in (("torch", "naive"), ("jax", "naive"), ("tensorflow", "keras-probs"))
        for form in FORMS
    }
    assert flagged == expected


@pytest.mark.parametrize("impl_id", CATALOG_IDS)
def test_entry_resolves_to_a_callable(impl_id):
    impl = next(i for i in xent_impls.all_impls() if i.id == impl_id)
    _installed_or_skip(impl.framework)
    for module in impl.requires:
        pytest.importorskip(module)
    module_name, _, attr = impl.entry.partition(":")
    fn = impl.fn
    assert callable(fn)
    assert fn is getattr(sys.modules[module_name], attr)
    assert impl.backend.FRAMEWORK == impl.framework


# --- get -------------------------------------------------------------------------------------


def test_get_returns_the_record():
    impl = xent_impls.get("numpy/reference/onehot")
    assert (impl.framework, impl.variant, impl.form) == ("numpy", "reference", "onehot")


def test_get_unknown_id_suggests_close_matches():
    with pytest.raises(ValueError) as info:
        xent_impls.get("torch/native/sprase")
    message = str(info.value)
    assert "'torch/native/sprase'" in message
    assert "Did you mean: torch/native/sparse" in message
    # Forty ids are not listed on one line: their count and where to see them.
    assert message.endswith(f"{len(CATALOG_IDS)} known (xent-bench list shows them)")


def test_get_unrelated_id_has_no_suggestion():
    with pytest.raises(ValueError, match="known \\(xent-bench list shows them\\)") as info:
        xent_impls.get("zzzzzz")
    assert "Did you mean" not in str(info.value)


def test_a_short_list_of_known_names_is_given_whole():
    with pytest.raises(ValueError) as info:
        xent_impls.select(frameworks=["pytorch"])
    assert "Known: numpy, torch, jax, tensorflow" in str(info.value)


# --- frameworks that are not installed -------------------------------------------------------


@pytest.mark.parametrize("framework", OPTIONAL_FRAMEWORKS)
def test_missing_framework_is_skipped_with_a_note(uninstall, framework):
    uninstall(framework)
    assert not xent_impls.framework_installed(framework)
    ids = [i.id for i in xent_impls.available()]
    assert ids, "the other frameworks are still available"
    assert not [i for i in ids if i.startswith(f"{framework}/")]
    notes = [n for n in xent_impls.skipped_notes() if n.startswith(f"{framework}:")]
    assert len(notes) == 1, xent_impls.skipped_notes()
    assert "not installed" in notes[0] and registry.INSTALL_HINT[framework] in notes[0]
    assert xent_impls.available(frameworks=[framework]) == []
    # globbing is not an explicit request: it skips silently
    assert xent_impls.select([f"{framework}/*"]) == []
    assert [i.framework for i in xent_impls.select(forms=["sparse"])].count(framework) == 0


@pytest.mark.parametrize("framework", OPTIONAL_FRAMEWORKS)
def test_missing_framework_requested_explicitly_is_an_error(uninstall, framework):
    uninstall(framework)
    impl_id = f"{framework}/native/sparse" if framework != "jax" else "jax/optax/sparse"
    hint = re.escape(registry.INSTALL_HINT[framework])
    with pytest.raises(ValueError, match=hint):
        xent_impls.get(impl_id)
    with pytest.raises(ValueError, match=hint):
        xent_impls.select(frameworks=[framework])
    with pytest.raises(ValueError, match=hint):
        xent_impls.select([impl_id])  # an exact id is an explicit request
    with pytest.raises(ValueError, match=hint):
        xent_impls.backend(framework)


def test_missing_companion_module_is_named(uninstall):
    uninstall("optax")  # JAX without optax cannot run the jax implementations
    assert not xent_impls.framework_installed("jax")
    (note,) = [n for n in xent_impls.skipped_notes() if n.startswith("jax:")]
    assert "missing optax" in note, note
    with pytest.raises(ValueError, match=r"missing optax\)"):
        xent_impls.get("jax/manual/sparse")


def test_oracle_survives_when_every_optional_framework_is_missing(uninstall):
    uninstall(*OPTIONAL_FRAMEWORKS)
    assert [i.id for i in xent_impls.available()] == ["numpy/reference/sparse",
                                                     "numpy/reference/onehot"]
    assert [n.split(":", 1)[0] for n in xent_impls.skipped_notes()] == list(OPTIONAL_FRAMEWORKS)
    assert xent_impls.select(["*/sparse"]) == [xent_impls.get("numpy/reference/sparse")]


def test_skipped_notes_match_installed_frameworks():
    missing = {fw for fw in FRAMEWORKS if not xent_impls.framework_installed(fw)}
    noted = {note.split(":", 1)[0] for note in xent_impls.skipped_notes()}
    assert noted == missing
    assert {i.framework for i in xent_impls.available()} == set(FRAMEWORKS) - missing


@pytest.mark.parametrize("call", ["framework_installed", "available", "backend", "select"])
def test_unknown_framework_is_an_error(call):
    with pytest.raises(ValueError, match="unknown framework 'torhc'") as info:
        if call == "framework_installed":
            xent_impls.framework_installed("torhc")
        elif call == "available":
            xent_impls.available(frameworks=["torhc"])
        elif call == "backend":
            xent_impls.backend("torhc")
        else:
            xent_impls.select(frameworks=["torhc"])
    if call == "select":
        assert "Did you mean: torch" in str(info.value)


# --- select ----------------------------------------------------------------------------------


def _installed_ids(predicate) -> list[str]:
    return [i.id for i in xent_impls.available() if predicate(i)]


@pytest.mark.parametrize(
    "patterns",
    [["torch/*"], ["*/sparse"], ["*/naive/*", "tensorflow/keras-probs/*"], ["jax/optax*/onehot"],
     ["numpy/reference/sparse"]],
    ids=["framework-glob", "form-glob", "two-patterns", "variant-prefix", "exact-id"],
)
def test_select_with_patterns(patterns):
    got = [i.id for i in xent_impls.select(patterns)]
    want = _installed_ids(lambda i: any(re.fullmatch(_glob_regex(p), i.id) for p in patterns))
    assert got == want
    assert got, f"{patterns} should match something installed"


def _glob_regex(pattern: str) -> str:
    return "".join(".*" if ch == "*" else re.escape(ch) for ch in pattern)


@pytest.mark.parametrize("form", FORMS)
def test_select_by_form(form):
    got = xent_impls.select(forms=[form])
    assert [i.id for i in got] == _installed_ids(lambda i: i.form == form)
    assert all(i.id.endswith(f"/{form}") for i in got)


def test_select_combines_filters():
    _installed_or_skip("torch")
    got = xent_impls.select(["*/native/*", "*/manual/*"], frameworks=["torch"], forms=["onehot"])
    assert [i.id for i in got] == ["torch/native/onehot", "torch/manual/onehot"]


def test_select_without_filters_is_available():
    assert xent_impls.select() == xent_impls.available()


def test_select_unknown_pattern_is_an_error():
    with pytest.raises(ValueError, match=r"unknown implementation pattern 'troch/\*'") as info:
        xent_impls.select(["torch/*", "troch/*"])
    assert "known (xent-bench list shows them)" in str(info.value)


def test_select_unknown_form_is_an_error():
    with pytest.raises(ValueError, match="unknown form 'dense'"):
        xent_impls.select(forms=["dense"])


# --- extra requirements and interpreted devices ----------------------------------------------


def test_missing_extra_requirement_is_skipped_with_a_note(uninstall):
    _installed_or_skip("torch")
    uninstall("triton")
    assert "torch/triton/sparse" not in [i.id for i in xent_impls.available()]
    assert "torch/triton/sparse" not in [i.id for i in xent_impls.select(["torch/*"])]
    assert any("torch/triton/sparse" in n and "triton is not installed" in n
               for n in xent_impls.skipped_notes())
    with pytest.raises(ValueError, match="torch/triton/sparse needs triton"):
        xent_impls.get("torch/triton/sparse")
    with pytest.raises(ValueError, match="needs triton"):
        xent_impls.select(["torch/triton/sparse"])


def test_interpreted_devices_take_agreement_cells_but_never_timing_cells():
    from xent_bench.harness.presets import build_cells, get_preset

    impl = next(i for i in xent_impls.all_impls() if i.id == "jax/pallas/sparse")
    assert impl.runs_on("cuda", timed=True) and impl.runs_on("cpu", timed=False)
    assert not impl.runs_on("cpu", timed=True)
    _installed_or_skip("jax")
    timing = build_cells(get_preset("smoke"), impl_patterns=["jax/*"], device="cpu")
    agreement = build_cells(get_preset("agreement-smoke"), impl_patterns=["jax/*"], device="cpu")
    assert "jax/pallas/sparse" not in {c["impl"] for c in timing}
    assert "jax/pallas/sparse" in {c["impl"] for c in agreement}


# --- plugins (XENT_IMPLS_PLUGINS) ------------------------------------------------------------

PLUGIN_SOURCE = '''
import numpy as np
from xent_impls.reference import reference
from xent_impls.registry import Impl

CALLS = []


def double_loss(logits, targets, grad=False):
    """Twice the oracle: easy to tell apart from the built-in reference."""
    CALLS.append(logits.shape)
    if grad:
        loss, dlogits = reference(logits, targets, grad=True)
        return 2 * loss, 2 * dlogits
    return 2 * reference(logits, targets)


IMPLS = tuple(
    Impl(
        id=f"numpy/{VARIANT}/{form}",
        framework="numpy",
        form=form,
        variant=VARIANT,
        compiled=False,
        dtypes=("float32", "float64"),
        devices=("cpu",),
        description="twice the oracle (a test plugin)",
        entry=f"{__name__}:double_loss",
    )
    for form in FORMS
)
'''


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """``make_plugin(variant=..., forms=..., impls=...)`` writes a plugin module importable from
    ``tmp_path`` and returns its module name; plugins and caches are cleaned up afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def make(variant: str = "double", forms=("sparse",), body: str | None = None) -> str:
        name = f"xent_test_plugin_{uuid.uuid4().hex[:12]}"
        source = body if body is not None else (
            f"VARIANT = {variant!r}\nFORMS = {tuple(forms)!r}\n" + PLUGIN_SOURCE
        )
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        names.append(name)
        return name

    registry._plugin_impls.cache_clear()
    yield make
    for name in names:
        sys.modules.pop(name, None)
    registry._plugin_impls.cache_clear()


def test_plugin_joins_the_registry(make_plugin, monkeypatch):
    name = make_plugin(forms=("sparse", "onehot"))
    monkeypatch.setenv(registry.PLUGINS_ENV, name)
    ids = [i.id for i in xent_impls.all_impls()]
    assert ids == CATALOG_IDS + ["numpy/double/sparse", "numpy/double/onehot"]
    assert [i.id for i in xent_impls.select(["numpy/double/*"])] == ids[-2:]
    assert "numpy/double/onehot" in [i.id for i in xent_impls.available()]
    impl = xent_impls.get("numpy/double/sparse")
    assert impl.fn is sys.modules[name].double_loss
    monkeypatch.delenv(registry.PLUGINS_ENV)
    assert [i.id for i in xent_impls.all_impls()] == CATALOG_IDS, "unset: the plugin is gone"


def test_plugin_function_is_what_evaluate_runs(make_plugin, monkeypatch):
    name = make_plugin()
    monkeypatch.setenv(registry.PLUGINS_ENV, name)
    logits, labels = make_inputs(Case(5, 7), "sparse")
    oracle_loss, oracle_grad = xent_impls.reference(logits, labels, grad=True)
    loss = xent_impls.evaluate("numpy/double/sparse", logits, labels)
    np.testing.assert_allclose(loss, 2 * oracle_loss, rtol=1e-15)
    loss, grad = xent_impls.evaluate("numpy/double/sparse", logits, labels, grad=True)
    np.testing.assert_allclose(grad, 2 * oracle_grad, rtol=1e-15)
    assert sys.modules[name].CALLS == [(5, 7), (5, 7)]


def test_two_plugins_separated_by_commas(make_plugin, monkeypatch):
    first, second = make_plugin(variant="first"), make_plugin(variant="second")
    monkeypatch.setenv(registry.PLUGINS_ENV, f" {first} ,{second},")
    assert [i.id for i in xent_impls.all_impls()][-2:] == ["numpy/first/sparse",
                                                          "numpy/second/sparse"]


@pytest.mark.parametrize("clash", ["builtin", "between-plugins"])
def test_plugin_duplicate_id_is_an_error(make_plugin, monkeypatch, clash):
    if clash == "builtin":
        spec = make_plugin(variant="reference")  # numpy/reference/sparse already exists
        duplicate = "numpy/reference/sparse"
    else:
        spec = f"{make_plugin(variant='same')},{make_plugin(variant='same')}"
        duplicate = "numpy/same/sparse"
    monkeypatch.setenv(registry.PLUGINS_ENV, spec)
    for call in (xent_impls.all_impls, xent_impls.available, lambda: xent_impls.get(duplicate)):
        with pytest.raises(ValueError, match=f"registered twice: {re.escape(duplicate)}"):
            call()


def test_plugin_without_impls_is_an_error(make_plugin, monkeypatch):
    name = make_plugin(body="X = 1\n")
    monkeypatch.setenv(registry.PLUGINS_ENV, name)
    with pytest.raises(ValueError, match=f"plugin module '{name}'.*defines no IMPLS"):
        xent_impls.all_impls()


def test_plugin_that_cannot_be_imported_is_an_error(monkeypatch):
    registry._plugin_impls.cache_clear()
    monkeypatch.setenv(registry.PLUGINS_ENV, "xent_no_such_plugin_module")
    try:
        with pytest.raises(ModuleNotFoundError, match="xent_no_such_plugin_module"):
            xent_impls.all_impls()
    finally:
        registry._plugin_impls.cache_clear()


@pytest.mark.parametrize("variant, message", [
    ("$x^2$", "must be letters, digits"),
    ("<script>", "must be letters, digits"),
    ("two words", "must be letters, digits"),
    ("", "must be letters, digits"),
])
def test_plugin_ids_with_markup_are_refused(make_plugin, monkeypatch, variant, message):
    monkeypatch.setenv(registry.PLUGINS_ENV, make_plugin(variant=variant))
    with pytest.raises(ValueError, match=message):
        xent_impls.all_impls()


def test_plugin_impls_must_be_impls_with_a_matching_id(make_plugin, monkeypatch):
    monkeypatch.setenv(registry.PLUGINS_ENV, make_plugin(body="IMPLS = ('numpy/x/sparse',)\n"))
    with pytest.raises(ValueError, match="holds str, not an Impl"):
        xent_impls.all_impls()
    source = PLUGIN_SOURCE.replace('id=f"numpy/{VARIANT}/{form}"', 'id="numpy/other/sparse"')
    body = "VARIANT = 'double'\nFORMS = ('sparse',)\n" + source
    monkeypatch.setenv(registry.PLUGINS_ENV, make_plugin(body=body))
    registry._plugin_impls.cache_clear()
    with pytest.raises(ValueError, match="must be 'numpy/double/sparse'"):
        xent_impls.all_impls()
