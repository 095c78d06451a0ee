"""Every command's ``--device`` is the one flag of ``engine.cli.flags``: each accepts cpu, cuda, cuda:N
and mps (and auto) and refuses anything else, parsed by the real ``superpos`` parser."""

from __future__ import annotations

import argparse

import pytest

from engine.cli.main import build_parser

DEVICES = ("auto", "cpu", "cuda", "cuda:0", "cuda:1", "mps")


def _commands_with_device():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        if any("--device" in a.option_strings for a in command._actions):
            yield name, command


def _argv(name: str, command: argparse.ArgumentParser, device: str) -> list[str]:
    """The command with a placeholder for each required argument (``1`` reads as a path or a number)."""
    argv = [name]
    for action in command._actions:
        if not action.option_strings and action.nargs not in ("?", "*"):
            argv.append("1")
        elif action.required:
            argv += [action.option_strings[0], "1"]
    return argv + ["--device", device]


COMMANDS = sorted(name for name, _ in _commands_with_device())


def test_the_commands_that_compute_all_take_a_device():
    assert {"run", "train-model", "train-sae", "eval", "analyze", "family", "cache-activations"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_device_flag_accepts_every_device_form(name):
    command = dict(_commands_with_device())[name]
    parser = build_parser()
    for device in DEVICES:
        assert parser.parse_args(_argv(name, command, device)).device == device
    with pytest.raises(SystemExit):
        parser.parse_args(_argv(name, command, "tpu"))
