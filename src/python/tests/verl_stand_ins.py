"""verl's actor worker group as the verl tests run it: verl's own `WorkerGroup` binding and
dispatch (`register`'s data-parallel split, its collect) over workers that are objects in the
test's process, each around a stand-in for verl's training engine (the FSDP engine itself needs
a process group and a GPU)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from verl.single_controller.base.worker_group import WorkerGroup
from verl.single_controller.ray.base import func_generator


class Engine:
    """What `compute_flow_gamma` reads of verl's training engine (`self.actor.engine`): the
    module, `eval_mode()` and the Ulysses degree."""

    def __init__(self, module, ulysses=1):
        self.module, self.ulysses_sequence_parallel_size, self.modes = module, ulysses, []

    @contextlib.contextmanager
    def eval_mode(self):
        self.modes.append("eval")
        yield


class Group(WorkerGroup):
    """One worker of `worker_cls` per engine, data-parallel rank by rank; its methods bound as
    verl binds them (Ray's put and get are the caller's to make the identity)."""

    def __init__(self, worker_cls, engines):
        super().__init__(resource_pool=None)
        self._workers = []
        for rank, engine in enumerate(engines):
            worker = object.__new__(worker_cls)
            worker._Worker__dispatch_dp_rank, worker._Worker__collect_dp_rank = {}, {}
            worker._register_dispatch_collect_info("actor", dp_rank=rank, is_collect=True)  # as its init_model does
            worker.actor = SimpleNamespace(engine=engine)
            self._workers.append(worker)
        self._bind_worker_method(worker_cls, func_generator)

    def execute_all(self, method_name, *args, **kwargs):
        return [getattr(w, method_name)(*(a[i] for a in args), **{k: v[i] for k, v in kwargs.items()}) for i, w in enumerate(self._workers)]

    def execute_rank_zero(self, method_name, *args, **kwargs):
        return getattr(self._workers[0], method_name)(*args, **kwargs)
