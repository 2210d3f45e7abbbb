"""The `tongban` command: one subcommand module per concern, all clients of the local API
(except `init`, which creates a home, and `serve`, which runs the node)."""

from __future__ import annotations

import click

from node import __version__
from node.cli.cases import case, clerk
from node.cli.catalog import catalog
from node.cli.cert import cert
from node.cli.log import log
from node.cli.node_commands import init, keys, ping, serve, status
from node.cli.outbox import outbox
from node.cli.peer import peer
from node.cli.video import video


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="tongban")
def cli() -> None:
    """tongban (通办): a federation node for cross-region government service handling.

    Every command takes --home DIR (or $TONGBAN_HOME) and --json.
    """


for command in (init, serve, status, ping, keys, peer, outbox, catalog, clerk, case, cert, video, log):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="tongban")
