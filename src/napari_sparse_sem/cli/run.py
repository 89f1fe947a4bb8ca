"""``sparse-sem run PARAMS``: run a saved result again from its run record (:mod:`napari_sparse_sem.provenance`).

Every command is registered through :func:`recorded`, which makes its arguments the current run record; what the
command saves (a report's ``params.json``, a volume's metadata, a model card) carries that record. ``run`` reads it back
and calls the same command with the same arguments, into a new ``--out`` (or the old one with ``--overwrite``). A
deterministic run reproduces its ``metrics.json``; only wall-clock seconds differ.
"""

from __future__ import annotations

import functools
import inspect
import shlex
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from napari_sparse_sem.cli.common import QuietOption, clean_errors, echo, threads_value
from napari_sparse_sem.provenance import current, find_record, read_saved, recording

CONTROL_ARGUMENTS = ("out", "overwrite", "quiet")
"""Arguments ``run`` sets itself rather than taking from the record."""
NOT_RECORDED = ("quiet", "resume")
"""Arguments that say how a run went, not what it makes: a replay into a new output starts fresh."""


def recorded(command: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` (a typer command) that runs with its own arguments as the current run record."""
    signature = inspect.signature(callback)

    @functools.wraps(callback)
    def run_recorded(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if k not in NOT_RECORDED}
        with recording(command, arguments):
            return callback(*args, **kwargs)

    run_recorded.recorded_command = command  # type: ignore[attr-defined]
    return run_recorded


def record_commands(app: typer.Typer, prefix: str = "") -> dict[str, Callable[..., Any]]:
    """Wrap every command of ``app`` (and of its groups) with :func:`recorded`; returns them by full name."""
    commands: dict[str, Callable[..., Any]] = {}
    for info in app.registered_commands:
        name = prefix + (info.name or info.callback.__name__.replace("_", "-"))
        if not hasattr(info.callback, "recorded_command"):
            info.callback = recorded(name, info.callback)
        commands[name] = info.callback
    for group in app.registered_groups:
        commands.update(record_commands(group.typer_instance, f"{prefix}{group.name} "))
    return commands


def command_line(command: str, arguments: Mapping[str, Any]) -> str:
    """The shell command that runs ``command`` with ``arguments`` (a run record's), for model cards and messages.

    Rendered from the command's own options (their flag names, on/off switches, aliases), so it never drifts from
    the CLI; options at their default, ``--quiet`` and ``--overwrite`` are left out.
    """
    import typer.main

    from napari_sparse_sem.cli import app

    node: Any = typer.main.get_command(app)
    for part in command.split():
        node = node.commands[part]
    words = ["sparse-sem", *command.split()]
    options: list[str] = []
    for param in node.params:
        if param.name not in arguments or param.name in ("quiet", "overwrite"):
            continue
        value = arguments[param.name]
        if param.param_type_name == "argument":
            words.extend(str(v) for v in (value if isinstance(value, list | tuple) else [value]))
            continue
        if value is None or value == param.default:
            continue
        if isinstance(value, bool):
            if value or param.secondary_opts:
                options.append(param.opts[0] if value else param.secondary_opts[0])
            continue
        values = value if isinstance(value, list | tuple) and param.multiple else [value]
        for item in values:
            text = ",".join(str(v) for v in item) if isinstance(item, list | tuple) else str(item)
            options.extend([param.opts[0], text])
    return shlex.join([*words, *options])


def current_command_line() -> str:
    """:func:`command_line` of the command running now (its run record); empty outside a recorded command."""
    record = current()
    return command_line(record["command"], record["arguments"]) if record else ""


def _is_path(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return _is_path(args[0])
    return annotation is Path or Path in args


def call_arguments(callback: Callable[..., Any], recorded_arguments: dict[str, Any], where: str) -> dict[str, Any]:
    """The recorded arguments as ``callback`` takes them (paths as ``Path``); unknown names are an error."""
    signature = inspect.signature(callback, eval_str=True)
    unknown = sorted(set(recorded_arguments) - set(signature.parameters))
    if unknown:
        raise ValueError(
            f"{where} records arguments {unknown} that this version's command does not take; "
            "run it with the napari-sparse-sem version that wrote it"
        )
    arguments = {}
    for name, value in recorded_arguments.items():
        annotation = signature.parameters[name].annotation
        if isinstance(value, str) and _is_path(annotation):
            value = Path(value)
        elif isinstance(value, list) and _is_path(
            typing.get_args(annotation)[0] if typing.get_args(annotation) else None
        ):
            value = [Path(v) for v in value]
        arguments[name] = value
    return arguments


@clean_errors
def run(
    params: Annotated[
        Path,
        typer.Argument(help="params.json of a report, a model card (.json/.safetensors) or a volume we wrote."),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where the re-run writes (default: where the first run wrote).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the outputs at the target.")] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            callback=threads_value,
            help="CPU threads of the re-run (0: as recorded, i.e. the record's --threads or auto).",
        ),
    ] = 0,
    quiet: QuietOption = False,
) -> None:
    """Run a saved result again from the run record saved beside it, with the same inputs and parameters."""
    from napari_sparse_sem.cli import app

    record = find_record(read_saved(params), str(params))
    commands = record_commands(app)
    command = record["command"]
    if command not in commands:
        raise ValueError(f"{params} was written by the command {command!r}, which this version does not have")
    callback = commands[command]
    arguments = call_arguments(callback, record["arguments"], str(params))
    taken = inspect.signature(callback).parameters
    if out is not None:
        if "out" not in taken:
            raise ValueError(f"`sparse-sem {command}` takes no --out; run without it")
        arguments["out"] = out
    for name, value in (("overwrite", overwrite), ("quiet", quiet)):
        if name in taken:
            arguments[name] = value
    if threads and "threads" in taken:  # how fast, not what: this machine's choice wins over the record's
        arguments["threads"] = threads
    if not quiet:
        echo(f"re-running `sparse-sem {command}` from {params}")
    callback(**arguments)
