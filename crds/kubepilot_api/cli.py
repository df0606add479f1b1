"""The ``kubepilot`` console script: a dispatcher over subcommands registered by components.

Each component registers ``name = "module:function"`` in the ``kubepilot.commands`` entry-point
group; the function takes the remaining argv and returns an exit code. The dispatcher loads only
the subcommand asked for, so a worker image never imports the gateway to print its help.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

ENTRY_POINT_GROUP = "kubepilot.commands"

Command = Callable[[list[str]], int]


def registered_commands() -> dict[str, EntryPoint]:
    """Every subcommand the installed components registered, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _usage(commands: dict[str, EntryPoint]) -> str:
    names = "\n".join(f"  {name}" for name in sorted(commands)) or "  (none installed)"
    return f"usage: kubepilot <command> [args...]\n\ncommands:\n{names}\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = registered_commands()
    if not args or args[0] in {"-h", "--help", "help"}:
        sys.stdout.write(_usage(commands))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    entry = commands.get(name)
    if entry is None:
        sys.stderr.write(f"kubepilot: unknown command {name!r}\n\n{_usage(commands)}")
        return 2
    command: Command = entry.load()
    return command(rest)


if __name__ == "__main__":
    raise SystemExit(main())
