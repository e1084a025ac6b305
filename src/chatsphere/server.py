"""A ChatSphere node: the facade behind the WebSocket listener and the REST API.

WebSocket on WS_PORT, HTTP on HTTP_PORT (default WS_PORT + 1), one event loop.
SIGTERM/SIGINT: stop accepting, close connections with 1001, commit what is in
flight, then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import time
from collections.abc import Generator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from . import __version__
from .api.app import create_api
from .app import ChatSphereService
from .config import Settings
from .gateway.asgi_ws import AsgiWebSocketEndpoint
from .gateway.dispatch import Dispatcher
from .gateway.hub import Hub
from .gateway.session import Sessions
from .gateway.ws_server import WebSocketListener
from .metrics import NodeCollector

log = logging.getLogger(__name__)


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the node owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:  # noqa: PTH123 - procfs, not a path API case
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Node:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = ChatSphereService(settings)
        self.hub = Hub(self.service.broker)
        self.dispatcher = Dispatcher(
            self.hub,
            self.service.rooms,
            self.service.messages,
            self.service.presence,
            settings.max_rooms_per_connection,
        )
        self.sessions = Sessions(
            self.hub, self.dispatcher, self.service.presence, settings.heartbeat_interval
        )
        self.listener = WebSocketListener(
            hub=self.hub,
            sessions=self.sessions,
            authority=self.service.authority,
            health=self._ws_health,
            max_connections=settings.ws_max_connections,
            max_payload=settings.ws_max_payload,
            send_queue_bytes=settings.send_queue_bytes,
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
        )
        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(self._samples()))
        self.api = create_api(self.service, self.health, self.registry)
        self.api.add_api_websocket_route(
            "/ws",
            AsgiWebSocketEndpoint(
                self.hub,
                self.sessions,
                self.service.authority,
                settings.ws_max_connections,
                settings.send_queue_bytes,
            ),
        )
        self._http: _EmbeddedUvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._last_health: dict[str, Any] = {"store": True, "bus": True}
        self.ws_port = 0
        self.http_port = 0

    def _samples(self) -> list[tuple[str, str, str, Any]]:
        store = self.service.store
        return [
            (
                "gauge",
                "chatsphere_connections",
                "Open WebSocket connections",
                lambda: len(self.hub),
            ),
            (
                "counter",
                "chatsphere_deliveries",
                "Frames fanned out to connections",
                lambda: self.hub.deliveries,
            ),
            (
                "counter",
                "chatsphere_frames",
                "Client frames handled",
                lambda: self.dispatcher.frames,
            ),
            (
                "counter",
                "chatsphere_frame_errors",
                "Client frames refused",
                lambda: self.dispatcher.errors,
            ),
            (
                "counter",
                "chatsphere_store_batches",
                "Group-commit transactions",
                lambda: store.write_stats[0],
            ),
            (
                "counter",
                "chatsphere_store_commands",
                "Commands committed",
                lambda: store.write_stats[1],
            ),
            (
                "gauge",
                "chatsphere_store_queue",
                "Commands waiting to commit",
                lambda: store.write_stats[2],
            ),
            (
                "counter",
                "chatsphere_heartbeat_timeouts",
                "Connections closed for missing pongs",
                lambda: self.listener.heartbeat.timeouts,
            ),
            (
                "counter",
                "chatsphere_connections_refused",
                "Connections refused at the limit",
                lambda: self.listener.refused,
            ),
            ("gauge", "chatsphere_memory_rss_bytes", "Resident memory", _rss_bytes),
        ]

    def _health_body(self, store_ok: bool, bus_ok: bool) -> dict[str, Any]:
        return {
            "status": "ok" if store_ok and bus_ok else "degraded",
            "version": __version__,
            "uptime": round(time.time() - self.service.started_at, 3),
            "store": store_ok,
            "bus": bus_ok,
            "connections": len(self.hub),
            "memory": {"rssBytes": _rss_bytes()},
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "wsPort": self.ws_port,
            "httpPort": self.http_port,
        }

    async def health(self) -> dict[str, Any]:
        checks = await self.service.health()
        self._last_health = checks
        return self._health_body(checks["store"], checks["bus"])

    def _ws_health(self) -> dict[str, Any]:
        # The WebSocket listener's HTTP hook is synchronous: report the last checks.
        return self._health_body(self._last_health["store"], self._last_health["bus"])

    async def start(self) -> None:
        s = self.settings
        await self.service.start()
        await self.listener.start(s.host, s.ws_port)
        self.ws_port = self.listener.port
        http_port = s.effective_http_port
        config = uvicorn.Config(
            self.api,
            host=s.host,
            port=http_port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws="websockets-sansio",
            ws_max_size=s.ws_max_payload,
            ws_ping_interval=s.heartbeat_interval,
            ws_ping_timeout=s.heartbeat_timeout,
            ws_per_message_deflate=False,
        )
        self._http = _EmbeddedUvicorn(config)
        self._http_task = asyncio.get_running_loop().create_task(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                await self._http_task
                raise RuntimeError(f"HTTP listener failed to start on port {http_port}")
            await asyncio.sleep(0.01)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]
        log.info(
            "ChatSphere %s: ws://%s:%d/ws  http://%s:%d/",
            __version__,
            s.host,
            self.ws_port,
            s.host,
            self.http_port,
        )

    async def stop(self) -> None:
        """Graceful shutdown: see the module docstring."""
        await self.listener.shutdown(self.settings.shutdown_grace)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        await self.service.close()

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        tune_gc()
        print(
            f"ChatSphere {__version__} ready: WebSocket ws://localhost:{self.ws_port}/ws  "
            f"HTTP http://localhost:{self.http_port}/ (docs at /docs)",
            flush=True,
        )
        await stop.wait()
        log.info("shutting down")
        await self.stop()


#: Young collections every 10,000 net allocations instead of 700; the older generations
#: are considered a tenth as often as by default.
GC_THRESHOLDS = (10_000, 20, 10)


def tune_gc() -> None:
    """Fewer garbage collections for a long-running node (called once it has started).

    Everything alive after start-up (modules, the service, its caches) lives as long as
    the process, so it is frozen out of every later collection. With 10,000 connections
    a full collection walks about 900,000 objects, ~0.5 s on one core; under the default
    thresholds a connect storm ran one every few seconds, and each was a latency spike.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings) -> None:
    """Run a node until SIGTERM or SIGINT, on uvloop when it is installed."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(Node(settings).run_until_signalled())
    else:
        uvloop.run(Node(settings).run_until_signalled())
