"""Real services for every test: Kafka and InfluxDB (tests.fixtures.services), and the pipeline's
own parts, the simulator, worker and edge (tests.fixtures.pipeline); extra clusters, 3 nodes or
secured, started only by the tests that ask for them (tests.fixtures.kafka_clusters)."""

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.kafka_clusters",
    "tests.fixtures.pipeline",
    "tests.fixtures.tracing",
]
