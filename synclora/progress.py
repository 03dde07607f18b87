"""How long-running work reports progress: `progress(fraction, label)`, fraction in [0, 1]. One type for the backends,
the sync report and the LTX recipe, so the CLI's bar and the app's progress read them all the same way."""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, label: str) -> None:
    """The default: nobody is watching."""
