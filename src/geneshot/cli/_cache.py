"""``geneshot cache info|clear``."""

from __future__ import annotations

import click

from geneshot.cli._main import cache_option, main, make_cache


@main.group("cache")
def cache_group() -> None:
    """Inspect or clear the on-disk feature cache."""


@cache_group.command("info")
@cache_option
def cache_info(cache_dir) -> None:
    """Show the cache location and its size per kind of entry."""
    cache = make_cache(cache_dir)
    click.echo(f"cache: {cache.root}")
    info = cache.info()
    if not info:
        click.echo("(empty)")
    total = 0
    for ns, d in info.items():
        total += d["bytes"]
        click.echo(f"  {ns:<20} {d['entries']:>6} entries {d['bytes'] / 2**20:>10.1f} MiB")
    click.echo(f"  {'total':<20} {'':>6}         {total / 2**20:>10.1f} MiB")


@cache_group.command("clear")
@click.option("--kind", default=None, help="Clear only this kind of entry (see `cache info`).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@cache_option
def cache_clear(kind, yes, cache_dir) -> None:
    """Delete cached entries."""
    cache = make_cache(cache_dir)
    if not yes:
        click.confirm(
            f"delete {'all' if kind is None else kind} entries under {cache.root}?", abort=True
        )
    freed = cache.clear(kind)
    click.echo(f"freed {freed / 2**20:.1f} MiB")
