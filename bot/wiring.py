"""Builds the outside-world pieces the commands need from the config and the environment."""

from __future__ import annotations

from rich.console import Console

from commands.config import CutoverConfig


def publisher_for(config: CutoverConfig, *, console: Console | None = None):
    return None  # GitHub evidence: wired once integrations/github.py lands (issue 6)
