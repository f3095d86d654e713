"""cclake's Flight SQL server through the clients users have: the ADBC Flight SQL driver (the
Go driver BI tools and notebooks use) and pyarrow.flight.

Run by tests/flight.rs, which starts `cclake serve` over the testdata fixtures (plaintext and
TLS) and passes the addresses in CCLAKE_FLIGHT_URL, CCLAKE_FLIGHT_TLS_URL and
CCLAKE_FLIGHT_TLS_CERT. Users: `ana` (analyst, analyst-pw) and `aud` (auditor, auditor-pw).
"""
import base64
import datetime
import json
import os
import subprocess

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

URL = os.environ["CCLAKE_FLIGHT_URL"]
TLS_URL = os.environ["CCLAKE_FLIGHT_TLS_URL"]
TLS_CERT = os.environ["CCLAKE_FLIGHT_TLS_CERT"]
LAKE = os.environ["CCLAKE_LAKE"]
BIN = os.environ["CCLAKE_BIN"]

ANALYST = {"username": "ana", "password": "analyst-pw"}
AUDITOR = {"username": "aud", "password": "auditor-pw"}


def connect(creds=ANALYST, url=URL, **extra):
    return flightsql.connect(url, db_kwargs={**creds, **extra}, autocommit=True)


def rows(conn, sql, parameters=None):
    with conn.cursor() as cur:
        cur.execute(sql, parameters=parameters)
        return cur.fetchall()


def lake_counts():
    """Row counts read in-process, bypassing the server."""
    out = subprocess.run(
        [BIN, "query", "--lake", LAKE, "--format", "json",
         "SELECT (SELECT count(*) FROM fact_interactions) AS facts, "
         "(SELECT count(*) FROM quarantine) AS quarantine, "
         "(SELECT count(*) FROM call_recordings) AS recordings"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)[0]


# Authentication ---------------------------------------------------------------------------

def test_analyst_signs_in_and_queries():
    with connect() as conn:
        assert rows(conn, "SELECT count(*) FROM fact_interactions") == [(11,)]


def test_wrong_password_is_unauthenticated():
    with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
        with connect({"username": "ana", "password": "nope"}) as conn:
            rows(conn, "SELECT 1")
    assert "UNAUTHENTICATED" in str(err.value)
    assert "wrong user name or password" in str(err.value)


def test_unknown_user_is_unauthenticated():
    with pytest.raises(adbc_driver_manager.ProgrammingError) as err:
        with connect({"username": "mallory", "password": "x"}) as conn:
            rows(conn, "SELECT 1")
    assert "UNAUTHENTICATED" in str(err.value)


def test_basic_credentials_with_padding_get_a_bearer_header():
    # pyarrow (C++) pads its base64; the Go driver behind every ADBC test here does not
    # ("ana:analyst-pw" needs one "=").
    assert base64.b64encode(b"ana:analyst-pw").decode().endswith("=")
    client = flight.FlightClient(URL)
    key, value = client.authenticate_basic_token("ana", "analyst-pw")
    assert key == b"authorization" and value.startswith(b"Bearer ")
    client.close()


@pytest.mark.parametrize("call", ["list_actions", "list_flights", "get_flight_info", "get_schema", "do_action"])
def test_every_rpc_needs_a_token(call):
    client = flight.FlightClient(URL)
    descriptor = flight.FlightDescriptor.for_command(b"junk")
    # pyarrow raises GetSchema's UNAUTHENTICATED as a plain OSError: check the status text.
    with pytest.raises((flight.FlightUnauthenticatedError, OSError)) as err:
        if call == "list_actions":
            list(client.list_actions())
        elif call == "list_flights":
            list(client.list_flights())
        elif call == "get_flight_info":
            client.get_flight_info(descriptor)
        elif call == "get_schema":
            client.get_schema(descriptor)
        else:
            list(client.do_action(flight.Action("CloseSession", b"")))
    assert "unauthenticated" in str(err.value).lower()
    client.close()


def test_do_get_without_a_token_is_unauthenticated():
    client = flight.FlightClient(URL)
    with pytest.raises(flight.FlightUnauthenticatedError) as err:
        client.do_get(flight.Ticket(b"anything")).read_all()
    assert "authorization" in str(err.value).lower() or "handshake" in str(err.value).lower()
    client.close()


def test_a_bad_ticket_is_an_invalid_argument():
    client = flight.FlightClient(URL)
    key, value = client.authenticate_basic_token("ana", "analyst-pw")
    options = flight.FlightCallOptions(headers=[(key, value)])
    # INVALID_ARGUMENT, which pyarrow raises as ArrowInvalid.
    with pytest.raises(pa.ArrowInvalid) as err:
        client.do_get(flight.Ticket(b"not a protobuf"), options=options).read_all()
    assert "invalid argument" in str(err.value).lower()
    client.close()


def test_client_input_is_not_echoed_unbounded():
    client = flight.FlightClient(URL)
    key, value = client.authenticate_basic_token("ana", "analyst-pw")
    options = flight.FlightCallOptions(headers=[(key, value)])
    with pytest.raises(pa.ArrowInvalid) as err:
        list(client.do_action(flight.Action("x" * 100_000, b""), options=options))
    text = str(err.value)
    assert "unknown action" in text and "(100000 characters)" in text, text[:300]
    assert len(text) < 3_000, len(text)
    client.close()


def test_a_forged_token_is_unauthenticated():
    client = flight.FlightClient(URL)
    options = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer 00ff")])
    with pytest.raises(flight.FlightUnauthenticatedError) as err:
        client.do_get(flight.Ticket(b"x"), options=options).read_all()
    assert "unknown bearer token" in str(err.value)
    client.close()


# Roles ------------------------------------------------------------------------------------

def test_analyst_may_not_read_call_recordings():
    with connect() as conn:
        with pytest.raises(adbc_driver_manager.Error) as err:
            rows(conn, "SELECT * FROM call_recordings")
        assert "PERMISSION" in str(err.value) or "UNAUTHORIZED" in str(err.value)
        assert "role analyst may not read call_recordings" in str(err.value)
        with pytest.raises(adbc_driver_manager.Error) as err:
            rows(conn, "SELECT count(*) FROM cc_analytics.call_recordings")
        assert "role analyst may not read call_recordings" in str(err.value)


def tables_seen(conn):
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    return {
        (c["catalog_name"], s["db_schema_name"], t["table_name"], t["table_type"])
        for c in objects for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []
    }


def test_analyst_metadata_hides_call_recordings():
    with connect() as conn:
        names = {t[2] for t in tables_seen(conn)}
        assert "fact_interactions" in names and "kpi_queue_daily" in names
        assert "call_recordings" not in names
        assert rows(conn, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'call_recordings'") == [(0,)]


def test_auditor_reads_everything():
    with connect(AUDITOR) as conn:
        assert ("cclake", "cc_analytics", "call_recordings", "TABLE") in tables_seen(conn)
        assert rows(conn, "SELECT event_id, recording_url FROM call_recordings") == [("e6", "s3://recordings-bucket/i3.wav")]


# Read-only --------------------------------------------------------------------------------

REFUSED = [
    "INSERT INTO quarantine SELECT * FROM quarantine",
    "UPDATE fact_interactions SET duration_seconds = 0",
    "DELETE FROM fact_interactions",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/passwd'",
    "COPY (SELECT * FROM fact_interactions) TO '/tmp/cclake-leak.csv'",
    "SET datafusion.execution.batch_size = 1",
    "DROP TABLE fact_interactions",
    "DROP VIEW kpi_queue_daily",
    "TRUNCATE TABLE quarantine",
]


@pytest.mark.parametrize("sql", REFUSED)
def test_every_write_is_refused(sql):
    before = lake_counts()
    with connect(AUDITOR) as conn:
        with pytest.raises(adbc_driver_manager.Error) as err:
            rows(conn, sql)
        assert "read-only" in str(err.value) or "not supported" in str(err.value).lower(), str(err.value)
    assert lake_counts() == before
    assert not os.path.exists("/tmp/cclake-leak.csv")


def test_file_reading_functions_do_not_exist():
    with connect(AUDITOR) as conn:
        for function in ["read_csv", "read_parquet"]:
            with pytest.raises(adbc_driver_manager.Error) as err:
                rows(conn, f"SELECT * FROM {function}('/etc/passwd')")
            assert f"table function '{function}' not found" in str(err.value), str(err.value)
        # Nor is a path a table.
        with pytest.raises(adbc_driver_manager.Error) as err:
            rows(conn, "SELECT * FROM '/etc/passwd'")
        assert "not found" in str(err.value) and "root:" not in str(err.value), str(err.value)


def test_adbc_bulk_ingest_is_refused():
    before = lake_counts()
    with connect(AUDITOR) as conn:
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.adbc_ingest("quarantine", pa.table({"x": [1]}), mode="append")
        assert "read-only" in str(err.value)
    assert lake_counts() == before


# Queries, parameters, views ---------------------------------------------------------------

def test_question_mark_and_dollar_parameters():
    with connect() as conn:
        assert rows(conn, "SELECT event_id FROM fact_interactions WHERE queue_name = ? ORDER BY 1", ("Billing",)) == [
            ("e2",), ("e7",), ("e8",), ("e9",)]
        assert rows(conn, "SELECT count(*) FROM fact_interactions WHERE duration_seconds > $1", (300,)) == [(3,)]
        assert rows(conn, "SELECT count(*) FROM fact_interactions WHERE queue_name = ? AND duration_seconds >= ?",
                    ("Billing", 350)) == [(2,)]


def test_aggregates_over_parquet_keep_the_schema_consistent():
    with connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*), min(event_timestamp), max(event_date), sum(duration_seconds) FROM fact_interactions")
            table = cur.fetch_arrow_table()
            assert table.num_rows == 1
            assert table.column(0).to_pylist() == [11]
            schema = cur.adbc_execute_schema("SELECT count(*) AS n FROM fact_interactions")
            assert schema.names == ["n"]


def test_views_answer_kpis():
    with connect() as conn:
        assert rows(conn, "SELECT final_state, queue_name, handle_seconds FROM interactions WHERE interaction_id = 'i1'") == [
            ("completed", "Billing", 350)]
        # i2 straddles midnight: started 23:58, completed 23:59:30 after its correction.
        # It belongs to the day it started on.
        assert rows(conn, "SELECT final_state, interaction_date FROM interactions WHERE interaction_id = 'i2'") == [
            ("completed", datetime.date(2024, 3, 4))]
        kpi = rows(conn, "SELECT offered, completed, abandoned FROM kpi_queue_daily WHERE queue_name = 'Billing' AND date = DATE '2024-03-01'")
        assert kpi == [(1, 0, 1)]
        assert rows(conn, "SELECT count(*) FROM dim_date") == [(5,)]
        assert rows(conn, "SELECT day_of_week, iso_week, quarter FROM dim_date WHERE date = DATE '2024-03-04'") == [(1, 10, 1)]


def test_tls_with_the_servers_certificate():
    with open(TLS_CERT) as f:
        root = f.read()
    conn = flightsql.connect(TLS_URL, db_kwargs={
        **ANALYST, "adbc.flight.sql.client_option.tls_root_certs": root}, autocommit=True)
    with conn:
        assert rows(conn, "SELECT count(*) FROM fact_interactions") == [(11,)]


def test_tls_without_trust_fails():
    with pytest.raises(adbc_driver_manager.Error) as err:
        with flightsql.connect(TLS_URL, db_kwargs=ANALYST, autocommit=True) as conn:
            rows(conn, "SELECT 1")
    # The client refuses the server's certificate: not any failure (a refused sign-in or
    # a server that is not there would fail too).
    text = str(err.value).lower()
    assert "certificate" in text or "x509" in text or "tls" in text, err.value
