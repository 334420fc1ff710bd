"""The `depth360` command line (DESIGN.md "Command line" is its contract).

It parses the arguments, builds one EstimateRequest, runs it through the pipeline
(pipeline.run) and reports. Exit status: 0 done, 2 bad usage or bad input, 3 weights
missing, 1 anything else. Expected failures print one line on stderr naming the file
and the problem; only a bug prints a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..cluster.options import cluster_from_args
from ..errors import BadInputError, Depth360Error
from .arguments import build_parser, request_from_args
from .worker_protocol import request_to_args

__all__ = ["build_parser", "main", "request_from_args", "request_to_args", "run_estimate"]


def _spec(name: str):
    from ..models import registry

    try:
        return registry.get(name)
    except ValueError as error:
        raise BadInputError(str(error)) from None


def _licence(spec) -> str:
    return spec.license if spec.commercial_use else f"{spec.license} (non-commercial)"


def _pinned(spec) -> str:
    """Whether `spec`'s download is pinned (revision, sha256, size), else what it lacks."""
    if not spec.checkpoint:
        return "-"
    return f"no: {', '.join(spec.unpinned)}" if spec.unpinned else "yes"


def run_models(args: argparse.Namespace) -> int:
    """`depth360 models`: the table of every registry model."""
    from ..models import registry
    from ..models.weights import resolve_models_dir, weights_present

    folder = resolve_models_dir(args.models_dir)
    rows = [("NAME", "FAMILY", "LICENCE", "KIND", "PINNED", "WEIGHTS")]
    for spec in registry.all_specs():
        if not spec.checkpoint:
            present = "not needed"
        elif weights_present(spec, folder):
            present = "yes"
        else:
            present = "no (partly downloaded)" if (folder / f"{spec.checkpoint}.part").is_file() else "no"
        rows.append((spec.name, spec.family, _licence(spec), spec.kind, _pinned(spec), present))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"models folder: {folder}")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def run_download(args: argparse.Namespace) -> int:
    """`depth360 models download NAME`."""
    from ..models.weights import checkpoint_path, download, sha256_of

    spec = _spec(args.name)
    existing = checkpoint_path(spec, args.models_dir)
    if existing.is_file():
        print(f"{spec.name}: already present at {existing}")
        return 0
    if not spec.commercial_use:
        print(f"note: {spec.title} is licensed {spec.license}: non-commercial use only", file=sys.stderr)
    path = download(spec, args.models_dir, url=args.url, progress=not args.quiet)
    print(f"{spec.name}: saved {path} ({path.stat().st_size} bytes, sha256 {sha256_of(path)})")
    return 0


def run_estimate(args: argparse.Namespace) -> int:
    """`depth360 estimate INPUT... -o OUTDIR`: one request through the pipeline, a line per input."""
    from ..pipeline import run

    request, cluster = request_from_args(args), cluster_from_args(args)
    if cluster is not None:
        from ..cluster import run_on_cluster

        result = run_on_cluster(request, cluster)
    else:
        result = run(request)
    for line in result.summary_lines():
        print(line, flush=True)
    return 0


def console_main() -> int:
    """Entry point of the `depth360` console script and of `python -m` (the Blender worker): the
    process keeps the memory it frees (cli.allocator), then `main`."""
    from .allocator import keep_freed_memory

    keep_freed_memory()
    return main()


def main(argv: list[str] | None = None) -> int:
    """The command line on `argv` (default: the process's); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "models":
            return run_download(args) if args.models_command == "download" else run_models(args)
        if args.command == "estimate":
            return run_estimate(args)
        parser.print_help()
        return 2
    except Depth360Error as error:
        print(f"depth360: error: {error}", file=sys.stderr)
        return error.exit_status
    except OSError as error:
        print(f"depth360: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("depth360: interrupted", file=sys.stderr)
        return 130
    # Anything else is a bug: Python prints its traceback and exits with status 1.
