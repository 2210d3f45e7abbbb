"""Prometheus metrics of the federation: messages sent, received and parked, backlog, latency.

Each node has its own registry (several nodes can live in one test process); the node exposes
it on its metrics endpoint.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class FederationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "tongban_messages_sent_total",
            "Messages delivered to a peer and receipted",
            ["peer"],
            registry=registry,
        )
        self.received = Counter(
            "tongban_messages_received_total",
            "Distinct messages received from a peer",
            ["peer"],
            registry=registry,
        )
        self.rejected = Counter(
            "tongban_messages_rejected_total",
            "Messages a peer recorded but refused",
            ["peer"],
            registry=registry,
        )
        self.parked = Gauge(
            "tongban_outbox_parked", "Messages parked for an operator", ["peer"], registry=registry
        )
        self.backlog = Gauge(
            "tongban_outbox_backlog", "Messages waiting for delivery", ["peer"], registry=registry
        )
        self.latency = Histogram(
            "tongban_delivery_latency_seconds",
            "From queueing a message to storing its signed receipt",
            ["peer"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=registry,
        )
