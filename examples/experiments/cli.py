"""argparse types and the options every example shares."""

from __future__ import annotations

import argparse
import os
import sys

import torch


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def bounded(kind, low, high):
    """An argparse type: ``kind`` (int or float) in ``[low, high]``, finite."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be a{'n integer' if kind is int else ' number'}, got {text}"
            ) from None
        if not (low <= value <= high):
            raise argparse.ArgumentTypeError(f"must lie in [{low:g}, {high:g}], got {text}")
        return value

    return parse


def folder(text: str) -> str:
    """A folder to create or use: refused when a file of that name exists."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return text


#: seeds go to random, numpy (which takes 32 bits) and torch
seed = bounded(int, 0, 2**32 - 1)


def device(text: str) -> str:
    try:
        parsed = torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} ({error})") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine")
    if parsed.type == "mps" and not (torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text}: runs on cpu, cuda or mps devices")
    return text


def add_common(parser: argparse.ArgumentParser, out: str) -> None:
    """--seed --device --threads --out --resume."""
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=out, help="output folder (metrics.json, figures, checkpoint.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")


def apply_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def add_compile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile the networks and the GP core: auto (default) when the run is long enough "
                        "for compiling to pay for itself (measured: about 6,000 steps of the papers' convolutional "
                        "networks; never the moving ball's MLPs) and a C++ compiler or Triton is "
                        "available")  # fmt: skip


COMPILE = {"auto": None, "on": True, "off": False}


def run_main(main, argv=None) -> None:
    """Run an example's ``main(argv)``; the library's training and data errors end it with their message and exit code
    1 instead of a traceback (they already say what happened and what to do)."""
    from gpytorch_vae.io import RunFolderBusy
    from gpytorch_vae.training import CheckpointError, DivergenceError, NonFiniteLossError

    try:
        main(argv)
    except (CheckpointError, DivergenceError, NonFiniteLossError, RunFolderBusy, OSError, ValueError,
            MemoryError) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
