"""The registered implementations, as plain data (no framework is imported here).

Each entry names its loss function as ``"module:function"``; the backend compiles the whole
step (forward, or forward + backward) when ``compiled`` is set.
"""

from __future__ import annotations

from xent_impls.impl import BACKEND_MODULES, Impl
from xent_impls.vocabulary import FORMS

ALL_FLOATS = ("float32", "float16", "bfloat16", "float64")
# JAX runs with 64-bit types disabled (its default) and Keras computes in its floatx (float32):
# neither would compute a float64 case in float64, so neither claims it.
NO_FLOAT64 = ("float32", "float16", "bfloat16")
GPU_AND_CPU = ("cpu", "cuda")

NAIVE_FAILURE = (
    "textbook -log(exp(x) / sum(exp(x))) without the max shift: exp overflows once a logit "
    "exceeds about 88 (float32/bfloat16) or 11 (float16), giving inf/NaN"
)
KERAS_PROBS_FAILURE = (
    "Keras clips probabilities to [1e-7, 1 - 1e-7] when from_logits=False: every loss above "
    "-log(1e-7) = 16.1 is capped and its gradient is lost"
)


def _impl(framework, variant, form, entry, description, *, compiled=False, failure=None,
          dtypes=ALL_FLOATS, devices=GPU_AND_CPU, module=None, requires=(),
          interpreted_on=()) -> Impl:
    module = module or BACKEND_MODULES[framework]
    return Impl(
        id=f"{framework}/{variant}/{form}",
        framework=framework,
        form=form,
        variant=variant,
        compiled=compiled,
        dtypes=dtypes,
        devices=devices,
        description=description,
        entry=f"{module}:{entry}",
        expected_failure=failure,
        requires=requires,
        interpreted_on=interpreted_on,
    )


def _both_forms(framework, variant, entry_stem, description, **kw) -> list[Impl]:
    return [
        _impl(framework, variant, form, f"{entry_stem}_{form}", description, **kw)
        for form in FORMS
    ]


IMPLS: tuple[Impl, ...] = tuple(
    # NumPy: the float64 oracle itself, registered like any other implementation.
    _both_forms("numpy", "reference", "reference",
                "float64 oracle: stable log-sum-exp in float64, analytic gradient",
                devices=("cpu",))
    # PyTorch
    + _both_forms("torch", "native", "native",
                  "F.cross_entropy with class indices / probability targets, eager")
    + _both_forms("torch", "manual", "manual", "-(target * F.log_softmax(x)), eager")
    + _both_forms("torch", "naive", "naive", "-log(exp(x) / exp(x).sum()), eager",
                  failure=NAIVE_FAILURE)
    + _both_forms("torch", "compiled", "native", "torch.compile of F.cross_entropy",
                  compiled=True)
    # JAX (jit unless the variant says eager)
    + _both_forms("jax", "optax", "optax",
                  "optax.softmax_cross_entropy_with_integer_labels / softmax_cross_entropy, "
                  "under jax.jit", compiled=True, dtypes=NO_FLOAT64)
    + _both_forms("jax", "optax-eager", "optax", "optax cross-entropy, op by op (no jit)",
                  dtypes=NO_FLOAT64)
    + _both_forms("jax", "manual", "manual", "-(target * jax.nn.log_softmax(x)), under jax.jit",
                  compiled=True, dtypes=NO_FLOAT64)
    + _both_forms("jax", "naive", "naive", "-log(exp(x) / exp(x).sum()), under jax.jit",
                  compiled=True, failure=NAIVE_FAILURE, dtypes=NO_FLOAT64)
    # TensorFlow
    + _both_forms("tensorflow", "native", "native",
                  "tf.nn.sparse_softmax_cross_entropy_with_logits / "
                  "softmax_cross_entropy_with_logits, eager")
    + _both_forms("tensorflow", "native-xla", "native",
                  "tf.nn softmax cross-entropy under tf.function(jit_compile=True)",
                  compiled=True)
    + _both_forms("tensorflow", "keras", "keras",
                  "Keras (Sparse)CategoricalCrossentropy(from_logits=True), eager; "
                  "Keras casts 16-bit inputs to float32 and returns a float32 loss",
                  dtypes=NO_FLOAT64)
    + _both_forms("tensorflow", "keras-xla", "keras",
                  "Keras (Sparse)CategoricalCrossentropy(from_logits=True) under XLA",
                  compiled=True, dtypes=NO_FLOAT64)
    + _both_forms("tensorflow", "keras-probs", "keras_probs",
                  "Keras (Sparse)CategoricalCrossentropy(from_logits=False) fed tf.nn.softmax(x)",
                  failure=KERAS_PROBS_FAILURE, dtypes=NO_FLOAT64)
    # Fused and chunked (xent_impls/fused): logits read once, gradient written once, extra memory
    # of one block. Kernels with an interpreter run on the CPU for agreement only.
    + _both_forms("torch", "chunked", "chunked",
                  "blocked plain PyTorch: per block of rows max, exp into the gradient, sum, "
                  "scale in place; gradient computed with the loss (xent_impls.fused)",
                  module="xent_impls.fused.torch_chunked")
    + _both_forms("torch", "fused-compiled", "compiled",
                  "the fused loss-and-gradient formula compiled by torch.compile (Inductor): "
                  "per-row loops, gradient computed with the loss (xent_impls.fused)",
                  module="xent_impls.fused.torch_compiled", dtypes=NO_FLOAT64)
    + _both_forms("torch", "triton", "triton",
                  "fused Triton kernel: online log-sum-exp, gradient written in the same pass, "
                  "2-D blocks for small C; CPU through TRITON_INTERPRET=1 (agreement only)",
                  module="xent_impls.fused.torch_triton", dtypes=NO_FLOAT64, devices=("cuda",),
                  requires=("triton",), interpreted_on=("cpu",))
    + _both_forms("jax", "chunked", "chunked",
                  "pure JAX, online log-sum-exp over vocabulary chunks (lax.scan), custom VJP "
                  "recomputing exp per chunk; under jax.jit",
                  module="xent_impls.fused.jax_chunked", compiled=True, dtypes=NO_FLOAT64)
    + _both_forms("jax", "pallas", "pallas",
                  "Pallas kernels (forward statistics, backward recomputes exp), custom VJP; "
                  "CPU through interpret=True (agreement only)",
                  module="xent_impls.fused.jax_pallas", compiled=True, dtypes=NO_FLOAT64,
                  devices=("cuda",), interpreted_on=("cpu",))
    + _both_forms("tensorflow", "chunked-xla", "chunked",
                  "online log-sum-exp over vocabulary chunks with tf.custom_gradient, under "
                  "tf.function(jit_compile=True)",
                  module="xent_impls.fused.tf_chunked", compiled=True, dtypes=NO_FLOAT64)
)
