"""Real services for every test: Kafka and InfluxDB (tests.fixtures.services), and the pipeline's
own parts, the simulator, worker and edge (tests.fixtures.pipeline)."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.pipeline"]
