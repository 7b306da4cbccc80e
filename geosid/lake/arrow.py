"""Registered schemas as Arrow: Spark types to Arrow types, schema checks of writes
(`conform`, `conform_arrow`), and the order-free content digest of an Arrow table.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from geosid.errors import SchemaMismatchError
from geosid.schemas import TableSpec


def spark_type_to_arrow(data_type: T.DataType) -> pa.DataType:
    simple = {
        T.StringType: pa.string(),
        T.LongType: pa.int64(),
        T.IntegerType: pa.int32(),
        T.ShortType: pa.int16(),
        T.DoubleType: pa.float64(),
        T.FloatType: pa.float32(),
        T.BooleanType: pa.bool_(),
        T.DateType: pa.date32(),
        T.TimestampType: pa.timestamp("us", tz="UTC"),
        T.BinaryType: pa.binary(),
    }
    for spark_cls, arrow_type in simple.items():
        if isinstance(data_type, spark_cls):
            return arrow_type
    if isinstance(data_type, T.ArrayType):
        return pa.list_(spark_type_to_arrow(data_type.elementType))
    if isinstance(data_type, T.StructType):
        return pa.struct([pa.field(f.name, spark_type_to_arrow(f.dataType), f.nullable) for f in data_type.fields])
    if isinstance(data_type, T.MapType):
        return pa.map_(spark_type_to_arrow(data_type.keyType), spark_type_to_arrow(data_type.valueType))
    raise TypeError(f"no arrow mapping for Spark type {data_type.simpleString()}")


def spec_arrow_schema(spec: TableSpec) -> pa.Schema:
    # Nullability constraints are checked by the data-quality suites, not by the storage
    # layer: engines disagree on how they infer it, and a declared NOT NULL would make
    # a valid write fail on one engine and pass on another.
    return pa.schema([pa.field(f.name, spark_type_to_arrow(f.dataType), True) for f in spec.schema.fields])


def conform(df: DataFrame, spec: TableSpec) -> DataFrame:
    """Check `df` against the registered schema and order its columns like the table.

    Types must match exactly (no silent widening); a missing, extra or mistyped column
    raises SchemaMismatchError naming it.
    """
    actual = {f.name: f.dataType for f in df.schema.fields}
    problems = []
    for field in spec.schema.fields:
        if field.name not in actual:
            problems.append(f"column '{field.name}' is missing (expected {field.dataType.simpleString()})")
        elif actual[field.name].simpleString() != field.dataType.simpleString():
            problems.append(f"column '{field.name}' has type {actual[field.name].simpleString()}, table expects {field.dataType.simpleString()}")
    extra = [name for name in actual if name not in spec.columns]
    problems += [f"column '{name}' is not in the table's schema" for name in extra]
    if problems:
        raise SchemaMismatchError(f"write to {spec.name} rejected: " + "; ".join(problems))
    return df.select(*spec.columns)


def conform_arrow(data: pa.Table, spec: TableSpec) -> pa.Table:
    """`conform` for Arrow data: the registered columns, each castable to its type
    without loss (ints stay ints), in table order."""
    target = spec_arrow_schema(spec)
    problems = [f"column '{n}' is missing (expected {target.field(n).type})" for n in target.names if n not in data.column_names]
    problems += [f"column '{n}' is not in the table's schema" for n in data.column_names if n not in target.names]
    if problems:
        raise SchemaMismatchError(f"write to {spec.name} rejected: " + "; ".join(problems))
    try:
        return data.select(target.names).cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaMismatchError(f"write to {spec.name} rejected: {exc}") from exc


# The digest of a day without rows (`Lake.day_digests`).
EMPTY_DIGEST = "empty"


def table_digest(data: pa.Table) -> str:
    """A digest of a table's content that ignores row order: each row is hashed on its
    canonical text, and the sorted row hashes are hashed together."""
    rows = sorted(hashlib.sha256(repr(row).encode()).digest() for row in data.to_pylist())
    total = hashlib.sha256()
    for row in rows:
        total.update(row)
    return total.hexdigest()[:16]
