"""The ``stopline`` command line (also installed as ``kubectl-stopline``)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from controller.experiments.cli import app as experiment_app

app = typer.Typer(
    name="stopline",
    help="stopline: phased pushes gated by Prometheus metrics, with rollback and git revert.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(experiment_app, name="experiment")


@app.command()
def run(
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Namespace to watch (repeatable).")
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Watch every namespace.")] = False,
    standalone: Annotated[
        bool, typer.Option("--standalone/--peering", help="Run alone, without kopf peering (one replica).")
    ] = True,
    peering: Annotated[str | None, typer.Option(help="Peering object name (with --peering).")] = None,
    priority: Annotated[int, typer.Option(help="Peering priority.")] = 0,
    liveness: Annotated[str | None, typer.Option(help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the controller (kopf operator) against the current cluster."""
    import kopf

    import controller.handlers  # noqa: F401  (registers the handlers)

    if not namespace and not all_namespaces:
        raise typer.BadParameter("give --namespace NAME (repeatable) or --all-namespaces")
    if namespace and all_namespaces:
        raise typer.BadParameter("--namespace and --all-namespaces are exclusive")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    kopf.run(
        standalone=standalone,
        peering_name=None if standalone else peering,
        priority=priority,
        liveness_endpoint=liveness,
        clusterwide=all_namespaces,
        namespaces=namespace or (),
    )


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
