"""The behaviour report: what every implementation does with bad and edge-case input.

Built from the records of a ``behaviour`` run (``xent-bench behaviour``) only:

- a cross-framework summary (probes down; each framework's native op across, Keras beside
  TensorFlow's ``tf.nn``; and what the checked mode says about the same input);
- generated findings;
- one matrix per framework (probes down, that framework's implementations across);
- the probe catalogue;
- the semantics of each framework's options side by side (``xent_bench/harness/semantics.py``).

Every matrix cell says what happened: ``ok`` with its loss/gradient error in eps, ``accepted``
(a bad input answered as meant, without an error), ``SILENT ...`` (a wrong answer, NaN or inf
returned without an error; highlighted), the exception raised (a clean error), ``ABORTED`` (the
process died, with its signal; highlighted), ``n/a`` (the probe is for the other form) or
``not run`` (no record: an interrupted run).

``report.write_reports`` puts the summary into ``report.md``/``report.html`` and the whole of it
into ``behaviour.md``/``behaviour.html`` of the same run folder.
"""

from __future__ import annotations

import re

import numpy as np

from xent_bench.harness import semantics
from xent_bench.harness.agreement import TOLERANCE_EPS, native_id
from xent_bench.harness.messages import clean_message
from xent_bench.harness.records import Record
from xent_bench.reports.document import Bullets, Heading, Para, make_table
from xent_bench.reports.format import fmt_eps, fmt_num
from xent_impls import checks, edge_cases
from xent_impls.registry import all_impls
from xent_impls.vocabulary import FORM_NAMES, FORMS, FRAMEWORKS

# Columns of the cross-framework summary: what a user of each framework calls.
SUMMARY_COLUMNS = (
    ("torch F.cross_entropy", "torch/native"),
    ("torch.compile", "torch/compiled"),
    ("jax optax (jit)", "jax/optax"),
    ("tf.nn (eager)", "tensorflow/native"),
    ("tf.nn (XLA)", "tensorflow/native-xla"),
    ("keras", "tensorflow/keras"),
)
SHORT = 58  # characters of an exception message shown in a matrix cell
SEMANTICS_APIS = ("torch.nn.functional", "optax", "tf.nn", "tf.compat.v1.losses", "keras")

LEGEND = [
    "`ok L/G`: a valid input answered right; L and G are the loss and gradient error against "
    "the float64 oracle in float32 eps (at most "
    f"{TOLERANCE_EPS['float32']['loss']:g}).",
    "`accepted, as meant`: a bad input (the checked mode refuses it) answered without an error "
    "as the caller evidently meant (e.g. labels [N, 1] squeezed, -100 ignored).",
    "**SILENT ...**: an answer returned without an error where it is wrong (off the oracle, "
    "NaN or inf where the oracle is finite, a wrong shape) or where no answer is defined (an "
    "out-of-range label, a NaN logit). These are the cells that hurt.",
    "`raises Type: message`: a clean error (the start of its message).",
    "**ABORTED (signal)**: the process died (a compiled kernel aborting, say); the run went on "
    "in a fresh process. **HUNG** likewise for a probe killed after the cell timeout.",
    "`n/a`: the probe is for the other form; `not run`: no record (an interrupted run: "
    "`xent-bench behaviour --resume RUN_FOLDER`).",
]


# --------------------------------------------------------------------------------------------
# One cell


def _short(text: str, limit: int = SHORT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _eps(v) -> str:
    return fmt_eps(v)


def _count(m: dict, *names) -> int:
    return int(sum(float(m.get(n) or 0) for n in names))


def worker_death(message: str) -> tuple[str, str] | None:
    """``(text, detail)`` for a runner message about a worker that died or hung, else None."""
    message = message or ""
    match = re.match(r"worker killed by signal (\w+)", message)
    if match:
        detail = ""
        what = re.search(r"what\(\):\s*(.*)", message)
        if what:
            detail = clean_message(what.group(1))
        return f"ABORTED ({match.group(1)})", detail
    match = re.match(r"worker timed out after ([\d.]+) s", message)
    if match:
        return f"HUNG (killed after {match.group(1)} s)", ""
    match = re.match(r"worker exited with status (-?\d+)", message)
    if match:
        return f"process exited (status {match.group(1)})", ""
    return None


def cell_outcome(rec: Record | None) -> str:
    """The outcome class of one record: ok, accepted, silent, error, aborted, hung, missing."""
    if rec is None:
        return "missing"
    if rec.status != "ok":
        death = worker_death(rec.error or "")
        if death and death[0].startswith("HUNG"):
            return "hung"
        return "aborted" if death else "harness"
    outcome = rec.labels.get("outcome")
    return {"wrong": "silent", "wrong-shape": "silent"}.get(outcome, outcome or "harness")


def cell_text(rec: Record | None) -> tuple[str, str]:
    """``(text, mark)`` of one behaviour record; mark: ``bad`` (silent or aborted), ``warn``
    (accepted), ``clean`` (raised) or ``""`` (ok)."""
    if rec is None:
        return "not run (no record)", "bad"
    if rec.status != "ok":
        message = rec.error or ""
        death = worker_death(message)
        if death:
            return death[0], "bad"
        return f"harness error: {_short(message)}", "bad"
    lab, m = rec.labels, rec.metrics
    outcome = lab.get("outcome")
    text, mark = _outcome_text(lab, m)
    if lab.get("warning") and outcome != "error":
        text += f" (warns {_short(lab['warning'], 40)})"
    return text, mark


def _outcome_text(lab: dict, m: dict) -> tuple[str, str]:
    outcome = lab.get("outcome")
    errs = f"{_eps(m.get('loss_err_eps'))}/{_eps(m.get('grad_err_eps'))}"
    if outcome == "error":
        return f"raises {lab.get('exception')}: {_short(lab.get('message', ''))}", "clean"
    if outcome == "ok":
        return f"ok {errs}", ""
    if outcome == "accepted":
        note = f", {lab['shape_note']}" if lab.get("shape_note") else ""
        return f"accepted, as meant {errs}{note}", "warn"
    if outcome == "wrong-shape":
        return f"SILENT wrong shape: loss {lab.get('loss_shape')}", "bad"
    if outcome == "silent":
        what = {"nan": "NaN", "inf": "inf", "value": "finite value"}[lab.get("behaviour", "value")]
        rows = _count(m, "loss_nan", "loss_posinf", "loss_neginf")
        where = f" in {rows} loss row{'s' if rows != 1 else ''}" if what != "finite value" else ""
        if what != "finite value" and not rows:
            where = " in the gradient"
        return f"SILENT {what}{where}, no error", "bad"
    # wrong: say which of loss and gradient is off, and how
    tol = TOLERANCE_EPS["float32"]
    parts = []
    for q in ("loss", "grad"):
        name = "loss" if q == "loss" else "gradient"
        if m.get(f"{q}_mismatched"):
            nan = _count(m, f"{q}_nan")
            parts.append(f"{name} NaN" if nan else f"{name} inf")
        elif (m.get(f"{q}_err_eps") or 0) > tol[q]:
            parts.append(f"{name} off by {_eps(m.get(f'{q}_err_eps'))} eps")
    return "SILENT wrong " + ", ".join(parts or ["value"]), "bad"


# --------------------------------------------------------------------------------------------
# Tables


def _records(run) -> tuple[dict[tuple, Record], list[Record]]:
    """Behaviour records by (impl, probe), and the semantics records."""
    by_key, sem = {}, []
    for rec in run.records:
        cell = rec.cell
        if cell.get("kind") == "behaviour":
            by_key[(cell["impl"], cell.get("probe"))] = rec
        elif cell.get("kind") == "semantics":
            sem.append(rec)
    return by_key, sem


def _planned_impls(run) -> list[str]:
    cells = run.meta.get("cells") or [r.cell for r in run.records]
    return list(dict.fromkeys(c["impl"] for c in cells if c.get("kind") == "behaviour"))


def _planned_probes(run) -> list[str]:
    cells = run.meta.get("cells") or [r.cell for r in run.records]
    used = {c.get("probe") for c in cells if c.get("kind") == "behaviour"}
    return [p.name for p in edge_cases.PROBES if p.name in used]


def _impl_order(impl_ids: list[str]) -> list[str]:
    natives = {native_id(fw, form) for fw in FRAMEWORKS for form in FORMS}

    def key(i):
        fw, variant, form = i.split("/")
        fw_rank = FRAMEWORKS.index(fw) if fw in FRAMEWORKS else 99
        form_rank = FORMS.index(form) if form in FORMS else 99
        return (fw_rank, form_rank, i not in natives, variant)
    return sorted(impl_ids, key=key)


def matrix_cell(by_key: dict, impl_id: str, probe) -> tuple[str, str]:
    form = impl_id.rsplit("/", 1)[1]
    if not probe.applies(form):
        only = " and ".join(FORM_NAMES[f] for f in probe.forms)
        return f"n/a ({only} form only)", "expected"
    return cell_text(by_key.get((impl_id, probe.name)))


def framework_matrix(run, framework: str):
    """One framework's matrix: probes down, its implementations across."""
    by_key, _ = _records(run)
    impls = _impl_order([i for i in _planned_impls(run) if i.split("/")[0] == framework])
    rows, marks = [], []
    for name in _planned_probes(run):
        probe = edge_cases.get(name)
        row, mark = {"probe": name}, {}
        for impl_id in impls:
            column = impl_id.split("/", 1)[1]
            row[column], mark[column] = matrix_cell(by_key, impl_id, probe)
        rows.append(row)
        marks.append(mark)
    return make_table(rows, marks, caption=f"{framework}: probes down, implementations across "
                                       f"(variant/form).")


def checked_text(probe) -> str:
    """What the checked mode says about the probe's input (each form it applies to)."""
    texts = []
    for form in probe.forms:
        logits, targets = probe.make(form)
        try:
            checks.check(form, logits, targets)
            text = "accepted"
        except ValueError as exc:
            text = f"ValueError: {_short(str(exc), 70)}"
            if probe.masked and not probe.bad:
                try:
                    checks.check(form, logits, targets, allow_masked=True)
                    text = "accepted with allow_masked=True (refused without)"
                except ValueError:
                    pass
        texts.append(text)
    if len(set(texts)) == 1:
        return texts[0]
    return "; ".join(f"{FORM_NAMES[f]}: {t}" for f, t in zip(probe.forms, texts))


def _summary_cell(by_key: dict, prefix: str, probe, planned: set) -> tuple[str, str]:
    results = []
    for form in probe.forms:
        impl_id = f"{prefix}/{form}"
        if impl_id in planned:
            results.append((form, *cell_text(by_key.get((impl_id, probe.name)))))
    if not results:
        return "not run (implementation not selected)", "expected"
    severity = {"bad": 3, "warn": 2, "clean": 1, "": 0, "expected": 0}
    mark = max((r[2] for r in results), key=lambda m: severity.get(m, 0))
    if len({r[1] for r in results}) == 1 or len(results) == 1:
        return results[0][1], mark
    return "; ".join(f"{FORM_NAMES[f]}: {t}" for f, t, _ in results), mark


def summary_table(run):
    """Probes down; what each framework's native op (and Keras) does; the checked mode."""
    by_key, _ = _records(run)
    planned = set(_planned_impls(run))
    rows, marks = [], []
    for name in _planned_probes(run):
        probe = edge_cases.get(name)
        row = {"probe": name, "input": probe.description,
               "right answer": (probe.meaning or "the float64 reference") if probe.defined
               else "none defined"}
        mark = {}
        for title, prefix in SUMMARY_COLUMNS:
            if not any(f"{prefix}/{f}" in planned for f in FORMS):
                continue
            row[title], mark[title] = _summary_cell(by_key, prefix, probe, planned)
        row["checked mode"] = checked_text(probe)
        rows.append(row)
        marks.append(mark)
    return make_table(rows, marks, left=3,
                  caption="Sparse and one-hot results are shown once when they agree.")


def catalogue_table():
    rows = []
    for p in edge_cases.PROBES:
        logits, targets = p.make(p.forms[0])
        rows.append({"probe": p.name, "forms": ", ".join(FORM_NAMES[f] for f in p.forms),
                     "input": p.description,
                     "arrays": f"logits {tuple(logits.shape)} {logits.dtype}, targets "
                               f"{tuple(targets.shape)} {targets.dtype}",
                     "bad input": ("yes" if p.bad else
                                   "only without allow_masked" if p.masked else "no"),
                     "right answer": (p.meaning or "the float64 reference") if p.defined
                     else "none defined"})
    return make_table(rows, left=6)


# --------------------------------------------------------------------------------------------
# Findings


def _by_outcome(run) -> dict:
    by_key, _ = _records(run)
    out = {}
    for impl_id in _planned_impls(run):
        form = impl_id.rsplit("/", 1)[1]
        for name in _planned_probes(run):
            probe = edge_cases.get(name)
            if probe.applies(form):
                rec = by_key.get((impl_id, name))
                out[(impl_id, name)] = (cell_outcome(rec), rec)
    return out


def _ids(items) -> str:
    items = list(items)
    return ", ".join(f"`{i}`" for i in items)


def findings(run) -> list[str]:
    """Generated sentences: silent answers per framework, aborts, disagreements."""
    outcomes = _by_outcome(run)
    items = []
    planned = _planned_impls(run)
    frameworks = [fw for fw in FRAMEWORKS if any(i.startswith(fw + "/") for i in planned)]
    meant = _meant_to_fail()
    for fw in frameworks:
        mine = {k: v for k, v in outcomes.items() if k[0].startswith(fw + "/")}
        silent = sorted({k[1] for k, v in mine.items() if v[0] == "silent" and k[0] not in meant},
                        key=_probe_rank)
        n_silent = sum(v[0] == "silent" for v in mine.values())
        n_meant = sum(v[0] == "silent" and k[0] in meant for k, v in mine.items())
        raised = sum(v[0] == "error" for v in mine.values())
        aborted = sum(v[0] in ("aborted", "hung") for v in mine.values())
        items.append(
            f"{fw}: {len(mine)} probe cells; {n_silent} silent"
            + (f" ({n_meant} of them from variants meant to fail)" if n_meant else "")
            + f", {raised} clean errors, {aborted} process death{'s' if aborted != 1 else ''}. "
              f"Silent, not counting "
              f"variants meant to fail, on: " + (", ".join(silent) if silent else "nothing")
            + ".")
    for (impl_id, name), (outcome, rec) in outcomes.items():
        if outcome in ("aborted", "hung"):
            text, _ = cell_text(rec)
            death = worker_death(rec.error or "")
            detail = f" ({_short(death[1], 90)})" if death and death[1] else ""
            items.append(f"`{impl_id}` on `{name}`: {text}{detail}; the probe's other "
                         f"implementations raise or answer, and the run went on in a fresh "
                         f"worker.")
    # Probes where implementations split between raising and answering silently.
    for name in _planned_probes(run):
        cells = {k[0]: v[0] for k, v in outcomes.items() if k[1] == name}
        silent = [i for i, o in cells.items() if o == "silent"]
        raised = [i for i, o in cells.items() if o == "error"]
        if silent and raised:
            items.append(f"`{name}`: {len(raised)} implementations raise, {len(silent)} answer "
                         f"silently ({_ids(_impl_order(silent)[:6])}"
                         f"{', ...' if len(silent) > 6 else ''}).")
    # Silent wrong answers where a right answer is defined (the worst kind).
    for name in _planned_probes(run):
        probe = edge_cases.get(name)
        if not probe.defined:
            continue
        eligible = [k[0] for k in outcomes if k[1] == name and k[0] not in meant]
        wrong = [i for i in eligible if outcomes[(i, name)][0] == "silent"]
        if wrong:
            texts = {cell_text(outcomes[(i, name)][1])[0] for i in wrong}
            who = ("every implementation" if len(wrong) == len(eligible)
                   else _ids(_impl_order(wrong)))
            items.append(f"`{name}` (right answer: {probe.meaning or 'the float64 reference'}): "
                         f"{who} answer{'s' if who == 'every implementation' else ''} wrongly "
                         f"without an error ({'; '.join(sorted(texts))}).")
    return items


def _meant_to_fail() -> set[str]:
    return {i.id for i in all_impls() if i.expected_failure}


def _probe_rank(name: str) -> int:
    names = [p.name for p in edge_cases.PROBES]
    return names.index(name) if name in names else len(names)


# --------------------------------------------------------------------------------------------
# Semantics


def _fmt_values(values) -> str:
    def one(v, digits):
        return "NaN" if v is None or v != v else fmt_num(v, digits)

    if values is None:
        return "–"
    if len(values) == 1:
        return one(values[0], 5)
    shown = ", ".join(one(v, 4) for v in values[:6])
    return f"[{shown}{', ...' if len(values) > 6 else ''}]"


def _matches(values, candidates) -> list[str]:
    names = []
    for f in candidates:
        if values is not None and len(f["value"]) == len(values) and np.allclose(
                np.asarray(values, float), np.asarray(f["value"], float), rtol=1e-4, atol=1e-6,
                equal_nan=True):
            names.append(f["name"])
    return names


def semantics_blocks(run) -> list:
    _, sem = _records(run)
    entries = []
    for rec in sem:
        if rec.status != "ok":
            death = worker_death(rec.error or "")
            entries.append({"framework": rec.cell["framework"],
                            "failed": death[0] if death else rec.error})
            continue
        for e in rec.raw.get("semantics") or []:
            entries.append(e | {"framework": rec.cell["framework"]})
    blocks = [Heading(2, "Semantics side by side"),
              Para(f"One fixed input: {semantics.N} rows, {semantics.C} classes, float32 logits "
                   f"(seeded), labels {semantics.LABELS.tolist()}; ignored rows "
                   f"{list(semantics.IGNORED_ROWS)} (label -100); class weights "
                   f"{semantics.CLASS_WEIGHTS.tolist()}; label smoothing "
                   f"{semantics.SMOOTHING:g}; multi-hot rows with "
                   f"{semantics.MULTI_HOT.sum(axis=1).astype(int).tolist()} classes at 1. Each "
                   "cell is the framework's result and, after `=`, the float64 formula it "
                   "matches (`≠ every formula` when none).")]
    failed = [e for e in entries if "failed" in e]
    if failed:
        blocks.append(Bullets([f"{e['framework']}: the semantics worker failed: {e['failed']}"
                               for e in failed]))
    entries = [e for e in entries if "failed" not in e]
    if not entries:
        return blocks + [Para("No semantics records in this run (`--no-semantics`, or the "
                              "workers failed).")]
    formulas = semantics.formulas()
    notes = []
    for topic in semantics.TOPICS:
        apis = [a for a in SEMANTICS_APIS
                if any(e["api"] == a and e["topic"] == topic for e in entries)]
        options = list(dict.fromkeys(f["option"] for f in formulas if f["topic"] == topic))
        rows, marks = [], []
        for option in options:
            cands = [f for f in formulas if f["topic"] == topic and f["option"] == option]
            row = {"option": option,
                   "float64 formulas": "; ".join(f"{f['name']}: {_fmt_values(f['value'])}"
                                                 for f in cands)}
            mark = {}
            groups: dict[str, list[str]] = {}
            for api in apis:
                found = [e for e in entries if e["topic"] == topic and e["option"] == option
                         and e["api"] == api]
                if not found:
                    row[api] = "not offered"
                    mark[api] = "expected"
                    continue
                e = found[0]
                if e["value"] is None:
                    err = e["error"] or ""
                    row[api] = (_short(err, 70) if err.startswith("not offered")
                                else f"raises {_short(err, 60)}")
                    mark[api] = "expected" if err.startswith("not offered") else "clean"
                    continue
                names = _matches(e["value"], cands)
                row[api] = _fmt_values(e["value"]) + (f" = {names[0]}" if names
                                                       else " ≠ every formula")
                mark[api] = "" if names else "bad"
                groups.setdefault(names[0] if names else "no formula", []).append(api)
            if len(groups) > 1:
                notes.append(f"{topic}, {option}: " + "; ".join(
                    f"{name}: {', '.join(a for a in members)}" for name, members in groups.items()))
            rows.append(row)
            marks.append(mark)
        calls = sorted({(e["api"], e["call"]) for e in entries if e["topic"] == topic
                        and e["call"]})
        blocks += [Heading(3, topic), make_table(rows, marks, left=2),
                   Para("Calls: " + "; ".join(f"{a}: `{c}`" for a, c in calls))]
    blocks += [Heading(3, "Where the frameworks differ"),
               Bullets(notes or ["Every framework matches the same formula for every option."])]
    blocks += multi_hot_blocks()
    return blocks


def multi_hot_blocks() -> list:
    rows = [{"hot classes k": r["k"],
             "categorical CE: p per hot class at the optimum": fmt_num(r["cce_p"], 3),
             "categorical CE: lowest loss (k ln k)": f"{fmt_num(r['cce_loss'], 3)} "
                                                     f"({fmt_num(r['cce_min'], 3)})",
             "binary CE: p per hot class": fmt_num(r["bce_p"], 3),
             "binary CE: loss reached": fmt_num(r["bce_loss"], 2)}
            for r in semantics.optimum_table()]
    return [
        Heading(3, "Is categorical cross-entropy fit for multi-label targets?"),
        Para("On a multi-hot row every framework's categorical cross-entropy computes "
             "`-sum_j m_j log softmax(x)_j`: one softmax shared by all classes, so the k hot "
             "classes compete for one unit of probability. Its gradient is `k softmax(x) - m`, "
             "zero when each hot class gets 1/k: a model trained this way predicts 1/k per "
             "label (0.5 for two labels, 0.33 for three), never a confident 1, and its loss "
             "cannot go below k ln k. A 0.5 threshold then misses every label of a row with "
             "three or more. Binary cross-entropy gives each class its own sigmoid and drives "
             "every hot class to 1. Below: gradient descent in float64 on the free logits of "
             f"one row of {semantics.C} classes, from zero."),
        make_table(rows, left=1),
        Para("So no: categorical cross-entropy on multi-hot targets is a different objective "
             "(a distribution over labels, i.e. the soft-label loss of m / k up to the factor "
             "k), fit for ranking labels but not for independent yes/no decisions; use binary "
             "cross-entropy (`F.binary_cross_entropy_with_logits`, "
             "`optax.sigmoid_binary_cross_entropy`, `keras.losses.BinaryCrossentropy`). "
             "TensorFlow's fused `softmax_cross_entropy_with_logits` makes it worse: its "
             "gradient is `softmax(x) - m`, not `k softmax(x) - m`, so the gradient does not "
             "even belong to the loss it reports (see the multi-hot probe above)."),
    ]


# --------------------------------------------------------------------------------------------
# Documents


def summary_blocks(run) -> list:
    """The part of ``report.md``: legend, cross-framework summary, findings, link."""
    impls, probes = _planned_impls(run), _planned_probes(run)
    return [
        Heading(2, "Behaviour under bad input"),
        Para(f"{len(probes)} probes against {len(impls)} implementations: every probe of "
             "`xent_impls.edge_cases` handed to each framework exactly (odd dtypes and shapes "
             "included), forward and backward, in worker processes that may die without "
             "stopping the run. Full per-framework matrices, the probe catalogue and the "
             "semantics of each framework's options: [behaviour.md](behaviour.md) "
             "([HTML](behaviour.html))."),
        Heading(3, "How to read the cells"), Bullets(LEGEND),
        Heading(3, "What each framework does (native ops)"), summary_table(run),
        Heading(3, "Findings"), Bullets(findings(run)),
    ]


def full_blocks(run) -> list:
    """``behaviour.md``: everything."""
    meta = run.meta
    blocks = [Heading(1, f"Behaviour under bad input: {meta.get('run_id')}"),
              Para(f"Run `{meta.get('run_id')}` on `{meta.get('device')}` "
                   f"({(meta.get('machine') or {}).get('cpu_model', '?')}, "
                   f"{meta.get('threads')} threads). Provenance, cell status and errors: "
                   "[report.md](report.md).")]
    blocks += summary_blocks(run)[1:]
    blocks.append(Heading(2, "Per framework"))
    planned = _planned_impls(run)
    for fw in FRAMEWORKS:
        if any(i.startswith(fw + "/") for i in planned):
            blocks += [Heading(3, fw), framework_matrix(run, fw)]
    blocks += [Heading(2, "Probe catalogue"),
               Para("`bad input`: the checked mode (`xent_impls.evaluate(..., checked=True)`, "
                    "`xent_impls.checked(impl_id)`) refuses it with a ValueError naming the "
                    "value and position. `right answer`: what the oracle column is compared "
                    "with; `none defined`: any value returned without an error is silent."),
               catalogue_table()]
    blocks += semantics_blocks(run)
    blocks += [Heading(2, "Notes"),
               Bullets(["Each probe runs the forward+backward step (per-example loss and "
                        "the gradient of its mean by the framework's own autodiff) once, in "
                        "float32, on CPU unless the run says otherwise.",
                        "Compiled variants (torch.compile, jax.jit, XLA) compile each new probe "
                        "shape and dtype; torch.compile's recompile limit is raised so that no "
                        "probe silently falls back to eager.",
                        "Probes known to abort a process ("
                        + ", ".join(p.name for p in edge_cases.PROBES if p.may_abort)
                        + ") run last in each framework's worker."])]
    return blocks
