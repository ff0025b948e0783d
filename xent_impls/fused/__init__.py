"""Fused and chunked cross-entropy implementations.

Each computes the loss from per-row statistics (row maximum and sum of exponentials, combined
online over blocks of the row) instead of materialising ``log_softmax``, and, when a gradient
is wanted, writes it in the same pass that reads the logits: every exponential is computed once,
the logits are read once and the gradient is written once (``2L`` bytes for ``L`` bytes of
logits). Extra memory is a block of rows, not a copy of the logits.

Modules (each imports its framework, so import them only through the registry):
  torch_autograd   the autograd wrapper shared by the PyTorch kernels
  torch_chunked    blocked plain PyTorch (any device)
  torch_triton     Triton kernels (CUDA; Triton's interpreter on CPU)
  jax_chunked      blocked pure JAX with a custom VJP (any device)
  jax_pallas       Pallas kernels (GPU; interpret mode on CPU)
  tf_chunked       blocked TensorFlow with a custom gradient, under XLA
"""
