"""The InfluxDB the tests get is a real 2.x: points written to a bucket come back through Flux."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.fixtures.services import InfluxTarget


def test_server_answers_and_is_2x(influxdb: InfluxTarget) -> None:
    with InfluxDBClient(url=influxdb.url, token=influxdb.token, org=influxdb.org) as client:
        assert client.ping()
        version = client.version()
    assert version.lstrip("v").startswith("2."), version


def test_write_points_then_read_them_back_with_flux(
    influxdb: InfluxTarget, influx_bucket: str
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    points = [
        Point("ttft")
        .tag("model", "sim")
        .tag("session", f"s{i % 2}")
        .field("ms", float(100 + i))
        .time(start + timedelta(seconds=i), WritePrecision.S)
        for i in range(10)
    ]
    with InfluxDBClient(url=influxdb.url, token=influxdb.token, org=influxdb.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket=influx_bucket, record=points)
        tables = client.query_api().query(
            f"""
            from(bucket: "{influx_bucket}")
              |> range(start: -1h)
              |> filter(fn: (r) => r._measurement == "ttft" and r._field == "ms")
              |> group()
              |> sort(columns: ["_time"])
            """
        )
        count = client.query_api().query(
            f"""
            from(bucket: "{influx_bucket}")
              |> range(start: -1h)
              |> filter(fn: (r) => r._measurement == "ttft")
              |> group(columns: ["session"])
              |> count()
            """
        )

    records = [record for table in tables for record in table.records]
    assert [r.get_value() for r in records] == [float(100 + i) for i in range(10)]
    assert [r.get_time() for r in records] == [start + timedelta(seconds=i) for i in range(10)]
    assert {r.values["session"] for r in records} == {"s0", "s1"}
    per_session = {r.values["session"]: r.get_value() for t in count for r in t.records}
    assert per_session == {"s0": 5, "s1": 5}


def test_each_test_gets_an_empty_bucket(influxdb: InfluxTarget, influx_bucket: str) -> None:
    with InfluxDBClient(url=influxdb.url, token=influxdb.token, org=influxdb.org) as client:
        tables = client.query_api().query(f'from(bucket: "{influx_bucket}") |> range(start: 0)')
        bucket = client.buckets_api().find_bucket_by_name(influx_bucket)
    assert tables == [] or all(not t.records for t in tables)
    assert bucket is not None and bucket.name == influx_bucket
