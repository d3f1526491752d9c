"""`devaipod serve-local-upstream`: serve one repository by `git http-backend` behind a token.

The session gateway runs this next to the broker; it is not meant for direct use.
"""

from __future__ import annotations

from pathlib import Path

import click

from devaipod import output
from devaipod.cli.broker_cmd import parse_listen_address
from devaipod.errors import UserError
from devaipod.session.local_upstream import make_server


@click.command("serve-local-upstream")
@click.option(
    "--root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory that contains the repository; URL paths are relative to it.",
)
@click.option(
    "--listen",
    default="127.0.0.1:9419",
    show_default=True,
    help="HOST:PORT to listen on.",
)
@click.option(
    "--token-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File whose content is the token every request must present (Basic or Bearer).",
)
def serve_local_upstream(root: Path, listen: str, token_file: Path) -> None:
    """Serve the repositories under ROOT over smart HTTP until interrupted.

    Pushes are accepted; hooks, fsmonitor and credential helpers never run.
    """
    host, port = parse_listen_address(listen)
    token = token_file.read_text().strip()
    if not token:
        raise UserError(f"token file {token_file} is empty", fix="write a random token into it")
    server = make_server(root, token, host, port)
    output.info(f"local upstream listening on {host}:{server.server_address[1]}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
