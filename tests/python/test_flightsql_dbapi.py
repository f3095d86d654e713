"""flightsql-dbapi 0.2.2 (DB-API 2 and a SQLAlchemy 1.x dialect over pyarrow.flight) against
cclake, unmodified. It binds `?` parameters with DoPut and then executes the handle it got
at creation, ignoring the one DoPut returns: the server keeps the parameters for it.

Runs in its own venv (.venv-sqlalchemy1: flightsql-dbapi needs SQLAlchemy < 2), started by
tests/flight.rs with the server's address in CCLAKE_FLIGHT_URL. Expected values are the
fixtures' (testdata/README.md).
"""
import os
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa
from flightsql import FlightSQLClient, connect

WHERE = urlparse(os.environ["CCLAKE_FLIGHT_URL"])
BILLING = [["e2"], ["e7"], ["e8"], ["e9"]]


def client():
    return FlightSQLClient(host=WHERE.hostname, port=WHERE.port, user="ana", password="analyst-pw", insecure=True)


def test_dbapi_query_with_question_mark_parameters():
    conn = connect(client())
    cur = conn.cursor()
    cur.execute("SELECT event_id FROM fact_interactions WHERE queue_name = ? ORDER BY event_id", ["Billing"])
    assert [list(r) for r in cur.fetchall()] == BILLING
    cur.execute("SELECT count(*) FROM fact_interactions WHERE queue_name = ? AND duration_seconds >= ?", ["Billing", 350])
    assert [list(r) for r in cur.fetchall()] == [[2]]
    # The same prepared statement shape again, other values: no stale parameters.
    # Billing holds e2, e7, e8, e9; e7 has no duration.
    cur.execute("SELECT count(*) FROM fact_interactions WHERE queue_name = ? AND duration_seconds >= ?", ["Billing", 0])
    assert cur.fetchall()[0][0] == 3


def test_dbapi_describes_columns_with_sql_types():
    conn = connect(client())
    cur = conn.cursor()
    cur.execute("SELECT event_id, duration_seconds, event_date FROM fact_interactions LIMIT 1")
    types = {name: t for name, t in cur.description}
    assert types["event_id"] == sa.types.TEXT
    assert types["duration_seconds"] == sa.types.BIGINT
    assert types["event_date"] == sa.types.DATE


def engine():
    # Without its prepared-statements feature the dialect pastes bound values into the SQL
    # text itself (and renders text() binds as NULL): real parameters need the feature on.
    return sa.create_engine(f"datafusion://ana:analyst-pw@{WHERE.hostname}:{WHERE.port}"
                            "?insecure=True&feature-sqlalchemy-prepared-statements=on")


def test_sqlalchemy_inspector_maps_columns():
    inspector = sa.inspect(engine())
    assert "cc_analytics" in inspector.get_schema_names()
    assert "fact_interactions" in inspector.get_table_names(schema="cc_analytics")
    columns = {c["name"]: c["type"] for c in inspector.get_columns("fact_interactions", schema="cc_analytics")}
    for name, sql_type in columns.items():
        assert not isinstance(sql_type, (sa.types.BLOB, sa.types.NullType)), (name, sql_type)
    assert isinstance(columns["queue_name"], sa.types.TEXT)
    assert isinstance(columns["event_timestamp"], sa.types.TIMESTAMP)
    assert isinstance(columns["duration_seconds"], sa.types.BIGINT)
    assert isinstance(columns["event_date"], sa.types.DATE)


def test_sqlalchemy_query_with_a_parameter():
    with engine().connect() as conn:
        got = conn.execute(sa.text("SELECT event_id FROM fact_interactions WHERE queue_name = :q ORDER BY event_id"),
                           {"q": "Billing"})
        assert [list(r) for r in got] == BILLING


def test_a_bad_binding_is_refused_with_the_reason():
    conn = connect(client())
    cur = conn.cursor()
    # flightsql-dbapi ignores the DoPut's answer; the execution that follows says why.
    with pytest.raises(Exception) as err:
        cur.execute("SELECT ? AS x", [1, 2])
    assert "were refused" in str(err.value) and "1 parameter(s) ($1) but 2 value(s)" in str(err.value), str(err.value)
