"""A typer group whose verbs import their module only when that verb runs.

`endoseek --help` lists every verb from the one-line help declared next to its import path,
so listing the verbs, or running a verb that needs no model (`migrate`, `keys`, `jobs list`),
never imports torch, timm or scikit-learn through another verb's module. Only typer's public
classes are used at run time (typer >= 0.25 runs on its own copy of click).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter


@dataclass(frozen=True)
class LazyVerb:
    """A verb of the CLI: `target` is "module:attribute", a typer.Typer or a command function."""

    name: str
    target: str
    help: str  # one line, shown by `--help` without importing `target`

    def load(self) -> Command:
        """Import the target and build its click command (a group for a typer.Typer)."""
        module, _, attribute = self.target.partition(":")
        obj = getattr(importlib.import_module(module), attribute)
        if isinstance(obj, typer.Typer):
            command: Command = typer.main.get_group(obj)
        else:
            single = typer.Typer(add_completion=False)
            single.command(self.name)(obj)
            command = typer.main.get_command(single)
        command.name = self.name
        return command

    def listing(self) -> Command:
        """A stand-in that only carries the name and help, for `--help` and completion."""
        return TyperCommand(self.name, help=self.help, short_help=self.help)

    def unavailable(self, error: ImportError) -> Command:
        """A stand-in for a verb whose module cannot be imported: running it says why."""

        def explain(**_: Any) -> None:
            typer.echo(f"`{self.name}` is unavailable here: {error}", err=True)
            raise typer.Exit(1)

        return TyperCommand(
            self.name,
            help=self.help,
            callback=explain,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )


class LazyGroup(TyperGroup):
    """TyperGroup plus `verbs`, which load on first use (set by `lazy_group`)."""

    verbs: ClassVar[dict[str, LazyVerb]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False

    @contextmanager
    def _names_only(self) -> Iterator[None]:
        self._listing = True
        try:
            yield
        finally:
            self._listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self.commands, *(name for name in self.verbs if name not in self.commands)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = self.commands.get(cmd_name)
        verb = self.verbs.get(cmd_name)
        if command is not None or verb is None:
            return command
        if self._listing:
            return verb.listing()
        try:
            command = verb.load()
        except ImportError as exc:  # a missing optional package never breaks the other verbs
            command = verb.unavailable(exc)
        self.commands[cmd_name] = command
        return command

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        with self._names_only():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[Any]:
        with self._names_only():  # completing a verb's name imports no verb
            return super().shell_complete(ctx, incomplete)

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        name = args[0] if args else ""
        known = self.list_commands(ctx)
        if name and name not in known and not name.startswith("-") and not ctx.resilient_parsing:
            close = get_close_matches(name, known)  # typer's own hint sees only loaded verbs
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


def lazy_group(verbs: Iterable[LazyVerb]) -> type[LazyGroup]:
    """A LazyGroup subclass that knows `verbs` (pass it as `typer.Typer(cls=...)`)."""
    table = {verb.name: verb for verb in verbs}
    return type("EndoseekGroup", (LazyGroup,), {"verbs": table})
