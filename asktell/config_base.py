"""Base pieces of the pydantic configs that every plugin declares next to its class.

Each plugin class (strategy, evaluator, task) has a ``config_class``: a model with a
``kind: Literal["<registry name>"]`` field, every option declared once with a description,
and a ``build(...)`` method returning the live object. ``asktell.config`` assembles the
tagged unions of ``RunConfig`` from the registries, so registering a plugin is all it takes
to make its ``kind`` valid in run files.

Build signatures by family:

* strategy: ``build(*, num_params, seed, noise, x0=None) -> Strategy``
* evaluator: ``build(task) -> Evaluator``
* task: ``build() -> Task`` (the task exposes ``num_params``)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """Unknown keys are errors, NaN/inf are rejected, defaults are validated too."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, validate_default=True, validate_assignment=True
    )
