"""Item documents: versioned templates rendering an item for its encoder.

Templates (each deterministic, one document per item and day):

- `content-v1`: what the item is, nothing of where: its title / category, brand, tags,
  price level (the first five lines of geo-doc-v1). Text-only SIDs embed this.
- `geo-doc-v1`: content plus coarse surroundings, as text (below).
- `geo-doc-v2`: geo-doc-v1's text plus the item's exact location, a last line
  `location: <lat>, <lon>` (6 decimals, about 0.1 m). Its vector fuses the text embedding
  with a multi-scale location encoding (`geosid.embedding.location`), so two items with
  the same text at different places get different vectors; the text part is the
  geo-doc-v1 document, whose embedding is reused when it exists.

Template `geo-doc-v1`:

    {title, else the category}
    category: {category}
    brand: {brand}                                (when known)
    tags: {tag, tag, ...}                         (when any)
    price level: {budget|moderate|premium|luxury} (when priced)
    area: {quiet|moderate|busy|dense} ({bucket} places within the cell and its neighbours)
    nearby: {the area's 3 most common categories}
    nearby brands: {the area's 3 most common brands}  (when any)
    this block: {the own cell's 3 most common categories}

Context is summarized coarsely (ranked names and density buckets, never raw counts) so
that a document, and so its embedding, changes only when the surroundings really change.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from geosid.embedding.templates import TEMPLATE_CONTENT, TEMPLATE_V1, TEMPLATES, TEXT_TEMPLATE, WITH_LOCATION
from geosid.errors import UnknownNameError

# Upper bounds of the area-density buckets (items in the 3x3 block of cells).
DENSITY_BUCKETS = ((10, "quiet"), (50, "moderate"), (200, "busy"))
COUNT_BUCKETS = ((5, "under 5"), (20, "5-20"), (100, "20-100"), (500, "100-500"))
PRICE_LEVELS = ((30.0, "budget"), (100.0, "moderate"), (300.0, "premium"))


def _bucket(value: Column, bounds: tuple, last: str) -> Column:
    expr = F.lit(last)
    for bound, label in reversed(bounds):
        expr = F.when(value < F.lit(bound), F.lit(label)).otherwise(expr)
    return expr


def _names(histogram: Column, n: int = 3) -> Column:
    return F.array_join(F.transform(F.slice(histogram, 1, n), lambda s: s["name"]), ", ")


def _line(label: str, value: Column) -> Column:
    """`label: value`, or null (dropped by concat_ws) when the value is null or empty."""
    return F.when(value.isNotNull() & (F.length(value) > 0), F.concat(F.lit(f"{label}: "), value))


def _content_lines() -> list[Column]:
    tags = F.when(F.size("tags") > 0, F.array_join("tags", ", "))
    return [
        F.coalesce(F.col("title"), F.col("category"), F.col("content")),
        _line("category", F.col("category")),
        _line("brand", F.col("brand")),
        _line("tags", tags),
        _line("price level", F.when(F.col("price").isNotNull(), _bucket(F.col("price"), PRICE_LEVELS, "luxury"))),
    ]


def render_content(item_geo: DataFrame) -> Column:
    return F.concat_ws("\n", *_content_lines())


def render_v1(item_geo: DataFrame) -> Column:
    return F.concat_ws(
        "\n",
        *_content_lines(),
        F.concat(
            F.lit("area: "),
            _bucket(F.col("area_n_items"), DENSITY_BUCKETS, "dense"),
            F.lit(" ("),
            _bucket(F.col("area_n_items"), COUNT_BUCKETS, "over 500"),
            F.lit(" places within the cell and its neighbours)"),
        ),
        _line("nearby", _names(F.col("area_top_categories"))),
        _line("nearby brands", _names(F.col("area_top_brands"))),
        _line("this block", _names(F.col("cell.top_categories"))),
    )


def _hash(template: Column, document: Column) -> Column:
    return F.sha2(F.concat_ws("\n", template, document), 256)


def fixed6(value: Column) -> Column:
    """A double as text with 6 decimals, rounded half away from zero on the binary value
    times 10^6, in integer arithmetic: the same text on every engine (`format_string`
    does not round alike on Sail and JVM Spark: for one NYC venue Sail wrote -73.977437,
    JVM Spark -73.977438)."""
    micro = F.floor(F.abs(value) * F.lit(1e6) + F.lit(0.5)).cast("long")
    whole = F.floor(micro / F.lit(1_000_000)).cast("long").cast("string")
    fraction = F.lpad((micro % F.lit(1_000_000)).cast("string"), 6, "0")
    sign = F.when(value < 0, F.lit("-")).otherwise(F.lit(""))
    return F.when(value.isNull(), F.lit(None).cast("string")).otherwise(F.concat(sign, whole, F.lit("."), fraction))


def documents(item_geo: DataFrame, template_id: str = TEMPLATE_V1) -> DataFrame:
    """silver.item_geo -> (source, item_id, template_id, document, doc_hash, text,
    text_hash, lat, lon): `text` is what the text encoder reads (the text template's
    document) and `text_hash` its hash under that template, so a text embedding made for
    one template serves every template sharing its text."""
    if template_id not in TEMPLATES:
        raise UnknownNameError(f"unknown document template {template_id!r}; known: {', '.join(TEMPLATES)}")
    text = render_content(item_geo) if TEXT_TEMPLATE[template_id] == TEMPLATE_CONTENT else render_v1(item_geo)
    document = text
    if WITH_LOCATION[template_id]:
        document = F.concat(text, F.lit("\nlocation: "), fixed6(F.col("lat")), F.lit(", "), fixed6(F.col("lon")))
    return item_geo.select(
        "source",
        "item_id",
        F.lit(template_id).alias("template_id"),
        document.alias("document"),
        text.alias("text"),
        "lat",
        "lon",
    ).select(
        "source",
        "item_id",
        "template_id",
        "document",
        _hash(F.col("template_id"), F.col("document")).alias("doc_hash"),
        "text",
        _hash(F.lit(TEXT_TEMPLATE[template_id]), F.col("text")).alias("text_hash"),
        "lat",
        "lon",
    )
