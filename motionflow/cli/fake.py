"""``motionflow fake-server``: the fake EmpirioLabs API on loopback, for other programs."""

from __future__ import annotations

import click

from motionflow.cli.errors import handle_errors

__all__ = ["fake_server"]


@click.command("fake-server")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0 picks a free port.")
@click.option(
    "--api-key",
    default="sk-empiriolabs-test",
    show_default=True,
    help="The key clients must send; 'any' accepts every key.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0.001),
    default=1.0,
    show_default=True,
    help="Factor on every delay (queue, processing, retention, rate window); 0.01 is 100x faster.",
)
@click.option("--rate-limit", type=click.IntRange(1), help="Requests per minute (default: none).")
@click.option("--no-render", is_flag=True, help="Tiny placeholder outputs instead of videos.")
def fake_server(
    port: int, api_key: str, time_scale: float, rate_limit: int | None, no_render: bool
) -> None:
    """Serve the EmpirioLabs API contract on 127.0.0.1, offline, until Ctrl-C."""
    import time

    from motionflow.providers.simulate import fake_service

    service = fake_service(
        port=port,
        api_key=None if api_key == "any" else api_key,
        time_scale=time_scale,
        rate_limit_per_minute=rate_limit,
        render=not no_render,
    )
    with handle_errors(), service as url:
        click.echo(f"fake EmpirioLabs API on {url} (Ctrl-C stops it)", err=True)
        click.echo(url)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("stopped", err=True)
