"""The server's Prometheus metrics (prometheus-client, one registry per app).

    fashion_serve_requests_total{endpoint, status}   requests answered, by status code
    fashion_serve_request_seconds{endpoint}          latency histogram, arrival to response
    fashion_serve_queue_length                       requests admitted, not yet in the model
    fashion_serve_in_model                           images in the running model call
    fashion_serve_batch_size                         images per model call (histogram)
    fashion_serve_model_seconds                      seconds per model call (histogram)
    process_*                                        the server's RSS, CPU time, open files

``endpoint`` is the route's path, or "other" for paths the server does not have (so a
scan of random URLs cannot grow the label set).
"""
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, ProcessCollector, generate_latest)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class ServeMetrics:
    """The metrics of one app, in their own registry."""

    def __init__(self, endpoints):
        self.endpoints = frozenset(endpoints)
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.requests = Counter("fashion_serve_requests", "Requests answered, by endpoint "
                                "and HTTP status.", ["endpoint", "status"], registry=registry)
        self.latency = Histogram("fashion_serve_request_seconds", "Seconds from a "
                                 "request's arrival to its response.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_length = Gauge("fashion_serve_queue_length", "Requests admitted and "
                                  "not yet in the model (uploading, decoding or waiting).",
                                  registry=registry)
        self.in_model = Gauge("fashion_serve_in_model", "Images in the running model call.",
                              registry=registry)
        self.batch_size = Histogram("fashion_serve_batch_size", "Images per model call.",
                                    buckets=BATCH_BUCKETS, registry=registry)
        self.model_seconds = Histogram("fashion_serve_model_seconds", "Seconds per model "
                                       "call (one batch).", buckets=LATENCY_BUCKETS,
                                       registry=registry)

    def exposition(self):
        """(body bytes, content type) of GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def endpoint(self, path):
        return path if path in self.endpoints else "other"


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by endpoint and status, with its
    latency (an exception that escapes the app counts as 500)."""

    def __init__(self, app, metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = self.metrics.endpoint(scope.get("path", ""))
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
