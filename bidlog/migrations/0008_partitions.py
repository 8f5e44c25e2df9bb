"""Partition the bid log and the calls by month of created_at on PostgreSQL (SQLite: plain).

Works on a database with data, in the migration's one transaction: each table is renamed
aside, a partitioned table ``LIKE`` it is created (columns, defaults, CHECK constraints), with
a partition for every month that has rows, the months ``bidlog.partitions`` keeps ahead and a
default partition; the rows are copied, the old table dropped, then the id sequence, the
primary key ``(id, created_at)``, the indexes and the foreign keys are recreated (indexes
after the copy: building them once is faster than maintaining them row by row).

Before that, the Django operations make the model fit a partitioned table on every database:
the unique route_key and external_id include created_at, and the bid's key to its call is
kept by Django only (a foreign key can only reference a partitioned table's whole unique key).

Reversible: going back builds plain tables from the partitioned ones the same way. The table
is locked for the length of the copy: at 50 million rows, plan a maintenance window.
"""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

from bidlog.partitions import (
    month_floor,
    month_next,
    partition_create,
    partition_default_create,
)

TABLES = ("bidlog_call", "bidlog_bidlog")
# Frozen here (the setting may change later): beat's daily task keeps its own count ahead.
MONTHS_AHEAD = 3


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_parts(cursor, table: str) -> tuple[list[str], list[tuple[str, str]], tuple]:
    """The table's index definitions (not its primary key), foreign keys, and sequence state."""
    cursor.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = %s AND indexname <> %s ORDER BY indexname",
        [table, f"{table}_pkey"],
    )
    # A partitioned table's own index reads "ON ONLY t"; recreated, it must cover every part.
    indexes = [row[0].replace(" ON ONLY ", " ON ") for row in cursor.fetchall()]
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [_q(table)],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(
        "SELECT conname FROM pg_constraint WHERE confrelid = %s::regclass AND contype = 'f'",
        [_q(table)],
    )
    if referencing := cursor.fetchall():
        raise RuntimeError(f"{table} is referenced by {referencing}; drop those keys first")
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    sequence = cursor.fetchone()[0]
    cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
    return indexes, foreign_keys, cursor.fetchone()


def _finish(cursor, table: str, parts: tuple, primary_key: str) -> None:
    indexes, foreign_keys, (last_value, is_called) = parts
    cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(table + '_pkey')} {primary_key}")
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [table, last_value, is_called])
    for index in indexes:
        cursor.execute(index)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} {definition}")


def _like(table: str, old: str) -> str:
    return (
        f"CREATE TABLE {_q(table)} (LIKE {_q(old)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING STORAGE INCLUDING COMMENTS)"
    )


def partition(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        # Both at once, before creating partitions sets a short lock_timeout for the rest of
        # the transaction (bidlog.partitions).
        cursor.execute(f"LOCK TABLE {', '.join(map(_q, TABLES))} IN ACCESS EXCLUSIVE MODE")
    for table in TABLES:
        old = f"{table}_unpartitioned"
        with schema_editor.connection.cursor() as cursor:
            parts = _table_parts(cursor, table)
            cursor.execute(f"ALTER TABLE {_q(table)} RENAME TO {_q(old)}")
            cursor.execute(f"{_like(table, old)} PARTITION BY RANGE (created_at)")
            cursor.execute(
                f"SELECT DISTINCT date_trunc('month', created_at, 'UTC') FROM {_q(old)}"
            )
            months = {month_floor(row[0]) for row in cursor.fetchall()}
            cursor.execute("SELECT now()")
            month = month_floor(cursor.fetchone()[0])
            for _ in range(MONTHS_AHEAD + 1):
                months.add(month)
                month = month_next(month)
        for month in sorted(months):
            partition_create(table=table, month=month)
        partition_default_create(table)
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {_q(table)} SELECT * FROM {_q(old)}")
            cursor.execute(f"DROP TABLE {_q(old)}")
            cursor.execute(f"CREATE SEQUENCE {_q(table + '_id_seq')} OWNED BY {_q(table)}.id")
            cursor.execute(
                f"ALTER TABLE {_q(table)} ALTER COLUMN id "
                f"SET DEFAULT nextval('{table}_id_seq'::regclass)"
            )
            _finish(cursor, table, parts, "PRIMARY KEY (id, created_at)")
            cursor.execute(f"ANALYZE {_q(table)}")


def unpartition(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        old = f"{table}_partitioned"
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {_q(table)} IN ACCESS EXCLUSIVE MODE")
            parts = _table_parts(cursor, table)
            cursor.execute(f"ALTER TABLE {_q(table)} RENAME TO {_q(old)}")
            cursor.execute(_like(table, old))
            cursor.execute(f"ALTER TABLE {_q(table)} ALTER COLUMN id DROP DEFAULT")
            cursor.execute(f"INSERT INTO {_q(table)} SELECT * FROM {_q(old)}")
            cursor.execute(f"DROP TABLE {_q(old)}")
            cursor.execute(
                f"ALTER TABLE {_q(table)} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"
            )
            _finish(cursor, table, parts, "PRIMARY KEY (id)")


class Migration(migrations.Migration):
    dependencies = [
        ("bidlog", "0007_bidlog_trace"),
        ("buyers", "0002_health_and_alerts"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="bidlog", name="bidlog_bidlog_external_id_unique"),
        migrations.RemoveConstraint(model_name="call", name="bidlog_call_route_key_unique"),
        migrations.AlterField(
            model_name="bidlog",
            name="call",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=models.deletion.SET_NULL,
                related_name="bids",
                to="bidlog.call",
            ),
        ),
        migrations.AddConstraint(
            model_name="bidlog",
            constraint=models.UniqueConstraint(
                condition=models.Q(("external_id__isnull", False)),
                fields=("external_id", "created_at"),
                name="bidlog_bidlog_external_id_unique",
            ),
        ),
        migrations.AddConstraint(
            model_name="call",
            constraint=models.UniqueConstraint(
                condition=models.Q(("route_key__isnull", False)),
                fields=("route_key", "created_at"),
                name="bidlog_call_route_key_unique",
            ),
        ),
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
