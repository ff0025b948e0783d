"""One module per framework behind one interface (each imports its framework on import).

Every backend module provides:

- ``FRAMEWORK``: its name; ``SYNC_METHOD``: how a timing waits for completed work.
- ``versions() -> dict[str, str]``: versions of the framework's packages.
- ``configure(threads: int) -> str``: set the CPU thread count; returns what was applied.
- ``has_device(device) -> bool`` and ``device_name(device) -> str``.
- ``to_framework(array, device, keep_dtype=False)`` and ``to_numpy(x)``: exact conversions
  of NumPy arrays; integer labels take the framework's label dtype unless ``keep_dtype``.
- ``make_step(impl, grad, device)``: a callable ``(logits, targets)`` returning the per-example
  loss ``[N]``, or with ``grad`` the pair (loss, gradient of the mean loss ``[N, C]``) computed by
  the framework's own autodiff; compiled as a whole when ``impl.compiled``.
- ``sync(out)``: block until ``out`` is computed.
- ``reset_peak_memory(device)``, ``peak_memory(device)`` and ``memory_in_use(device)``: allocator
  bytes on an accelerator (``None`` on CPU, where the harness measures resident memory).
- ``ceiling_ops(device, numel)``: copy, read-only and exp passes for the machine ceilings.
"""
