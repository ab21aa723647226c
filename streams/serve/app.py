"""The HTTP API of ``vidrec serve``: users' lists with request-time rules, similar videos,
trending, event intake, health, Prometheus metrics and the dashboard.

FastAPI, because its routes are typed by the same pydantic models the project's messages
already are, and it publishes the OpenAPI schema (``/openapi.json``, ``/docs``) from them: the
API's contract is written once. The hot route (a user's list) answers with bytes encoded by
msgspec from the store's pre-decoded dicts: nothing stored is validated again per request.

Every copy of the server holds all the topics (see ``streams.serve.store``), so copies behind
a load balancer answer alike; ``/readyz`` is 503 until the copy has caught up.
"""

# no "from __future__ import annotations": FastAPI reads the routes' annotations, which use
# the factory's local settings (the k cap), at definition time

import asyncio
import contextlib
import hmac
import logging
import re
import socket
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import msgspec
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field

from schemas import DecodeError, ForgetUser, UserEvent, decode
from schemas.messages import Reason, SourceScores
from streams.serve.board import Board
from streams.serve.rules import Rules, VideoMeta, apply_rules
from streams.serve.settings import ServeSettings
from streams.serve.store import Store, StoreFeed
from streams.wire.privacy import Pseudonymiser
from streams.wire.settings import KafkaSettings, aiokafka_kwargs
from streams.wire.topics import Topics, TopicSettings
from workers.settings import EngineSettings

log = logging.getLogger(__name__)

_JSON = msgspec.json.Encoder()
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


# -- response models: the OpenAPI schema (the hot route encodes its dicts itself) -------------
class ItemOut(BaseModel):
    video_id: str
    score: float
    sources: SourceScores
    reason: Reason | None = None
    title: str | None = None
    category: str | None = None
    creator_id: str | None = None
    reason_title: str | None = Field(
        default=None, description="The title of the reason's video (the one watched), if known."
    )


class UserListOut(BaseModel):
    user_id: str
    source: Literal["list", "trending"] = Field(
        description="'list': the user's published list; 'trending': the user has none."
    )
    items: list[ItemOut]
    from_trending: int = Field(description="Items filled from trending after the rules.")
    generated_at: str | None = None
    trigger_event_id: str | None = None


class ItemsOut(BaseModel):
    items: list[ItemOut]


class Accepted(BaseModel):
    accepted: Literal["event", "forget"]
    user_id: str
    topic: str


class Problem(BaseModel):
    detail: str


# -- metrics -----------------------------------------------------------------------------------
class ServeMetrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self, store: Store) -> None:
        self.registry = r = CollectorRegistry()
        self.request_seconds = Histogram(
            "vidrec_serve_request_seconds",
            "HTTP request latency, by route template, method and status.",
            ("route", "method", "status"),
            buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1),
            registry=r,
        )
        self.list_visible_seconds = Histogram(
            "vidrec_serve_list_visible_seconds",
            "A list's Kafka timestamp on the recommendations topic -> applied in the store.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        Gauge("vidrec_serve_users", "Users with a list in the store.", registry=r).set_function(
            lambda: len(store.lists)
        )
        Gauge("vidrec_serve_videos", "Videos known to the store.", registry=r).set_function(
            lambda: len(store.videos)
        )
        Gauge(
            "vidrec_serve_store_lag", "Records the store is behind its topics.", registry=r
        ).set_function(lambda: store.lag)


class _Timing:
    """ASGI middleware: ``vidrec_serve_request_seconds`` labelled by the matched route's
    template (never the raw path, which would make a series per user)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.hist = metrics.request_seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            self.hist.labels(route, scope["method"], str(status)).observe(time.perf_counter() - t0)


class _FastPath:
    """The hot route without the framework's per-request work: FastAPI's dependency solving,
    parameter validation and five middleware layers cost more than the rules themselves
    (py-spy: about two thirds of a request's CPU at 1,000 requests/s).

    It takes only what it can check completely: ``GET /users/{id}/recommendations`` with every
    known parameter well formed and in range (the same bounds as the FastAPI route) and, when a
    key is set, the right key. Anything else (every error, every doubt) goes on to FastAPI,
    whose route stays the API's contract and the one that writes its 4xx answers.
    """

    PREFIX, SUFFIX = "/users/", "/recommendations"
    ROUTE = "/users/{user_id}/recommendations"
    _INT = re.compile(r"[0-9]{1,4}")
    _FLOAT = re.compile(r"[0-9]{1,6}(\.[0-9]{0,12})?")

    def __init__(
        self, app: Any, user_list: Any, metrics: ServeMetrics, key: bytes | None, max_k: int
    ) -> None:
        self.app = app
        self.user_list = user_list
        self.key = key
        self.max_k = max_k
        self.observe = metrics.request_seconds.labels(self.ROUTE, "GET", "200").observe

    def _query(self, raw: bytes) -> dict[str, Any] | None:
        out: dict[str, Any] = {"k": None, "cats": set(), "language": None, "age": None,
                               "cap": None, "diversity": 0.0}  # fmt: skip
        if not raw:
            return out
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if name == "exclude_categories":
                out["cats"].update(c for c in value.split(",") if c)
            elif name == "language":
                if len(value) > 35:
                    return None
                out["language"] = value
            elif name in ("k", "max_per_creator"):
                if not self._INT.fullmatch(value):
                    return None
                n = int(value)
                if not 1 <= n <= (self.max_k if name == "k" else 1000):
                    return None
                out["k" if name == "k" else "cap"] = n
            elif name in ("diversity", "max_age_days"):
                if not self._FLOAT.fullmatch(value):
                    return None
                x = float(value)
                if name == "diversity" and not 0.0 <= x <= 1.0:
                    return None
                if name == "max_age_days" and not 0.0 < x <= 36500:
                    return None
                out["diversity" if name == "diversity" else "age"] = x
        return out

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.key is None:
            return True
        for name, value in headers:
            if name == b"x-api-key" and hmac.compare_digest(value, self.key):
                return True
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                if hmac.compare_digest(value[7:].strip(), self.key):
                    return True
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            t0 = time.perf_counter()
            path: str = scope["path"]
            if path.startswith(self.PREFIX) and path.endswith(self.SUFFIX):
                user = path[len(self.PREFIX) : -len(self.SUFFIX)]
                if 0 < len(user) <= 256 and "/" not in user and self._authorised(scope["headers"]):
                    q = self._query(scope["query_string"])
                    body = None
                    if q is not None:
                        rules = Rules(frozenset(q["cats"]), q["language"], q["age"], q["cap"],
                                      q["diversity"])  # fmt: skip
                        try:
                            body = _JSON.encode(self.user_list(user, q["k"], rules))
                        except Exception:  # a bug: FastAPI's route answers it (a 500), logged
                            log.exception("fast path of %s failed", self.ROUTE)
                    if body is not None:
                        await send({"type": "http.response.start", "status": 200, "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
                        await send({"type": "http.response.body", "body": body})
                        self.observe(time.perf_counter() - t0)
                        return
        await self.app(scope, receive, send)


# -- event intake -------------------------------------------------------------------------------
class EventProducer:
    """Produces accepted events to ``user-events``, keyed by ``user_id`` (aiokafka)."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        self.kafka = kafka
        self.topic = topics.user_events
        self._producer: Any = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self._producer = AIOKafkaProducer(**aiokafka_kwargs(self.kafka), acks="all", linger_ms=1)
        await self._producer.start()

    async def send(self, key: bytes, value: bytes) -> None:
        if self._producer is None:
            raise RuntimeError("the event producer is not started")
        await self._producer.send_and_wait(self.topic, value=value, key=key)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


# -- the app ---------------------------------------------------------------------------------
def _one_line(exc: RequestValidationError) -> str:
    errs = exc.errors()
    parts = []
    for e in errs[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "request"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = f"; and {len(errs) - 3} more" if len(errs) > 3 else ""
    return "; ".join(parts) + more


def _page() -> bytes:
    try:
        return resources.files("streams.serve").joinpath("static/index.html").read_bytes()
    except (FileNotFoundError, OSError):
        return (
            b"<!doctype html><title>vidrec</title><h1>vidrec serve</h1>"
            b"<p>The dashboard page is not installed; the API is at <a href=/docs>/docs</a>.</p>"
        )


def create_app(
    store: Store,
    settings: ServeSettings | None = None,
    *,
    feed: StoreFeed | None = None,
    events: EventProducer | None = None,
    pseudonymiser: Pseudonymiser | None = None,
    fast_path: bool = True,
) -> FastAPI:
    """The API over ``store``.

    Parameters
    ----------
    feed
        Started with the app (in the background, so ``/healthz`` answers while it catches up)
        and stopped with it; None for a store filled by the caller (tests).
    events
        Where ``POST /events`` produces; None answers 503.
    pseudonymiser
        Applied to every user id of a request (path or body) before the store or Kafka sees
        it, as every producer of the deployment does (``VIDREC_PSEUDONYMISE_KEY``).
    fast_path
        Answer well-formed, authorised ``GET /users/{id}/recommendations`` calls before
        FastAPI's routing and validation (see ``_FastPath``); off, FastAPI answers them all.
    """
    settings = settings or ServeSettings()
    metrics = ServeMetrics(store)
    board = store.board
    if feed is not None and feed.on_list is None:
        feed.on_list = metrics.list_visible_seconds.observe

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []

        async def tick() -> None:
            while True:
                board.tick()
                await asyncio.sleep(1.0)

        async def start_feed() -> None:
            assert feed is not None
            try:
                await feed.start()
            except Exception as exc:
                log.exception("the store's consumer did not start")
                feed.error = exc

        tasks.append(asyncio.create_task(tick()))
        if feed is not None:
            tasks.append(asyncio.create_task(start_feed()))
        if events is not None:
            await events.start()
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if feed is not None:
                await feed.stop()
            if events is not None:
                await events.stop()

    app = FastAPI(
        title="vidrec",
        summary="Streaming video recommendations: users' lists with request-time rules.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(_Timing, metrics=metrics)
    app.state.store = store
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    key = settings.api_key.get_secret_value().encode() if settings.api_key else None
    bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
    header = APIKeyHeader(name="X-API-Key", auto_error=False)

    async def require_key(
        cred: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        given: Annotated[str | None, Security(header)],
    ) -> None:
        token = cred.credentials if cred is not None else given
        if key is None:
            return
        if token is None or not hmac.compare_digest(token.encode(), key):
            raise HTTPException(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    api = APIRouter(dependencies=[Depends(require_key)] if key is not None else [])
    meta = store.videos
    pseudo = pseudonymiser.user_id if pseudonymiser is not None else None

    def described(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for it in items:
            m: VideoMeta | None = meta.get(it["video_id"])
            if m is not None:
                it = {**it, "title": m.title, "category": m.category, "creator_id": m.creator_id}
            why = it.get("reason")
            if why and why.get("video_id") and (w := meta.get(why["video_id"])) is not None:
                it["reason_title"] = w.title  # for a person reading "because you watched ..."
            out.append(it)
        return out

    def bytes_response(body: Any, status: int = 200) -> Response:
        return Response(_JSON.encode(body), status_code=status, media_type="application/json")

    def user_list(user_id: str, k: int | None, rules: Rules) -> dict[str, Any]:
        """The body of GET /users/{id}/recommendations (FastAPI's route and the fast path)."""
        want = settings.k if k is None else k
        uid = pseudo(user_id) if pseudo is not None else user_id
        lst = store.list_of(uid)
        now = time.time()
        fill = store.trending()
        if lst is None:
            items, n_fill = apply_rules((), want, rules, meta, store.vectors_of, now, fill)
            body: dict[str, Any] = {"user_id": user_id, "source": "trending"}
        else:
            want = min(want, len(lst.items))
            sims = store.list_sims(lst) if rules.diversity > 0 else None
            items, n_fill = apply_rules(
                lst.items, want, rules, meta, store.vectors_of, now, fill, sims
            )
            body = {
                "user_id": user_id,
                "source": "list",
                "generated_at": lst.generated_at,
                "trigger_event_id": lst.trigger_event_id,
            }
        body["from_trending"] = n_fill
        body["items"] = described(items)
        return body

    @api.get(
        "/users/{user_id}/recommendations",
        response_model=UserListOut,
        responses={422: {"model": Problem}, 401: {"model": Problem}},
        summary="A user's latest list, with request-time rules",
        description="The user's latest published list (the workers publish 20 items, so rules "
        "have spare items to drop), filtered, capped per creator and optionally re-ranked for "
        "diversity (maximal marginal relevance over the content vectors). k is capped at the "
        "list's length; items the rules leave missing are filled from trending (reason "
        "'trending'). A user without a list gets trending, with source 'trending'.",
    )
    async def recommendations(
        user_id: Annotated[str, Path(min_length=1, max_length=256)],
        k: Annotated[int | None, Query(ge=1, le=settings.max_k)] = None,
        exclude_categories: Annotated[
            list[str], Query(description="Comma-separated or repeated.")
        ] = [],  # noqa: B006 - FastAPI copies query defaults
        language: Annotated[str | None, Query(max_length=35)] = None,
        max_age_days: Annotated[float | None, Query(gt=0, le=36500)] = None,
        max_per_creator: Annotated[int | None, Query(ge=1, le=1000)] = None,
        diversity: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    ) -> Response:
        cats = frozenset(c for part in exclude_categories for c in part.split(",") if c)
        rules = Rules(cats, language, max_age_days, max_per_creator, diversity)
        return bytes_response(user_list(user_id, k, rules))

    @api.get(
        "/videos/{video_id}/similar",
        response_model=ItemsOut,
        responses={404: {"model": Problem}},
        summary="More like this: content cosine blended with co-occurrence",
    )
    async def similar(
        video_id: Annotated[str, Path(min_length=1, max_length=256)],
        k: Annotated[int, Query(ge=1, le=settings.max_k)] = settings.k,
    ) -> Response:
        items = store.similar(video_id, k, settings.similar_cooc_weight)
        if items is None:
            raise HTTPException(404, f"unknown video {video_id!r}")
        return bytes_response({"items": described(items)})

    @api.get("/trending", response_model=ItemsOut, summary="The most watched videos now")
    async def trending(
        k: Annotated[int, Query(ge=1, le=settings.trending_size)] = settings.k,
    ) -> Response:
        return bytes_response({"items": described(store.trending(k))})

    @api.post(
        "/events",
        status_code=202,
        response_model=Accepted,
        responses={422: {"model": Problem}, 503: {"model": Problem}},
        summary="Validate a UserEvent or ForgetUser and produce it to user-events",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                UserEvent.model_json_schema(),
                                ForgetUser.model_json_schema(),
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_event(request: Request) -> Response:
        raw = await request.body()
        try:
            msg = decode(raw)
        except DecodeError as exc:
            raise HTTPException(422, exc.reason) from None
        if not isinstance(msg, UserEvent | ForgetUser):
            raise HTTPException(422, f"kind: expected 'event' or 'forget', got {msg.kind!r}")
        if events is None:
            raise HTTPException(503, "this server has no Kafka producer")
        if pseudonymiser is not None:
            msg = pseudonymiser.apply(msg)
        assert isinstance(msg, UserEvent | ForgetUser)
        try:
            await events.send(msg.user_id.encode(), msg.to_json())
        except Exception as exc:  # the broker refused or timed out: the client may retry
            log.warning("POST /events: not delivered: %s", exc)
            raise HTTPException(503, f"not delivered to Kafka: {type(exc).__name__}") from None
        return bytes_response(
            {"accepted": msg.kind, "user_id": msg.user_id, "topic": events.topic}, 202
        )

    @api.get("/dashboard/data", summary="The dashboard's figures")
    async def dashboard_data() -> Response:
        data = board.data()
        data["server"] = {
            "users": len(store.lists),
            "videos": len(store.videos),
            "ready": store.ready,
            "lag": store.lag,
            "bad_records": dict(store.bad),
        }
        data["trending"] = described(store.trending(10))
        return bytes_response(data)

    app.include_router(api)

    @app.get("/healthz", summary="The process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem}}, summary="The store has caught up")
    async def readyz() -> Response:
        if store.ready:
            return bytes_response({"status": "ready", "users": len(store.lists)})
        why = "catching up with the topics"
        if feed is not None and feed.error is not None:
            why = f"the store's consumer failed: {type(feed.error).__name__}: {feed.error}"
        return bytes_response({"detail": f"not ready: {why} ({store.lag} records behind)"}, 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    page = _page()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    static = resources.files("streams.serve").joinpath("static")
    if static.is_dir():
        from starlette.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=str(static)), name="static")

    if fast_path:  # in front of the whole stack (built now: no middleware may follow)
        app.middleware_stack = _FastPath(
            app.build_middleware_stack(), user_list, metrics, key, settings.max_k
        )
    return app


def make_app(
    settings: ServeSettings | None = None,
    kafka: KafkaSettings | None = None,
    topics: Topics | None = None,
    engine: EngineSettings | None = None,
) -> FastAPI:
    """The app of ``vidrec serve``: a store fed from the deployment's topics, and a producer
    for ``POST /events``; settings from the environment where not given."""
    settings = settings or ServeSettings()
    kafka = kafka or KafkaSettings()
    topics = topics or Topics(TopicSettings())
    store = Store(engine, settings.trending_size, Board(settings.board_history_s))
    feed = StoreFeed(store, kafka, topics, settings.fetch_max_wait_ms)
    return create_app(
        store,
        settings,
        feed=feed,
        events=EventProducer(kafka, topics),
        pseudonymiser=Pseudonymiser.from_settings(),
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), so the caller knows the port before
    uvicorn starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_server(app: FastAPI, sock: socket.socket, access_log: bool = False) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until SIGINT or SIGTERM (a clean stop: the
    store's consumer and the producer are closed by the app's lifespan)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=5,
        proxy_headers=False,  # set forwarded addresses at the proxy; a header walk per call
    )
    uvicorn.Server(config).run(sockets=[sock])
