"""Targets that mean solved: the record of one check of ``target_return`` on the centre, and
the episode streams that keep a confirmation (and checks after a run) on fresh episodes.

:class:`~asktell.loop.GenerationStep` runs the checks (see :mod:`asktell.loop`); this module
holds what they produce, so the runner can log and checkpoint it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["TargetCheck", "CONFIRM_STREAM", "FRESH_STREAM"]

#: Added to the generation that keys a centre plan's episode seeds for a target
#: confirmation: scheduled evaluations key them by the generation itself, which never gets
#: this large, so a confirmation's episodes are ones no scheduled evaluation uses.
CONFIRM_STREAM = 1 << 40
#: The same for checks made after a run (``asktell eval --fresh``, the example-claim
#: tests): fresh with respect to every evaluation the run itself made.
FRESH_STREAM = 1 << 41


@dataclasses.dataclass(frozen=True)
class TargetCheck:
    """One check of ``target_return`` on the centre.

    Attributes:
        generation: the generation whose centre was checked.
        target: the return to reach.
        episodes: episodes of each of the two evaluations.
        judged: the centre's mean over ``episodes`` episodes of the centre stream.
        confirmed: its mean over ``episodes`` fresh episodes (the
            :data:`CONFIRM_STREAM`), or ``None`` when ``judged`` fell short (not run), or
            when the caller asked for no confirmation (a deterministic function, where it
            would be the same value) and the check then counts ``judged``.
        confirm: whether a confirmation was required.
    """

    generation: int
    target: float
    episodes: int
    judged: float
    confirmed: float | None
    confirm: bool = True

    @property
    def solved(self) -> bool:
        if self.judged < self.target:
            return False
        if not self.confirm:
            return True
        return self.confirmed is not None and self.confirmed >= self.target

    @property
    def outcome(self) -> str:
        """``"solved"``, ``"not confirmed"`` (judged reached, fresh episodes did not) or
        ``"not reached"``."""
        if self.solved:
            return "solved"
        return "not confirmed" if self.judged >= self.target else "not reached"

    def message(self) -> str:
        text = (
            f"target_return reached: centre mean {self.judged:.6g} over {self.episodes} "
            f"episode(s) >= {self.target:g}"
        )
        if self.confirm:
            text += f", confirmed {self.confirmed:.6g} over {self.episodes} fresh episode(s)"
        return text + f" (generation {self.generation})"

    def row(self) -> dict[str, Any]:
        """The log-row fields of the check."""
        return {
            "target_check": self.outcome,
            "target_check_episodes": self.episodes,
            "target_check_return": self.judged,
            "target_confirm_return": self.confirmed,
        }

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> TargetCheck | None:
        return None if not state else cls(**state)
