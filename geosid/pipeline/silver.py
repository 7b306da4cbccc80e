"""Pipeline steps of the silver layer: geo context, item embeddings, their gate."""

from __future__ import annotations

from geosid.embedding.documents import TEXT_TEMPLATE, WITH_LOCATION
from geosid.embedding.location import LocationEncoder
from geosid.jobs import validate as validate_job
from geosid.jobs.embed import Representation, run_embed
from geosid.jobs.geo import GeoConfig, run_geo
from geosid.lake import DateLike, as_date
from geosid.pipeline.context import Context, use
from geosid.pipeline.gates import GateReport
from geosid.pipeline.records import record, require_arrived
from geosid.pipeline.scopes import CellScope, EmbedScope, Stage
from geosid.schemas import silver


def geo_config(ctx: Context):
    return GeoConfig(cell_config=ctx.settings.cells, window_days=ctx.settings.geo_window_days)


def geo(day: DateLike, *, with_items: bool = True, ctx: Context | None = None, lake_root: str | None = None):
    """silver.geo_cells (and silver.item_geo) as of a logical date."""

    day = as_date(day)
    with use(ctx, lake_root, writes=f"geo {day}") as ctx:
        require_arrived(ctx, day)
        config = geo_config(ctx)
        label = f"geo context as of {day} ({config.cells().name} cells, {config.window_days}-day activity window)"
        with ctx.stage(label, timed="geo"):
            report = run_geo(ctx.lake, day, config, with_items=with_items)
            record_geo(ctx, config, [day], with_items=with_items)
        ctx.log(report.summary())
        return report


def record_geo(ctx: Context, config, days, *, with_items: bool, mode: str = "day") -> None:
    scope = CellScope(config.cells().name)
    record(ctx, Stage.GEO_CELLS, scope, days, config.to_record(), mode)
    if with_items:
        record(ctx, Stage.ITEM_GEO, scope, [max(days)], config.to_record(), mode)


def representation(ctx: Context, template: str | None = None, encoder: str | None = None):
    """The representation the settings name (template, text encoder, location weight)."""

    template = template or ctx.settings.template
    location = LocationEncoder(weight=ctx.settings.location_weight) if WITH_LOCATION.get(template) else None
    return Representation(template, encoder or ctx.settings.encoder, location)


def embed(day: DateLike, encoder: str | None = None, template: str | None = None, *, ctx: Context | None = None, lake_root: str | None = None):
    """Embed the new and changed item documents of a logical date under a representation
    (default: the settings'). A template whose text is another template's document
    (geo-doc-v2 reads geo-doc-v1's) embeds that one first and reuses its text vectors."""

    day = as_date(day)
    with use(ctx, lake_root, writes=f"embed {day}") as ctx:
        require_arrived(ctx, day)
        wanted = representation(ctx, template, encoder)
        steps = [representation(ctx, TEXT_TEMPLATE[wanted.template_id], encoder)] if TEXT_TEMPLATE[wanted.template_id] != wanted.template_id else []
        for rep in [*steps, wanted]:
            with ctx.stage(f"item embeddings as of {day} ({rep.template_id}, {rep.model_id})", timed=f"embed {rep.template_id}"):
                report = run_embed(ctx.lake, day, rep, progress=ctx.progress, chunk_size=ctx.settings.embed_chunk_size, log=ctx.log)
                record_embed(ctx, rep, day)
            ctx.log(report.summary())
            if report.embedded:
                ctx.log(f"    {report.docs_per_s:,.0f} documents/s")
        return report


def record_embed(ctx: Context, rep, day, mode: str = "day") -> None:
    scope = EmbedScope.of(rep)
    record(ctx, Stage.of(silver.ITEM_EMBEDDINGS.name, scope), scope, [day], rep.to_record(), mode)


def validate_silver(day: DateLike, *, ctx: Context | None = None, lake_root: str | None = None) -> GateReport:
    """The silver suites of a day, and the embeddings' and SID map's."""

    day = as_date(day)
    with use(ctx, lake_root, writes="validate_silver") as ctx:
        with ctx.stage("data quality (great-expectations)", timed="validate silver"):
            gate = GateReport("silver", day, day, validate_job.validate_silver(ctx.lake, day))
        ctx.log(gate.summary())
        return gate
