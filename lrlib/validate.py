"""Argument checks shared by every lrlib module: one policy, one wording.

Used throughout the library (introduced with the first checked function, in notebook
``00_welcome``). The policy:

* a value of the wrong **type** raises ``TypeError``;
* a value of the right type but outside what is allowed raises ``ValueError``;
* the message names the argument, shows the value that was given and says what is
  allowed: ``rank must be an int between 1 and 64, got 0``.

``bool`` is a subclass of ``int`` in Python, so ``True`` would pass an ``isinstance(x,
int)`` test; every check here refuses booleans where a number is expected. Each function
returns the value it checked, so a constructor can write ``self.rank = check_int(rank,
"rank", minimum=1)``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_int", "check_number", "check_bool", "check_choice", "check_tensor",
           "check_type", "check_positive_ints", "check_finite"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"an int between {minimum} and {maximum}"
    if minimum == 1:
        return "a positive int"
    if minimum == 0:
        return "a non-negative int"
    if minimum is not None:
        return f"an int >= {minimum}"
    if maximum is not None:
        return f"an int <= {maximum}"
    return "an int"


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` if it is an int (not a bool) with ``minimum <= value <= maximum``."""
    allowed = _int_range(minimum, maximum)
    if not _is_int(value):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def _interval(low, high, low_open, high_open) -> str:
    if low is None and high is None:
        return "a number"
    if high is None:
        return f"a number {'>' if low_open else '>='} {low}"
    if low is None:
        return f"a number {'<' if high_open else '<='} {high}"
    return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_number(value, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` if it is a finite int or float (not a bool) inside the interval from
    ``low`` to ``high`` (each end closed unless ``low_open`` / ``high_open``)."""
    allowed = _interval(low, high, low_open, high_open)
    if not _is_number(value):
        raise TypeError(f"{name} must be {allowed}, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and (value >= high if high_open else value > high)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """``value`` if it is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def check_choice(value, name: str, choices) -> str:
    """``value`` if it is one of ``choices`` (a tuple of strings)."""
    choices = tuple(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_type(value, name: str, types, what: str | None = None):
    """``value`` if it is an instance of ``types`` (a class or a tuple of classes);
    ``what`` describes them in the message (default: their names)."""
    if not isinstance(value, types):
        if what is None:
            classes = types if isinstance(types, tuple) else (types,)
            what = " or ".join(_class_name(c) for c in classes)
        raise TypeError(f"{name} must be {what}, got {_shown(value)}")
    return value


def _shown(value) -> str:
    """A short description of a wrong value: its repr for plain values, else its type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return f"{value!r} ({type(value).__name__})"
    return type(value).__name__


def _class_name(cls) -> str:
    module = cls.__module__
    if module.startswith("torch.nn"):
        return f"an nn.{cls.__name__}"
    if module == "torch":
        return f"a torch.{cls.__name__}"
    return f"a {cls.__name__}"


def check_finite(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """``tensor`` if it has no NaN or Inf entries."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or Inf values; only finite values are allowed")
    return tensor


def check_tensor(value, name: str, *, ndim: int | None = None, finite: bool = False) -> torch.Tensor:
    """``value`` if it is a torch.Tensor, with ``ndim`` dimensions when given, and only
    finite entries when ``finite``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if finite:
        check_finite(value, name)
    return value


def check_positive_ints(values, name: str, *, length: int | None = None) -> tuple:
    """``values`` as a tuple if it is a non-empty sequence of positive ints (of
    ``length`` entries when given), e.g. a shape or a list of layer widths."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of positive ints, got {values!r}")
    values = tuple(values)
    if not values or (length is not None and len(values) != length):
        count = "a non-empty sequence of" if length is None else f"{length}"
        raise ValueError(f"{name} must be {count} positive ints, got {values!r}")
    for i, value in enumerate(values):
        check_int(value, f"{name}[{i}]", minimum=1)
    return values
