"""The shared half of the routers that are one torch network on the query embedding (``mf``, ``mlp``).

:class:`EmbeddingNetRouter` holds what they do alike: the training parameters and their checks,
the seeded fit (a validation split of the table's rows, parameter initialisation under
``seed``, minibatches with early stopping: :func:`~agentroute.routers.utility.train_early_stopping`),
the network's outputs on a batch of contexts, and the saved ``epochs_run`` and ``net.*`` arrays.
A subclass builds its network and its loss, and reads its predictions from the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from agentroute._optional import torch_module
from agentroute.outcomes import OutcomeTable
from agentroute.routers.base import check_range
from agentroute.routers.utility import (
    UtilityRouter,
    embed_contexts,
    load_module_arrays,
    module_arrays,
    train_early_stopping,
    validation_split,
)
from agentroute.types import RouteContext


class EmbeddingNetRouter(UtilityRouter):
    """A :class:`UtilityRouter` whose predictions are one torch module ``net_`` on the embedding.

    Subclasses take ``lr``, ``weight_decay``, ``epochs``, ``patience``, ``batch_size``,
    ``validation_fraction``, ``query_chars`` and ``seed`` as keyword parameters, name their
    network's size parameter in :attr:`size_param`, and implement :meth:`_net_from_arrays`.

    Fitted attributes: ``net_`` and ``epochs_run_``.
    """

    size_param: str  # the parameter of the network's width (an integer ≥ 1)

    lr: float
    weight_decay: float
    epochs: int
    patience: int
    batch_size: int
    validation_fraction: float
    query_chars: int | None
    seed: int
    net_: Any
    epochs_run_: int

    def _param_checks(self) -> dict[str, Callable[[], None]]:
        """The training parameters' checks, besides :class:`UtilityRouter`'s; subclasses add theirs."""

        checks: dict[str, Callable[[], None]] = {
            key: partial(check_range, self, key, low=1, integer=True)
            for key in (self.size_param, "epochs", "patience", "batch_size")
        }
        return {
            **super()._param_checks(),
            **checks,
            "lr": partial(check_range, self, "lr", low=0, low_open=True),
            "weight_decay": partial(check_range, self, "weight_decay", low=0),
            "validation_fraction": partial(
                check_range, self, "validation_fraction", low=0, high=1, low_open=True, high_open=True
            ),
        }

    def _train(self, table: OutcomeTable, make_net: Callable[[], Any], loss: Callable[[Any], Any]) -> None:
        """Build ``net_ = make_net()`` under ``seed`` and train it on a seeded split of ``table``'s
        rows; ``loss(rows)`` is the loss of a tensor of row indices."""
        torch = torch_module()
        tr, va = validation_split(len(table), self.validation_fraction, self.seed, scores=table.scores)
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net_ = make_net()
            self.epochs_run_ = train_early_stopping(
                self.net_,
                lambda rows: loss(tr_t[rows]),
                lambda: loss(va_t),
                n_train=len(tr),
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                weight_decay=self.weight_decay,
                patience=self.patience,
                seed=self.seed,
                desc=f"{self.name}: training on {len(tr)} queries",
            )

    def _net_outputs(self, ctxs: Sequence[RouteContext]) -> np.ndarray:
        """``net_`` on the contexts' query embeddings, as float64 (n × outputs)."""
        torch = torch_module()
        x = torch.from_numpy(embed_contexts(ctxs, self.query_chars).astype(np.float32))
        with torch.no_grad():
            return np.asarray(self.net_(x).double().numpy())

    def _net_from_arrays(self, arrays: dict[str, np.ndarray]) -> Any:
        """An untrained network shaped as the saved ``net.*`` arrays."""
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "epochs_run": self.epochs_run_}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.epochs_run_ = int(state["epochs_run"])

    def _own_arrays(self) -> dict[str, np.ndarray]:
        """The subclass's fitted arrays besides the network's (its :meth:`set_arrays` reads them)."""
        return {}

    def get_arrays(self) -> dict[str, np.ndarray]:
        """The means, :meth:`_own_arrays`, then ``net.*``: the order the routers always saved in, so
        that a seeded fit writes the same ``arrays.npz`` bytes (and ``arrays_sha256``) as before."""
        return {**super().get_arrays(), **self._own_arrays(), **module_arrays(self.net_)}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        super().set_arrays(arrays)
        self.net_ = self._net_from_arrays(arrays)
        load_module_arrays(self.net_, arrays)
