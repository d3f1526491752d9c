"""`devaipod gateway-image`: build (or reuse) the image the gateway and relay containers run."""

from __future__ import annotations

import click

from devaipod import output
from devaipod.runtime.gateway_image import BASE_IMAGE_ENV, DEFAULT_BASE_IMAGE, ensure_gateway_image


@click.command("gateway-image")
@click.option(
    "--base-image",
    metavar="IMAGE",
    help=f"Base image with python3 >= 3.11.  [default: ${BASE_IMAGE_ENV}, else [gateway] "
    f"base_image in the config file, else {DEFAULT_BASE_IMAGE}]",
)
@click.option(
    "--rebuild", is_flag=True, help="Build even when an image with the same inputs exists."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
def gateway_image(base_image: str | None, rebuild: bool, as_json: bool) -> None:
    """Build the gateway image from wheels gathered on the host, and print its name.

    The image is tagged localhost/devaipod-gateway:VERSION-HASH, where HASH covers the base
    image, devaipod's files and the pinned dependencies; an existing image is reused.
    """
    image = ensure_gateway_image(base_image, rebuild=rebuild, on_progress=output.info)
    if as_json:
        output.print_json(
            {
                "image": image.name,
                "base_image": image.base_image,
                "reused": image.reused,
                "seconds": round(image.seconds, 2),
                "size_bytes": image.size_bytes,
            }
        )
        return
    verb = "reused" if image.reused else "built"
    output.info(f"{verb} in {image.seconds:.1f} s; size {image.size_bytes / 1e6:.0f} MB")
    output.result(image.name)
