"""Counting, on any machine, the host synchronisations a piece of tensor code would cost on a GPU.

On CUDA a read of device data by the host (``.item()``, ``bool(t)``, ``.tolist()``, ``.cpu()``, ``.numpy()``) waits
for every queued kernel, and so do operations whose output size depends on the data (``nonzero``, boolean-mask
indexing, ``masked_select``, ``unique``). On a CPU nothing waits, so such code runs fine in tests and then stalls
a GPU. :class:`HostSyncCounter` records those calls while it is active — at the Python level (the methods that
read a tensor into host objects) and at the dispatcher level (the operators) — whatever the tensors' device.

What it cannot see: a ``.to("cpu")`` of a tensor already on the CPU (it is no operation there), so code on the
device path must move data with ``.to(device)`` of its input's device, never by naming the host.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

# Tensor methods that turn device data into host objects.
HOST_READS = ("tolist", "numpy", "cpu", "item", "__array__", "__bool__", "__int__", "__float__", "__index__")
# Operators that synchronise: a scalar read, or an output size that depends on the data.
SYNCING_OPS = (
    "aten._local_scalar_dense",
    "aten.nonzero",
    "aten.masked_select",
    "aten._unique",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.equal",
    "aten.is_nonzero",
)


@dataclass
class SyncCounts:
    """Host synchronisations seen, by the call that made them."""

    calls: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class _Operators(TorchDispatchMode):
    def __init__(self, counts: SyncCounts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in SYNCING_OPS:
            self.counts.calls[name] += 1
        elif name in ("aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"):
            # a boolean mask as an index becomes a nonzero (the kept count is data)
            indices = args[1] if len(args) > 1 else ()
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ()):
                self.counts.calls[f"{name} (boolean mask)"] += 1
        elif name == "aten.repeat_interleave" and (kwargs or {}).get("output_size") is None:
            self.counts.calls[name] += 1
        return func(*args, **(kwargs or {}))


class HostSyncCounter:
    """``with HostSyncCounter() as counts: ...`` then ``counts.total`` and ``counts.calls``.

    A host read and the operator it dispatches to (``.item()`` then ``_local_scalar_dense``) count once: the
    operator is not counted while a counted host read is running.
    """

    def __enter__(self) -> SyncCounts:
        self.counts = SyncCounts()
        self._operators = _Operators(self.counts)
        self._functions = _HostReads(self.counts)
        self._operators.__enter__()
        self._functions.__enter__()
        return self.counts

    def __exit__(self, *exc) -> None:
        self._functions.__exit__(*exc)
        self._operators.__exit__(*exc)


class _HostReads(TorchFunctionMode):
    def __init__(self, counts: SyncCounts):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name not in HOST_READS:
            return func(*args, **(kwargs or {}))
        before = Counter(self.counts.calls)
        result = func(*args, **(kwargs or {}))
        # the operator a host read dispatches to (item → _local_scalar_dense) is the same synchronisation
        before[f"Tensor.{name}"] += 1
        self.counts.calls = before
        return result
