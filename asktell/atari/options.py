"""The options of :class:`~asktell.atari.AtariTask`, declared once: its run-file settings
(``kind = "atari"``) and its constructor's keywords."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from asktell.config_base import Bool, Float, Int
from asktell.errors import ConfigError

from ._conv import conv_output_shape
from .network import NetworkOptions

__all__ = ["AtariTaskConfig"]


class AtariTaskConfig(NetworkOptions):
    """Run-file settings of :class:`AtariTask` (``kind = "atari"``).

    Also its constructor's keywords: the one declaration of its options."""

    kind: Literal["atari"] = "atari"
    env_id: str = Field(
        "ALE/Pong-v5",
        min_length=1,
        description="ALE environment id ('ALE/Pong-v5') or a bare game name ('Pong', "
        "'Breakout', 'space_invaders').",
    )
    frame_skip: Int = Field(4, ge=1, description="Emulator frames per agent step (max-pooled).")
    noop_max: Int = Field(
        30, ge=0, description="Episodes start after 1..noop_max random no-op frames (0: none)."
    )
    screen_size: Int = Field(84, ge=1, description="Side of the square grayscale observation.")
    frame_stack: Int = Field(4, ge=1, description="Frames stacked into one observation.")
    max_episode_frames: Int = Field(
        108_000,
        ge=1,
        description="Episode cap in emulator frames (108,000 = 30 minutes of play).",
    )
    repeat_action_probability: Float = Field(
        0.0, ge=0, le=1, description="Sticky actions (0: the DeepMind setting, deterministic)."
    )
    full_action_space: Bool = Field(
        False, description="All 18 actions instead of the game's minimal set."
    )
    fire_reset: Bool = Field(
        False, description="Press FIRE for one agent step after reset (Breakout and the like)."
    )
    reference_batch_size: Int = Field(
        128, ge=2, description="Observations in the VBN reference batch."
    )
    reference_probability: Float = Field(
        0.05,
        gt=0,
        le=1,
        description="Random play keeps each observation for the reference batch with this "
        "probability (smaller: spread over more of the game, slower to collect).",
    )
    episodes: Int = Field(1, ge=1, description="Episodes per candidate; its return is their mean.")
    mirrored_episode_seeds: Bool = Field(
        True, description="Mirrored candidates k and ~k share their episode seeds."
    )
    seed: Int = Field(
        0, ge=0, description="Run seed: episode seeds and the VBN reference batch derive from it."
    )
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments of gymnasium.make (e.g. mode, difficulty).",
    )

    @model_validator(mode="after")
    def _network_fits_screen(self) -> "AtariTaskConfig":
        """The network's convolutions must fit the `screen_size` x `screen_size` frames."""
        try:
            conv_output_shape(
                (self.frame_stack, self.screen_size, self.screen_size), self.convolutions()
            )
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build(self) -> Any:
        """The live :class:`AtariTask` (the class these options are declared for)."""
        return self.plugin(**self.options())
