"""The Dask evaluator's options, declared once: :class:`DaskEvaluatorConfig` (its run-file
settings, ``kind = "dask"``, and :class:`~asktell.evaluators.dask.DaskEvaluator`'s keywords)
and the ``[evaluator.stragglers]`` sub-table, :class:`StragglersConfig`.

Import direction (see :mod:`asktell.evaluators.dask`)::

    dask.py  ->  _dask_options.py  ->  _dask_link.py    (the field types of a live client,
                                                         a security object, the dashboard)
                                   ->  _dask_quorum.py  (the straggler rule, ``Quorum``)

The documented validators are the rules between options (an address or a client, options
only the embedded cluster takes, TLS files together, stragglers alone); :meth:`check_run`
the rules against the rest of a run file. Nothing here starts or reaches a cluster.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from asktell._extras import require
from asktell.config_base import Bool, Float, Int, PluginConfig, StrictModel
from asktell.errors import ConfigError
from asktell.protocol import Task

from ._common import CandidateTimeout
from ._dask_quorum import Quorum

__all__ = ["DaskEvaluatorConfig", "StragglersConfig"]



# -- field types that need distributed objects or addresses ---------------------------


def _distributed_object(class_name: str) -> BeforeValidator:
    """A live ``distributed.<class_name>`` (Python only); distributed imported when one is given."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, getattr(require("distributed", "DaskEvaluator"), class_name)):
            raise PydanticCustomError(
                "distributed_object", "Input should be a distributed.{name}", {"name": class_name}
            )
        return value

    return BeforeValidator(check)


#: An existing ``distributed.Client`` (Python only; a run file names its ``address``).
DaskClient = Annotated[
    Any,
    _distributed_object("Client"),
    WithJsonSchema({"description": "a distributed.Client (Python only)"}),
]
#: A ``distributed.Security`` (Python only; a run file gives the ``tls_*`` files).
DaskSecurity = Annotated[
    Any,
    _distributed_object("Security"),
    WithJsonSchema({"description": "a distributed.Security (Python only)"}),
]


def _dashboard(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and re.fullmatch(r"[^\s:]*:\d+", value):
        # ":8787" would bind every interface; the embedded cluster keeps to loopback
        return "127.0.0.1" + value if value.startswith(":") else value
    raise PydanticCustomError("dashboard", "Input should be true, false or a 'host:port' address")


#: The embedded cluster's dashboard: on (at 127.0.0.1:8787), off, or at ``host:port``.
Dashboard = Annotated[bool | str, BeforeValidator(_dashboard)]


class StragglersConfig(StrictModel):
    """``[evaluator.stragglers]``: close a generation when enough has come back.

    The generation closes as soon as every threshold given is met by the candidates back
    (failed ones count); the chunks still out are cancelled, a rollout already running
    finishes and is ignored (stale), and the strategy learns from the candidates told
    only. See ``docs/stragglers.md`` for what this gives up.
    """

    min_candidates: Int | None = Field(
        None, ge=1, description="Close once this many candidates are back (at most the "
        "population; checked with the run)."
    )
    min_episodes: Int | None = Field(
        None, ge=1, description="Close once the candidates back ran this many episodes."
    )
    min_timesteps: Int | None = Field(
        None, ge=1, description="Close once the candidates back used this many environment "
        "steps (Salimans et al. 2017 pair it with min_episodes)."
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> StragglersConfig:
        """At least one of `min_candidates`, `min_episodes`, `min_timesteps` is given."""
        if self.min_candidates is None and self.min_episodes is None and self.min_timesteps is None:
            raise ValueError(
                "give at least one of min_candidates, min_episodes, min_timesteps (the "
                "generation closes when every one given is met); got none"
            )
        return self

    def quorum(self) -> Quorum:
        return Quorum(self.min_candidates, self.min_episodes, self.min_timesteps)


#: Options that configure the embedded cluster, with the value meaning "not given".
_EMBEDDED_ONLY = {
    "num_workers": None,
    "threads_per_worker": 1,
    "dashboard": False,
    "allowed_failures": None,
}


class DaskEvaluatorConfig(PluginConfig):
    """Run-file settings of :class:`DaskEvaluator` (``kind = "dask"``)."""

    kind: Literal["dask"] = "dask"
    address: str | None = Field(
        None,
        description="Scheduler address to connect to, e.g. 'tcp://10.0.0.5:8786'. Unset: "
        "start an embedded LocalCluster on this machine (loopback only).",
    )
    client: DaskClient | None = Field(
        None,
        exclude=True,
        description="Python only: an existing distributed.Client to use instead (left open "
        "by close()); may be passed by position, where a string is taken as the 'address'.",
    )
    num_workers: Int | None = Field(
        None, ge=1, description="Embedded cluster: worker processes (unset = CPU cores)."
    )
    threads_per_worker: Int = Field(
        1, ge=1, description="Embedded cluster: threads per worker process."
    )
    chunks_per_worker: Annotated[Int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Chunks of seeds per worker thread and generation: more balances uneven "
        "rollouts, fewer pays less of Dask's ~1.5 ms per task. 'auto': from the previous "
        "generation's compute time, one chunk per 50 ms of work per thread, 1 to 4, and "
        "no more than keeps the scheduler's time (~0.4 ms per task) within 5% of the "
        "generation's compute per thread (at least 1).",
    )
    retries: Int = Field(0, ge=0, description="Extra attempts for a candidate that raised.")
    on_failure: Literal["raise", "mark"] = Field(
        "raise",
        description="A candidate that raised after its retries, or killed its worker every "
        "time: stop naming it, or mark it failed (NaN, ranked worst) and go on.",
    )
    deadline_seconds: Float | None = Field(
        None,
        gt=0,
        description="Per-generation deadline: the candidate a late chunk is running then is "
        "marked failed (whatever on_failure says); the chunk's other candidates and the chunks "
        "queued behind it run again one per task, so one slow node cannot stall the run and "
        "only stragglers fail. Unset: wait for all.",
    )
    candidate_timeout_seconds: CandidateTimeout = None
    stragglers: StragglersConfig | None = Field(
        None,
        description="Straggler-tolerant generations: close a generation when the thresholds "
        "given (min_candidates, min_episodes, min_timesteps) are met, drop the rest and "
        "tell the strategy the candidates back only (it needs 'partial_tell': openai_es, "
        "snes, xnes). Chunks are then small (chunks_per_worker 'auto' means 8); in node mode "
        "each node closes on its share of the thresholds (docs/stragglers.md). The told "
        "subset depends on timing and is recorded in the log and checkpoints; see "
        "docs/stragglers.md. Unset: wait for every candidate.",
    )
    node_processes: Annotated[Int, Field(ge=1)] | Literal["auto"] | None = Field(
        None,
        description="Node mode: each Dask worker stands for a machine and runs its chunk on "
        "this many local processes ('auto': the worker machine's usable cores), with one "
        "noise table per machine in shared memory; one chunk per worker and generation "
        "(chunks_per_worker: per worker, 'auto' = 1). The embedded cluster then has "
        "num_workers=1 by default and non-daemonic workers; a connected cluster's workers "
        "must be non-daemonic (docs/dask.md 'Node-level mode'). Unset: one chunk or more "
        "per worker thread, run in the thread.",
    )
    remote_tell: Bool = Field(
        False,
        description="Distributed tell: the strategy's update sum of noise rows is summed on "
        "the workers, which hold the noise table, one part each of its gradient_parts "
        "(>= 2; openai_es, ars), the driver adding the parts in order: the same bits as "
        "the run on any evaluator. A part that fails is summed on the driver (same bits). "
        "See docs/distributed-tell.md.",
    )
    dashboard: Dashboard = Field(
        False,
        description="Embedded cluster: serve Dask's dashboard on 127.0.0.1:8787 (true; a "
        "free port if taken), or at the 'host:port' given.",
    )
    allowed_failures: Int | None = Field(
        None,
        ge=0,
        description="Embedded cluster: worker deaths a task may cause before Dask gives up "
        "on it (distributed.scheduler.allowed-failures; unset = Dask's default, 3).",
    )
    connect_timeout: Float = Field(
        30.0, gt=0, description="Seconds to reach the scheduler when connecting."
    )
    scheduler_timeout: Float = Field(
        30.0,
        gt=0,
        description="Seconds without an answer from the scheduler before a generation "
        "fails with an error (never a hang).",
    )
    worker_timeout: Float | None = Field(
        300.0,
        gt=0,
        description="Seconds a generation waits while the cluster has no worker at all "
        "(unset = for ever, e.g. while an HPC queue starts them).",
    )
    tls_ca_file: str | None = Field(
        None, description="TLS: CA certificate file (use with a 'tls://' address)."
    )
    tls_cert: str | None = Field(None, description="TLS: this client's certificate file.")
    tls_key: str | None = Field(None, description="TLS: this client's private key file.")
    security: DaskSecurity | None = Field(
        None,
        exclude=True,
        description="Python only: a distributed.Security for the connection or the embedded "
        "cluster, instead of the tls_* files.",
    )

    @model_validator(mode="before")
    @classmethod
    def _client_or_address(cls, data: Any) -> Any:
        """An existing cluster is named by `address` or (Python) `client`, not both; a
        string `client` is an address."""
        if not isinstance(data, dict):
            return data
        client, address = data.get("client"), data.get("address")
        if client is not None and address is not None:
            raise ValueError(
                f"give a 'client' or an 'address', not both; got client={client!r} and "
                f"address={address!r}"
            )
        if isinstance(client, str):
            return {**data, "client": None, "address": client}
        return data

    @model_validator(mode="after")
    def _embedded_only(self) -> DaskEvaluatorConfig:
        """`num_workers`, `threads_per_worker`, `dashboard` and `allowed_failures` configure
        the embedded cluster: they are refused with an `address` or a `client`."""
        if self.address is None and self.client is None:
            return self
        wrong = [name for name, unset in _EMBEDDED_ONLY.items() if getattr(self, name) != unset]
        if wrong:
            one = len(wrong) == 1
            where = (
                f"the cluster at {self.address!r}"
                if self.address is not None
                else "the given client's cluster"
            )
            raise ValueError(
                f"{', '.join(map(repr, wrong))} appl{'ies' if one else 'y'} only to the "
                f"embedded cluster, not to {where}: remove "
                f"{'it' if one else 'them'} and configure that cluster on its side"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_together(self) -> DaskEvaluatorConfig:
        """`tls_ca_file`, `tls_cert` and `tls_key` are given together, and not with a
        (Python) `security`."""
        given = [v is not None for v in (self.tls_ca_file, self.tls_cert, self.tls_key)]
        if any(given) and not all(given):
            raise ValueError("tls_ca_file, tls_cert and tls_key must be given together")
        if any(given) and self.security is not None:
            raise ValueError("give the tls_* files or a 'security', not both")
        scheme = (self.address or "").partition("://")[0] if "://" in (self.address or "") else ""
        if any(given) and (self.address is None or scheme != "tls"):
            raise ValueError(
                "the tls_* files secure the connection to a cluster at a 'tls://' address; "
                + ("the embedded cluster (no address) does not use them" if self.address is None
                   else f"got address {self.address!r}")
            )
        if scheme == "tls" and not any(given) and self.security is None:
            raise ValueError(
                f"a 'tls://' address ({self.address!r}) needs tls_ca_file, tls_cert and "
                "tls_key (or, from Python, a distributed.Security)"
            )
        return self

    @model_validator(mode="after")
    def _stragglers_alone(self) -> DaskEvaluatorConfig:
        """`stragglers` closes a generation on a quorum; `deadline_seconds` and
        `candidate_timeout_seconds` rerun late candidates to get every return: not both.
        With `node_processes`, each node closes on its share of the quorum."""
        if self.stragglers is not None:
            given = [
                name for name in ("deadline_seconds", "candidate_timeout_seconds")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(
                    f"'stragglers' cannot be combined with {' or '.join(map(repr, given))} "
                    "(a straggler-tolerant generation drops late candidates instead of "
                    "rerunning them); remove one"
                )
        return self

    def check_run(self, run: Any) -> None:
        """With `stragglers`: the run's strategy must learn from a subset
        ('partial_tell'), and `min_candidates` must not exceed its population. With
        `remote_tell`: the strategy has `gradient_parts` >= 2."""
        _check_remote_tell(self, run)
        if self.stragglers is None:
            return
        from asktell.registry import STRATEGIES

        kind = run.strategy.kind
        cls = STRATEGIES.get(kind)
        if "partial_tell" not in getattr(cls, "capabilities", ()):
            able = sorted(
                name for name in STRATEGIES.names()
                if "partial_tell" in getattr(STRATEGIES.get(name), "capabilities", ())
            )
            raise ValueError(
                f"'stragglers' drops the late candidates of a generation, but strategy "
                f"{kind!r} cannot learn from a subset of its population (no 'partial_tell' "
                f"capability); use one that can ({', '.join(map(repr, able))}) or remove "
                "[evaluator.stragglers]"
            )
        size = getattr(run.strategy, "population_size", None)
        need = self.stragglers.min_candidates
        if size is not None and need is not None and need > size:
            raise ValueError(
                f"stragglers.min_candidates={need} exceeds the population_size={size} of "
                f"strategy {kind!r}: a generation never has that many candidates; use at "
                f"most {size}"
            )

    def check_strategy(self, strategy: Any) -> None:
        """The built strategy's population (a default one too) must hold
        ``stragglers.min_candidates``: refused before the cluster starts or a run folder is
        made (check_run sees only a population the run file sets)."""
        size = getattr(strategy, "population_size", None)
        need = None if self.stragglers is None else self.stragglers.min_candidates
        if isinstance(size, int) and need is not None and need > size:
            raise ConfigError(
                f"evaluator.stragglers.min_candidates={need} exceeds the {size} candidates of "
                f"a generation of strategy {type(strategy).__name__} (its population_size); "
                f"use at most {size}"
            )

    def security_object(self) -> Any:
        """The ``distributed.Security`` to use: ``security``, or one built from the files."""
        if self.security is not None or self.tls_ca_file is None:
            return self.security
        for name in ("tls_ca_file", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if not os.path.isfile(path):
                raise ConfigError(f"evaluator.{name}: file {path!r} does not exist")
        distributed = require("distributed", "DaskEvaluator TLS")
        return distributed.Security(
            tls_ca_file=self.tls_ca_file,
            tls_client_cert=self.tls_cert,
            tls_client_key=self.tls_key,
            require_encryption=True,
        )

    def build(self, task: Task) -> Any:
        """The live :class:`~asktell.evaluators.dask.DaskEvaluator` (the class these options
        are declared for, set by ``declare_options``: no import back)."""
        return self.plugin(task, **self.options())



def _check_remote_tell(cfg: DaskEvaluatorConfig, run: Any) -> None:
    """`remote_tell` needs a strategy with the `gradient_parts` option set to 2 or more."""
    if not cfg.remote_tell:
        return
    from asktell.registry import STRATEGIES

    from ._dask_tell import remote_tell_refusal

    kind = run.strategy.kind
    capabilities = getattr(STRATEGIES.get(kind), "capabilities", ())
    refusal = remote_tell_refusal(kind, capabilities, getattr(run.strategy, "gradient_parts", None))
    if refusal is not None:
        raise ValueError(refusal)
