"""Third-party clients users point at cclake, unmodified: ADBC metadata calls as BI tools use
them, SQLAlchemy through the `sqlalchemy-adbc` dialect (with pandas), and polars over an ADBC
connection. Parameters in every style, and the refusals a bad binding gets.

Run by tests/flight.rs against `cclake serve` over the testdata fixtures; users `ana`
(analyst, analyst-pw) and `aud` (auditor, auditor-pw). Expected values are the fixtures',
worked out by hand in testdata/README.md.
"""
import os
from urllib.parse import urlparse

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import sqlalchemy as sa

URL = os.environ["CCLAKE_FLIGHT_URL"]
ANALYST = {"username": "ana", "password": "analyst-pw"}
BILLING = ["e2", "e7", "e8", "e9"]

# XDBC codes (the JDBC java.sql.Types values): what a column's SQL type is to a BI tool.
XDBC = {"VARCHAR": 12, "BIGINT": -5, "DATE": 91, "TIMESTAMP": 93, "DOUBLE": 8}


def connect():
    return flightsql.connect(URL, db_kwargs=ANALYST, autocommit=True)


def engine():
    where = urlparse(URL)
    return sa.create_engine(
        f"adbc+flightsql://{where.hostname}:{where.port}?tls=false&username=ana&password=analyst-pw")


# Metadata: the types every description gives are the types a query returns --------------

def test_table_schema_has_the_types_a_select_returns():
    with connect() as conn:
        described = conn.adbc_get_table_schema("fact_interactions", db_schema_filter="cc_analytics")
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM fact_interactions LIMIT 1")
            returned = cur.fetch_arrow_table().schema
    assert [(f.name, f.type) for f in described] == [(f.name, f.type) for f in returned]
    for field in described:
        assert not pa.types.is_dictionary(field.type), field
        assert field.type != pa.string_view() and field.type != pa.large_string(), field
    assert described.field("queue_name").type == pa.string()


def columns_of(conn, table, schema="cc_analytics"):
    objects = conn.adbc_get_objects(depth="columns", db_schema_filter=schema, table_name_filter=table).read_all().to_pylist()
    for catalog in objects:
        for s in catalog["catalog_db_schemas"] or []:
            for t in s["db_schema_tables"] or []:
                if t["table_name"] == table:
                    return {c["column_name"]: c for c in t["table_columns"]}
    raise AssertionError(f"{schema}.{table} not listed")


def test_get_objects_fills_xdbc_fields_for_every_column():
    with connect() as conn:
        columns = columns_of(conn, "fact_interactions")
    for name, column in columns.items():
        assert column["xdbc_type_name"], (name, column)
        assert column["xdbc_data_type"] not in (None, 0), (name, column)
    assert columns["queue_name"]["xdbc_type_name"] == "VARCHAR"
    assert columns["queue_name"]["xdbc_data_type"] == XDBC["VARCHAR"]
    assert columns["duration_seconds"]["xdbc_type_name"] == "BIGINT"
    assert columns["duration_seconds"]["xdbc_data_type"] == XDBC["BIGINT"]
    assert columns["event_date"]["xdbc_type_name"] == "DATE"
    assert columns["event_date"]["xdbc_data_type"] == XDBC["DATE"]
    assert columns["event_timestamp"]["xdbc_type_name"] == "TIMESTAMP WITH TIME ZONE"
    assert columns["event_timestamp"]["xdbc_data_type"] == XDBC["TIMESTAMP"]


def test_views_are_described_with_plain_types_too():
    with connect() as conn:
        columns = columns_of(conn, "kpi_queue_daily")
        assert columns["queue_name"]["xdbc_type_name"] == "VARCHAR"
        assert columns["abandon_rate"]["xdbc_type_name"] == "DOUBLE"


def test_information_schema_lists_its_tables_and_plain_types():
    with connect() as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        listed = {(s["db_schema_name"], t["table_name"]) for c in objects for s in c["catalog_db_schemas"] or []
                  for t in s["db_schema_tables"] or []}
        for table in ["tables", "columns", "views"]:
            assert ("information_schema", table) in listed, listed
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT data_type FROM information_schema.columns "
                        "WHERE table_schema = 'cc_analytics' ORDER BY 1")
            types = [r[0] for r in cur.fetchall()]
    assert not [t for t in types if "View" in t or "Dictionary" in t], types
    assert "Utf8" in types


# Parameters: served correctly, or refused with INVALID_ARGUMENT and the reason ------------

def test_a_multi_row_parameter_batch_is_refused():
    with connect() as conn:
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute("SELECT ? AS x", pa.record_batch([[1, 2, 3]], names=["x"]))
                cur.fetchall()
    text = str(err.value)
    assert "InvalidArgument" in text or "INVALID_ARGUMENT" in text, text
    assert "3 rows of parameter values" in text, text


def test_extra_parameters_are_refused():
    with connect() as conn:
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute("SELECT ? AS x", (1, 2))
                cur.fetchall()
    assert "1 parameter(s) ($1) but 2 value(s)" in str(err.value), str(err.value)


def test_a_parameter_of_the_wrong_type_is_an_invalid_argument():
    with connect() as conn:
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute("SELECT count(*) FROM fact_interactions WHERE duration_seconds > ?", ("many",))
                cur.fetchall()
            text = str(err.value)
            assert "InvalidArgument" in text or "INVALID_ARGUMENT" in text, text
            assert "parameter $1" in text, text
            # A text that is a number converts: 3 events last over 300 s.
            cur.execute("SELECT count(*) FROM fact_interactions WHERE duration_seconds > ?", ("300",))
            assert cur.fetchall() == [(3,)]


# SQLAlchemy (sqlalchemy-adbc) and pandas ---------------------------------------------------

def test_sqlalchemy_inspector_maps_every_column_to_a_sql_type():
    inspector = sa.inspect(engine())
    assert "cc_analytics" in inspector.get_schema_names()
    assert inspector.has_table("fact_interactions", schema="cc_analytics")
    # (get_table_names is empty with sqlalchemy-adbc 0.3.0: it only knows the lower-case
    # table types of the SQLite and PostgreSQL drivers, while Flight SQL servers, cclake
    # included, report TABLE and VIEW as JDBC does. See README, "Clients".)
    columns = {c["name"]: c["type"] for c in inspector.get_columns("fact_interactions", schema="cc_analytics")}
    assert len(columns) == 18, columns
    for name, sql_type in columns.items():
        assert not isinstance(sql_type, sa.types.NullType), (name, sql_type)
        assert not isinstance(sql_type, sa.types.LargeBinary), (name, sql_type)
    assert isinstance(columns["queue_name"], sa.String)
    assert isinstance(columns["duration_seconds"], sa.BigInteger)
    assert isinstance(columns["event_date"], sa.Date)
    assert isinstance(columns["event_timestamp"], sa.DateTime)
    view = {c["name"]: c["type"] for c in inspector.get_columns("kpi_queue_daily", schema="cc_analytics")}
    assert isinstance(view["abandon_rate"], sa.Float), view


def test_pandas_reads_through_sqlalchemy_with_parameters():
    frame = pd.read_sql(
        sa.text("SELECT event_id FROM fact_interactions WHERE queue_name = :queue ORDER BY event_id"),
        engine(), params={"queue": "Billing"})
    assert frame["event_id"].tolist() == BILLING


def test_sqlalchemy_core_query_with_a_bound_parameter():
    with engine().connect() as conn:
        got = conn.execute(sa.text("SELECT count(*) FROM fact_interactions WHERE duration_seconds >= :d"), {"d": 350})
        # e2 (350 s after its correction), e6 (600 s), e8 (1200 s).
        assert got.scalar() == 3


# polars over an ADBC connection -----------------------------------------------------------

def test_polars_reads_over_adbc():
    with connect() as conn:
        frame = pl.read_database(
            "SELECT event_id, queue_name FROM fact_interactions WHERE queue_name = 'Billing' ORDER BY event_id",
            connection=conn)
    assert frame["event_id"].to_list() == BILLING
    assert frame.schema["queue_name"] == pl.String
