"""Plugins written against an interface ebmkit has replaced keep working through adapters, with one
warning per class; docs/plugins.md ("Migrating") says what to change."""

from __future__ import annotations

import inspect
import warnings


class InterfaceWarning(FutureWarning):
    """A plugin uses an interface ebmkit has replaced: it works through an adapter for now."""


_WARNED: set = set()


def warn_once(owner: type, change: str) -> None:
    """One InterfaceWarning per class and change, naming both and where the migration is described."""
    if (owner, change) not in _WARNED:
        _WARNED.add((owner, change))
        warnings.warn(f"{owner.__module__}.{owner.__qualname__}: {change}; it works through an adapter for now "
                      "(docs/plugins.md, 'Migrating')", InterfaceWarning, stacklevel=3)


def takes_negatives(method) -> bool:
    """Whether a loss method has the signature from before the sample record: the negatives
    where the record now goes."""
    return "negatives" in inspect.signature(method).parameters
