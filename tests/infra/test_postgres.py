"""The PostgreSQL `make test` starts is fit for the CDC (logical decoding) and for per-test databases."""
from __future__ import annotations

from sqlalchemy import create_engine, text


def test_wal_level_is_logical(pg_admin_url):
    engine = create_engine(pg_admin_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW wal_level")).scalar_one() == "logical"
    finally:
        engine.dispose()


def test_a_fresh_database_accepts_tables_and_rows(pg_url):
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE probe (id serial PRIMARY KEY, note text NOT NULL)"))
            conn.execute(text("INSERT INTO probe (note) VALUES ('hello')"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT note FROM probe")).scalars().all() == ["hello"]
            assert conn.execute(text("SELECT current_database()")).scalar_one() == pg_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()
