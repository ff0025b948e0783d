"""Semantics side by side: what each framework's cross-entropy options compute.

One fixed small input (6 rows, 5 classes, float32) and each framework's own options for
reductions, label smoothing, ignored labels, class weights, and multi-hot targets under
categorical versus binary cross-entropy, next to float64 formulas. ``xent-bench behaviour`` runs
:func:`run` in each framework's worker process (one ``semantics`` cell per framework) and the
behaviour report lays the results out side by side (``xent_bench/reports/behaviour_report.py``).

Every entry is ``{"topic", "option", "api", "call", "value": [floats] | None, "error": str |
None}``; an option a framework does not offer is an entry whose ``error`` says so (or the
exception the call raised), never a silent gap.
"""

from __future__ import annotations

import numpy as np

from xent_bench.harness.messages import clean_message

N, C = 6, 5
LABELS = np.array([0, 1, 2, 3, 4, 1], dtype=np.int64)
IGNORED_ROWS = (1, 4)
IGNORE = -100
# A zero weight on class 2 tells "sum(w l) / sum(w)", "sum(w l) / N" and "sum(w l) / count of
# non-zero weights" apart.
CLASS_WEIGHTS = np.array([1.0, 2.0, 0.0, 1.0, 3.0], dtype=np.float32)
SMOOTHING = 0.1
# Multi-hot rows with k = 1, 2, 3, 2, 1, 3 classes at 1.
MULTI_HOT = np.array([
    [1, 0, 0, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 0, 1, 1],
    [0, 0, 1, 0, 0],
    [1, 0, 1, 0, 1],
], dtype=np.float32)

TOPICS = ("reduction", "label smoothing", "ignored labels", "class weights", "multi-hot targets")


def logits() -> np.ndarray:
    rng = np.random.default_rng(2024)
    return (rng.standard_normal((N, C)) * 2.0).astype(np.float32)


def one_hot(labels=LABELS) -> np.ndarray:
    return np.eye(C, dtype=np.float32)[labels]


def ignored_labels(all_rows: bool = False) -> np.ndarray:
    y = LABELS.copy()
    y[list(range(N)) if all_rows else list(IGNORED_ROWS)] = IGNORE
    return y


def _entry(topic, option, api, call, fn) -> dict:
    try:
        value = np.asarray(fn(), dtype=np.float64).reshape(-1).tolist()
        return {"topic": topic, "option": option, "api": api, "call": call, "value": value,
                "error": None}
    except Exception as exc:  # noqa: BLE001 - what a framework does with an option is a result
        message = clean_message(f"{type(exc).__name__}: {exc}")[:300]
        return {"topic": topic, "option": option, "api": api, "call": call, "value": None,
                "error": message}


def _absent(topic, option, api, why) -> dict:
    return {"topic": topic, "option": option, "api": api, "call": "", "value": None,
            "error": f"not offered: {why}"}


# --------------------------------------------------------------------------------------------
# Float64 formulas


def _logp(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def formulas() -> list[dict]:
    """The float64 candidates each option is compared with: ``{"topic", "option", "name",
    "formula", "value"}``; an option may have several (the conventions frameworks choose
    between), and a framework's value is labelled with the one it matches."""
    x = logits()
    logp = _logp(x)
    t = one_hot()
    per = -(t * logp).sum(axis=1)
    out = []

    def add(topic, option, name, formula, value):
        out.append({"topic": topic, "option": option, "name": name, "formula": formula,
                    "value": np.asarray(value, np.float64).reshape(-1).tolist()})

    add("reduction", "none", "per-example", "l_i = -log softmax(x_i)[y_i]", per)
    add("reduction", "mean", "mean", "sum_i l_i / N", per.mean())
    add("reduction", "sum", "sum", "sum_i l_i", per.sum())

    eps = SMOOTHING
    for option in ("sparse labels, mean", "one-hot targets, mean"):
        add("label smoothing", option, "eps/C", "t' = (1 - eps) t + eps / C",
            -(((1 - eps) * t + eps / C) * logp).sum(axis=1).mean())
        off = np.where(t == 1, 1 - eps, eps / (C - 1))
        add("label smoothing", option, "eps/(C-1)", "t' = 1 - eps on y, eps / (C - 1) elsewhere",
            -(off * logp).sum(axis=1).mean())
        add("label smoothing", option, "no smoothing", "eps ignored", per.mean())

    keep = np.ones(N, bool)
    keep[list(IGNORED_ROWS)] = False
    kept = np.where(keep, per, 0.0)
    add("ignored labels", "per-example", "0 on ignored rows", "l_i, 0 where y_i = -100", kept)
    add("ignored labels", "mean", "mean over kept rows", "sum_kept l_i / #kept",
        kept.sum() / keep.sum())
    add("ignored labels", "mean", "mean over all rows", "sum_kept l_i / N", kept.sum() / N)
    add("ignored labels", "mean, every row ignored", "0/0", "undefined: NaN", np.nan)
    add("ignored labels", "mean, every row ignored", "0", "0 (empty sum)", 0.0)

    w = CLASS_WEIGHTS.astype(np.float64)[LABELS]
    add("class weights", "mean", "weighted mean", "sum_i w_yi l_i / sum_i w_yi",
        (w * per).sum() / w.sum())
    add("class weights", "mean", "over N", "sum_i w_yi l_i / N", (w * per).sum() / N)
    add("class weights", "mean", "over non-zero weights", "sum_i w_yi l_i / #(w_yi != 0)",
        (w * per).sum() / np.count_nonzero(w))
    add("class weights", "sum", "weighted sum", "sum_i w_yi l_i", (w * per).sum())

    m = MULTI_HOT.astype(np.float64)
    cce = -(m * logp).sum(axis=1)
    bce_el = np.logaddexp(0.0, x.astype(np.float64)) - m * x.astype(np.float64)
    add("multi-hot targets", "categorical CE, per-example", "sum over hot classes",
        "-sum_j m_j log softmax(x)_j (one softmax shared by all classes)", cce)
    add("multi-hot targets", "binary CE, per-example", "mean over classes",
        "mean_j [softplus(x_j) - m_j x_j] (an independent sigmoid per class)", bce_el.mean(axis=1))
    add("multi-hot targets", "categorical CE, mean", "mean", "mean_i of the categorical CE",
        cce.mean())
    add("multi-hot targets", "binary CE, mean", "mean over N x C",
        "mean over all N x C elements", bce_el.mean())
    return out


def optimum_table(max_k: int = 4, classes: int = C, steps: int = 3000, lr: float = 1.0) -> list:
    """What each loss drives a model towards on one multi-hot row with ``k`` hot classes: the
    probability given to each hot class at the optimum (found by gradient descent on free
    logits in float64, from zero) and the loss reached."""
    rows = []
    for k in range(1, max_k + 1):
        m = np.zeros(classes)
        m[:k] = 1.0
        x = np.zeros(classes)
        for _ in range(steps):  # categorical: grad = k * softmax - m
            p = np.exp(x - x.max())
            p /= p.sum()
            x -= lr * (k * p - m)
        p = np.exp(x - x.max())
        p /= p.sum()
        cce_p, cce_loss = p[0], -(m * np.log(p)).sum()
        z = np.zeros(classes)
        for _ in range(steps):  # binary: grad = sigmoid - m
            z -= lr * (1 / (1 + np.exp(-z)) - m)
        s = 1 / (1 + np.exp(-z))
        bce_loss = float(np.mean(np.logaddexp(0, z) - m * z))
        rows.append({"k": k, "cce_p": float(cce_p), "cce_loss": float(cce_loss),
                     "cce_min": float(k * np.log(k)), "bce_p": float(s[0]),
                     "bce_loss": bce_loss})
    return rows


# --------------------------------------------------------------------------------------------
# Frameworks (each imported only inside its worker)


def _torch() -> list[dict]:
    import torch
    import torch.nn.functional as F

    x, y, t = torch.from_numpy(logits()), torch.from_numpy(LABELS), torch.from_numpy(one_hot())
    yi, yall = torch.from_numpy(ignored_labels()), torch.from_numpy(ignored_labels(True))
    w, m = torch.from_numpy(CLASS_WEIGHTS), torch.from_numpy(MULTI_HOT)
    api = "torch.nn.functional"
    ce = "F.cross_entropy"
    e = [
        _entry("reduction", "none", api, f"{ce}(x, y, reduction='none')",
               lambda: F.cross_entropy(x, y, reduction="none")),
        _entry("reduction", "mean", api, f"{ce}(x, y)", lambda: F.cross_entropy(x, y)),
        _entry("reduction", "sum", api, f"{ce}(x, y, reduction='sum')",
               lambda: F.cross_entropy(x, y, reduction="sum")),
        _entry("label smoothing", "sparse labels, mean", api, f"{ce}(x, y, label_smoothing=0.1)",
               lambda: F.cross_entropy(x, y, label_smoothing=SMOOTHING)),
        _entry("label smoothing", "one-hot targets, mean", api,
               f"{ce}(x, onehot, label_smoothing=0.1)",
               lambda: F.cross_entropy(x, t, label_smoothing=SMOOTHING)),
        _entry("ignored labels", "per-example", api,
               f"{ce}(x, y, ignore_index=-100, reduction='none')",
               lambda: F.cross_entropy(x, yi, ignore_index=IGNORE, reduction="none")),
        _entry("ignored labels", "mean", api, f"{ce}(x, y, ignore_index=-100)",
               lambda: F.cross_entropy(x, yi, ignore_index=IGNORE)),
        _entry("ignored labels", "mean, every row ignored", api,
               f"{ce}(x, y_all_ignored, ignore_index=-100)",
               lambda: F.cross_entropy(x, yall, ignore_index=IGNORE)),
        _entry("class weights", "mean", api, f"{ce}(x, y, weight=w)",
               lambda: F.cross_entropy(x, y, weight=w)),
        _entry("class weights", "sum", api, f"{ce}(x, y, weight=w, reduction='sum')",
               lambda: F.cross_entropy(x, y, weight=w, reduction="sum")),
        _entry("multi-hot targets", "categorical CE, per-example", api,
               f"{ce}(x, multihot, reduction='none')",
               lambda: F.cross_entropy(x, m, reduction="none")),
        _entry("multi-hot targets", "binary CE, per-example", api,
               "F.binary_cross_entropy_with_logits(x, multihot, reduction='none').mean(1)",
               lambda: F.binary_cross_entropy_with_logits(x, m, reduction="none").mean(1)),
        _entry("multi-hot targets", "categorical CE, mean", api, f"{ce}(x, multihot)",
               lambda: F.cross_entropy(x, m)),
        _entry("multi-hot targets", "binary CE, mean", api,
               "F.binary_cross_entropy_with_logits(x, multihot)",
               lambda: F.binary_cross_entropy_with_logits(x, m)),
    ]
    return e


def _jax() -> list[dict]:
    import jax.numpy as jnp
    import optax

    x, y, t = jnp.asarray(logits()), jnp.asarray(LABELS, jnp.int32), jnp.asarray(one_hot())
    yi = jnp.asarray(ignored_labels(), jnp.int32)
    keep = yi != IGNORE
    keep_none = jnp.zeros(N, bool)
    safe = jnp.where(keep, yi, 0)
    w, m = jnp.asarray(CLASS_WEIGHTS), jnp.asarray(MULTI_HOT)
    api = "optax"
    sce = "optax.softmax_cross_entropy_with_integer_labels"
    per = optax.softmax_cross_entropy_with_integer_labels
    return [
        _entry("reduction", "none", api, f"{sce}(x, y)", lambda: per(x, y)),
        _entry("reduction", "mean", api, f"{sce}(x, y).mean() (no reduction argument)",
               lambda: per(x, y).mean()),
        _entry("reduction", "sum", api, f"{sce}(x, y).sum()", lambda: per(x, y).sum()),
        _absent("label smoothing", "sparse labels, mean", api,
                "optax smooths one-hot targets (optax.smooth_labels), not integer labels"),
        _entry("label smoothing", "one-hot targets, mean", api,
               "optax.softmax_cross_entropy(x, optax.smooth_labels(onehot, 0.1)).mean()",
               lambda: optax.softmax_cross_entropy(x, optax.smooth_labels(t, SMOOTHING)).mean()),
        _entry("ignored labels", "per-example", api,
               f"{sce}(x, where(keep, y, 0), where=keep)",
               lambda: per(x, safe, where=keep)),
        _entry("ignored labels", "mean", api,
               f"{sce}(x, where(keep, y, 0), where=keep).mean()",
               lambda: per(x, safe, where=keep).mean()),
        _entry("ignored labels", "mean, every row ignored", api,
               f"{sce}(x, 0, where=all False).sum() / keep.sum()",
               lambda: per(x, jnp.zeros(N, jnp.int32), where=keep_none).sum() / keep_none.sum()),
        _entry("class weights", "mean", api, f"(w[y] * {sce}(x, y)).mean() (no weight argument)",
               lambda: (w[y] * per(x, y)).mean()),
        _entry("class weights", "sum", api, f"(w[y] * {sce}(x, y)).sum()",
               lambda: (w[y] * per(x, y)).sum()),
        _entry("multi-hot targets", "categorical CE, per-example", api,
               "optax.softmax_cross_entropy(x, multihot)",
               lambda: optax.softmax_cross_entropy(x, m)),
        _entry("multi-hot targets", "binary CE, per-example", api,
               "optax.sigmoid_binary_cross_entropy(x, multihot).mean(-1)",
               lambda: optax.sigmoid_binary_cross_entropy(x, m).mean(-1)),
        _entry("multi-hot targets", "categorical CE, mean", api,
               "optax.softmax_cross_entropy(x, multihot).mean()",
               lambda: optax.softmax_cross_entropy(x, m).mean()),
        _entry("multi-hot targets", "binary CE, mean", api,
               "optax.sigmoid_binary_cross_entropy(x, multihot).mean()",
               lambda: optax.sigmoid_binary_cross_entropy(x, m).mean()),
    ]


def _tensorflow() -> list[dict]:
    from xent_impls.backends.tf_loader import keras, tf

    x, y, t = tf.constant(logits()), tf.constant(LABELS), tf.constant(one_hot())
    yi, yall = tf.constant(ignored_labels()), tf.constant(ignored_labels(True))
    w, m = tf.constant(CLASS_WEIGHTS), tf.constant(MULTI_HOT)
    wy = tf.gather(w, y)
    L = keras.losses
    nn = tf.nn.sparse_softmax_cross_entropy_with_logits
    tfnn, k = "tf.nn", "keras"
    scce = "SparseCategoricalCrossentropy(from_logits=True"
    cce = "CategoricalCrossentropy(from_logits=True"
    v1 = tf.compat.v1.losses
    return [
        _entry("reduction", "none", tfnn,
               "tf.nn.sparse_softmax_cross_entropy_with_logits(y, x)",
               lambda: nn(labels=y, logits=x)),
        _entry("reduction", "mean", tfnn, "tf.reduce_mean(...) (no reduction argument)",
               lambda: tf.reduce_mean(nn(labels=y, logits=x))),
        _entry("reduction", "sum", tfnn, "tf.reduce_sum(...)",
               lambda: tf.reduce_sum(nn(labels=y, logits=x))),
        _entry("reduction", "none", k, f"{scce}, reduction=None)(y, x)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(y, x)),
        _entry("reduction", "mean", k, f"{scce})(y, x) (sum_over_batch_size)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True)(y, x)),
        _entry("reduction", "sum", k, f"{scce}, reduction='sum')(y, x)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(y, x)),
        _absent("label smoothing", "sparse labels, mean", tfnn, "tf.nn has no label smoothing"),
        _absent("label smoothing", "one-hot targets, mean", tfnn,
                "tf.nn has no label smoothing"),
        _entry("label smoothing", "sparse labels, mean", k, f"{scce}, label_smoothing=0.1)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True,
                                                       label_smoothing=SMOOTHING)(y, x)),
        _entry("label smoothing", "one-hot targets, mean", k, f"{cce}, label_smoothing=0.1)",
               lambda: L.CategoricalCrossentropy(from_logits=True,
                                                 label_smoothing=SMOOTHING)(t, x)),
        _entry("ignored labels", "per-example", tfnn,
               "tf.nn.sparse_softmax_cross_entropy_with_logits(y with -100, x)",
               lambda: nn(labels=yi, logits=x)),
        _entry("ignored labels", "per-example", k, f"{scce}, ignore_class=-100, reduction=None)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE,
                                                       reduction=None)(yi, x)),
        _entry("ignored labels", "mean", k, f"{scce}, ignore_class=-100)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True,
                                                       ignore_class=IGNORE)(yi, x)),
        _entry("ignored labels", "mean, every row ignored", k,
               f"{scce}, ignore_class=-100)(y_all_ignored, x)",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True,
                                                       ignore_class=IGNORE)(yall, x)),
        _entry("class weights", "mean", "tf.compat.v1.losses",
               "tf.compat.v1.losses.sparse_softmax_cross_entropy(y, x, weights=w[y])",
               lambda: v1.sparse_softmax_cross_entropy(y, x, weights=wy)),
        _entry("class weights", "mean", k, f"{scce})(y, x, sample_weight=w[y])",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True)(y, x,
                                                                         sample_weight=wy)),
        _entry("class weights", "sum", k, f"{scce}, reduction='sum')(y, x, sample_weight=w[y])",
               lambda: L.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")(
                   y, x, sample_weight=wy)),
        _entry("multi-hot targets", "categorical CE, per-example", tfnn,
               "tf.nn.softmax_cross_entropy_with_logits(multihot, x)",
               lambda: tf.nn.softmax_cross_entropy_with_logits(labels=m, logits=x)),
        _entry("multi-hot targets", "binary CE, per-example", tfnn,
               "reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(multihot, x), -1)",
               lambda: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=m, logits=x),
                                      axis=-1)),
        _entry("multi-hot targets", "categorical CE, per-example", k,
               f"{cce}, reduction=None)(multihot, x)",
               lambda: L.CategoricalCrossentropy(from_logits=True, reduction=None)(m, x)),
        _entry("multi-hot targets", "binary CE, per-example", k,
               "BinaryCrossentropy(from_logits=True, reduction=None)(multihot, x)",
               lambda: L.BinaryCrossentropy(from_logits=True, reduction=None)(m, x)),
        _entry("multi-hot targets", "categorical CE, mean", k, f"{cce})(multihot, x)",
               lambda: L.CategoricalCrossentropy(from_logits=True)(m, x)),
        _entry("multi-hot targets", "binary CE, mean", k,
               "BinaryCrossentropy(from_logits=True)(multihot, x)",
               lambda: L.BinaryCrossentropy(from_logits=True)(m, x)),
    ]


RUNNERS = {"torch": _torch, "jax": _jax, "tensorflow": _tensorflow}


def run(framework: str) -> list[dict]:
    """Every entry of ``framework`` (imports it)."""
    if framework not in RUNNERS:
        raise ValueError(f"no semantics for framework {framework!r}; known: {', '.join(RUNNERS)}")
    return RUNNERS[framework]()
