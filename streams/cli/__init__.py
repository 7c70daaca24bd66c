"""The ``trackflow`` command line.

Subcommands are imported only when run, so ``trackflow stack up`` or ``trackflow simulate`` do not
pay for importing Faust, and one broken optional piece cannot take the whole CLI down.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

#: subcommand name -> "module:attribute" of its click command.
COMMANDS: dict[str, str] = {
    "worker": "trackflow.streams.cli.worker:worker",
    "produce": "trackflow.streams.cli.produce:produce",
    "consume": "trackflow.streams.cli.consume:consume",
    "dlq": "trackflow.streams.cli.dlq:dlq",
    "stack": "trackflow.streams.stack.cli:stack",
    "simulate": "trackflow.providers.simulator.cli:simulate",
    "top": "trackflow.streams.cli.top:top",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        return command  # type: ignore[no-any-return]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="trackflow")
def main() -> None:
    """trackflow: enrich music track metadata on Kafka."""


if __name__ == "__main__":  # pragma: no cover
    main()
