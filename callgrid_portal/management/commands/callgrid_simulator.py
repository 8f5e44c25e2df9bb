"""Run the CallGrid simulator in the foreground: ``manage.py callgrid_simulator --port 8099``."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from callgrid_portal.simulator import ScenarioError, Simulator, load_scenario


class Command(BaseCommand):
    help = "Serve a simulated CallGrid Bid API until Ctrl-C or SIGTERM."

    # The simulator has no database: skip the system checks, which would open a connection.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
        parser.add_argument("--port", type=int, default=8099, help="Port (0 picks a free one).")
        parser.add_argument(
            "--scenario", help="JSON (or YAML) file with per-grid behaviours; see simulator.py."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        scenario = None
        if options["scenario"]:
            try:
                scenario = load_scenario(options["scenario"])
            except (OSError, ScenarioError) as exc:
                raise CommandError(f"cannot load scenario: {exc}") from exc
        try:
            simulator = Simulator(scenario, host=options["host"], port=options["port"]).start()
        except OSError as exc:
            where = f"{options['host']}:{options['port']}"
            raise CommandError(f"cannot listen on {where}: {exc}") from exc

        stopping = threading.Event()
        # SIGTERM (docker stop, systemd) ends the process as cleanly as Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
        self.stdout.write(
            f"CallGrid simulator listening on {simulator.url} (bids: {simulator.endpoint}<grid>)"
        )
        self.stdout.flush()
        try:
            while not stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            simulator.stop()
        self.stdout.write("CallGrid simulator stopped")
