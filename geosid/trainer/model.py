"""The OneLoc model: a geo-aware encoder over multi-behavior histories and a decoder that
emits an item's SID token by token after a neighbour-aware prompt.

Encoder input per history event, as the paper has it: MLP(concat(e_v, e_lid, e_lc)) with
e_v the item: its item-id embedding (a frequency cut-off maps rare items to one shared
row) plus the embeddings of its full SID (codes and digit) and of the behavior; e_lid
and e_lc the location-id and location-context embeddings of the event's cell.

Switches (`OneLocConfig`), for the paper's ablations and the TIGER baseline:
location_scores (geo-aware attention scores), location_gate, prompt (neighbor |
pointwise | mlp | none), item_embedding (e_v's id part), geo_inputs (e_lid and e_lc in
the input; off, with scores, gate and prompt off: TIGER).

Five additions to the paper, on by default (the benchmark ablates them):
time_features: the hour of the week of every history event and of the request, and each
event's age at the request (log2 buckets of minutes), added to e_v and to the prompt.
copy_head, for the repeat visits that make half the check-ins:
at SID position j the decoder also points at history events whose first j tokens match
the prefix decoded so far; their j-th tokens form a copy distribution, mixed with the
generated one by a learned gate (pointer-generator; RepeatNet for sessions). The model
then returns log-probabilities, which every caller treats like logits (log_softmax of
log-probabilities is the identity).
repeat_features: each history event's item's visit count in the history and how often it
followed the latest event's item there (the user's own transitions, what the repeat and
user-Markov rules rank by), as count-bucket embeddings added to e_v and as a learned bias
of the copy head's scores (with the copy head).
routine_features: each history event's item's visit counts at the request's time of day
and of the week (`data.routine_visits`: within an hour of its hour of the day / week), as
embeddings added to e_v and learned biases of the copy head's scores: the habitual venue
of the hour.
candidates: M more encoder events, the items that most often followed the latest history
item as a train target (what the global Markov rule ranks by; `data.Transitions`), each
with its SID, item id, cell and count bucket, of a behavior of their own: the encoder
attends to them and the copy head can point at them, so venues the user never visited
can be copied too.

Shapes: b batch, H history slots, d model width, e location width, F cell features,
R neighbours, T SID tokens (levels + disambiguation digit).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from geosid.trainer.data import AGE_BUCKETS, COUNT_BUCKETS, HOURS, Batch

SIZES = {
    "tiny": dict(d_model=64, n_heads=4, enc_layers=2, dec_layers=2, d_ff=256, d_loc=32),
    "small": dict(d_model=256, n_heads=4, enc_layers=2, dec_layers=2, d_ff=1024, d_loc=64),
    "paper": dict(d_model=1024, n_heads=8, enc_layers=4, dec_layers=4, d_ff=4096, d_loc=128),
}


@dataclass
class OneLocConfig:
    token_sizes: tuple[int, ...]  # vocabulary per SID position
    n_cells: int  # cell vocabulary (index 0: unknown)
    n_behaviors: int
    n_features: int = 11
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 256
    d_loc: int = 32
    dropout: float = 0.0
    # ablations of the paper
    location_scores: bool = True  # add E_lc E_lc^T to the encoder's attention scores
    location_gate: bool = True  # scale attention outputs by 2 * sigmoid(MLP(user ctx, E_lc))
    prompt: str = "neighbor"  # neighbor | pointwise | mlp | none (a learned start token)
    item_embedding: bool = True  # item-id embedding in e_v
    n_items: int = 2  # item-id embedding rows (0 padding, 1 rare, 2.. frequent items)
    geo_inputs: bool = True  # location-id and location-context embeddings in the encoder input
    copy_head: bool = True  # mix each SID token's distribution with a copy of the history's tokens
    time_features: bool = True  # hour of the week of events and request, and each event's age at the request
    repeat_features: bool = True  # visit and own-transition counts of history items (inputs, copy prior)
    routine_features: bool = True  # visit counts of history items at the request's time of day / week (input, copy prior)
    candidates: bool = True  # the train split's next items of the latest item as extra events (copyable)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        assert self.d_model % self.n_heads == 0, f"d_model {self.d_model} not divisible by n_heads {self.n_heads}"
        assert self.prompt in ("neighbor", "pointwise", "mlp", "none"), f"unknown prompt {self.prompt!r}"

    @classmethod
    def tiger(cls, size: str, **kwargs) -> OneLocConfig:
        """TIGER: the same decoder over SIDs with every geo part off and no item ids."""
        off = dict(
            location_scores=False,
            location_gate=False,
            prompt="none",
            item_embedding=False,
            geo_inputs=False,
            copy_head=False,
            time_features=False,
            repeat_features=False,
            routine_features=False,
            candidates=False,
        )
        return cls.sized(size, **{**kwargs, **off})

    @classmethod
    def sized(cls, size: str, **kwargs) -> OneLocConfig:
        return cls(**{**SIZES[size], **kwargs})

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def feed_forward(d: int, d_ff: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d))


class GeoSelfAttention(nn.Module):
    """scores = (Z Wq)(Z Wk)^T / sqrt(d_head) + E_lc E_lc^T / sqrt(e); output row i is
    scaled by g_i = 2 * sigmoid(MLP(concat(user ctx, E_lc[i])))."""

    def __init__(self, cfg: OneLocConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.gate = nn.Sequential(nn.Linear(2 * cfg.d_loc, cfg.d_loc), nn.GELU(), nn.Linear(cfg.d_loc, 1))

    def forward(self, z, e_lc, valid, user_lc):
        """z [b, H, d], e_lc [b, H, e], valid [b, H] bool, user_lc [b, e] -> ([b, H, d], gate [b, H, 1])."""
        b, h, d = z.shape
        nh = self.cfg.n_heads
        q, k, v = self.qkv(z).view(b, h, 3, nh, d // nh).permute(2, 0, 3, 1, 4)  # each [b, nh, H, dh]
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // nh)  # [b, nh, H, H]
        if self.cfg.location_scores:
            scores = scores + (e_lc @ e_lc.transpose(-1, -2) / math.sqrt(e_lc.shape[-1]))[:, None]
        eye = torch.eye(h, dtype=torch.bool, device=z.device)
        allowed = valid[:, None, None, :] | eye  # a padding row attends to itself: no NaN
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        out = self.out((attn @ v).transpose(1, 2).reshape(b, h, d))
        gate = torch.ones(b, h, 1, device=z.device, dtype=out.dtype)
        if self.cfg.location_gate:
            gate = 2 * torch.sigmoid(self.gate(torch.cat([user_lc[:, None].expand(-1, h, -1), e_lc], -1)))
            out = out * gate
        return out, gate


class EncoderBlock(nn.Module):
    def __init__(self, cfg: OneLocConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = GeoSelfAttention(cfg)
        self.ffn = feed_forward(cfg.d_model, cfg.d_ff, cfg.dropout)

    def forward(self, x, e_lc, valid, user_lc):
        a, gate = self.attn(self.norm1(x), e_lc, valid, user_lc)
        x = x + a
        return x + self.ffn(self.norm2(x)), gate


class DecoderBlock(nn.Module):
    def __init__(self, cfg: OneLocConfig):
        super().__init__()
        d = cfg.d_model
        self.norm1, self.norm2, self.norm3 = RMSNorm(d), RMSNorm(d), RMSNorm(d)
        self.self_attn = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.cross = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        self.ffn = feed_forward(d, cfg.d_ff, cfg.dropout)

    def forward(self, y, memory, memory_valid):
        t = y.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=y.device), 1)  # True: may not attend
        h = self.norm1(y)
        y = y + self.self_attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        h = self.norm2(y)
        y = y + self.cross(h, memory, memory, key_padding_mask=~memory_valid, need_weights=False)[0]
        return y + self.ffn(self.norm3(y))


class OneLoc(nn.Module):
    def __init__(self, cfg: OneLocConfig):
        super().__init__()
        self.cfg = cfg
        d, e = cfg.d_model, cfg.d_loc
        self.n_levels = len(cfg.token_sizes) - 1
        self.code_emb = nn.ModuleList(nn.Embedding(n, d) for n in cfg.token_sizes)  # the full SID, digit included
        self.item_emb = nn.Embedding(cfg.n_items, d, padding_idx=0) if cfg.item_embedding else None
        self.kind_emb = nn.Embedding(cfg.n_behaviors + 1 + int(cfg.candidates), d)  # 0 padding, behaviors, candidates
        self.start = nn.Parameter(torch.zeros(1, 1, d))
        if cfg.time_features:
            self.hour_emb = nn.Embedding(HOURS + 1, d, padding_idx=0)
            self.age_emb = nn.Embedding(AGE_BUCKETS + 1, d, padding_idx=0)
        if cfg.repeat_features:
            self.visit_emb = nn.Embedding(COUNT_BUCKETS, d)
            self.trans_emb = nn.Embedding(COUNT_BUCKETS, d)
            self.copy_prior_emb = nn.Embedding(COUNT_BUCKETS * COUNT_BUCKETS, 1)
            nn.init.zeros_(self.copy_prior_emb.weight)
        if cfg.routine_features:
            self.routine_emb, self.routine_week_emb = nn.Embedding(COUNT_BUCKETS, d), nn.Embedding(COUNT_BUCKETS, d)
            self.routine_prior_emb = nn.Embedding(COUNT_BUCKETS * COUNT_BUCKETS, 1)  # (day, week) count buckets
            nn.init.zeros_(self.routine_prior_emb.weight)
        if cfg.candidates:
            self.cand_count_emb = nn.Embedding(COUNT_BUCKETS, d)
            self.cand_prior_emb = nn.Embedding(COUNT_BUCKETS, 1)
            nn.init.zeros_(self.cand_prior_emb.weight)
        self.cell_emb = nn.Embedding(cfg.n_cells + 1, e)
        self.ctx_proj = nn.Sequential(nn.Linear(cfg.n_features, e), nn.GELU(), nn.Linear(e, e))
        self.item_mlp = nn.Sequential(nn.Linear(d + 2 * e, d), nn.GELU(), nn.Linear(d, d))
        self.encoder = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.enc_layers))
        self.enc_norm = RMSNorm(d)
        self.user_query = nn.Linear(2 * e, d)
        self.neighbour_kv = nn.Linear(2 * e, d)
        self.prompt_attn = nn.MultiheadAttention(d, cfg.n_heads, batch_first=True)
        self.prompt_mlp = nn.Sequential(nn.Linear(4 * e, d), nn.GELU(), nn.Linear(d, d))
        self.tok_emb = nn.ModuleList(nn.Embedding(n, d) for n in cfg.token_sizes[:-1])
        self.pos_emb = nn.Embedding(len(cfg.token_sizes), d)
        self.decoder = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.dec_layers))
        self.dec_norm = RMSNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, n) for n in cfg.token_sizes)
        if cfg.copy_head:
            self.copy_query, self.copy_key = nn.Linear(d, d), nn.Linear(d, d)
            self.copy_gate = nn.Linear(2 * d, 1)

    # ---- encoder ---------------------------------------------------------------------

    def location(self, cell, ctx):
        """cell [...], ctx [..., F] -> (location-id embedding, location-context embedding), each [..., e]."""
        return self.cell_emb(cell), self.ctx_proj(ctx)

    def encode(self, x: Batch):
        """-> memory [b, H, d], valid [b, H], prompt [b, 1, d], gates (one [b, H, 1] per block)."""
        codes = x.hist_codes  # [b, H, T]
        assert codes.shape[-1] == len(self.code_emb), f"hist_codes has {codes.shape[-1]} tokens, model {len(self.code_emb)}"
        valid = x.hist_kind > 0  # [b, H]
        item = sum(emb(codes[..., j]) for j, emb in enumerate(self.code_emb)) + self.kind_emb(x.hist_kind)  # [b, H, d]
        if self.item_emb is not None:
            item = item + self.item_emb(x.hist_item_emb.clamp(max=self.cfg.n_items - 1))
        if self.cfg.time_features:
            item = item + self.hour_emb(x.hist_hour) + self.age_emb(x.hist_age)
        if self.cfg.repeat_features:
            item = item + self.visit_emb(x.hist_visits) + self.trans_emb(x.hist_trans)
        if self.cfg.routine_features:
            item = item + self.routine_emb(x.hist_routine) + self.routine_week_emb(x.hist_routine_week)
        loc_id, e_lc = self.location(x.hist_cell, x.hist_ctx)  # [b, H, e] each
        if not self.cfg.geo_inputs:
            loc_id, e_lc = torch.zeros_like(loc_id), torch.zeros_like(e_lc)
        z = self.item_mlp(torch.cat([item, loc_id, e_lc], -1))  # [b, H, d]
        if self._has_candidates(x):
            z_c, e_lc_c = self._candidate_events(x)  # [b, M, d], [b, M, e]
            z, e_lc = torch.cat([z, z_c], 1), torch.cat([e_lc, e_lc_c], 1)  # H -> H + M slots
            valid = torch.cat([valid, x.cand_count > 0], 1)
        user_id, user_lc = self.location(x.user_cell, x.user_ctx)  # [b, e] each
        gates = []
        for block in self.encoder:
            z, gate = block(z, e_lc, valid, user_lc)
            gates.append(gate)
        memory = self.enc_norm(z)
        prompt = self.prompt(x, user_id, user_lc)  # [b, 1, d]
        if self.cfg.time_features:
            prompt = prompt + self.hour_emb(x.request_hour)[:, None]
        return memory, valid, prompt, gates

    def _has_candidates(self, x: Batch) -> bool:
        return self.cfg.candidates and x.cand_codes.shape[1] > 0

    def _candidate_events(self, x: Batch):
        """Transition candidates as encoder events: (z [b, M, d], e_lc [b, M, e])."""
        codes = x.cand_codes  # [b, M, T]
        kind = torch.full_like(x.cand_count, self.cfg.n_behaviors + 1)
        item = sum(emb(codes[..., j]) for j, emb in enumerate(self.code_emb)) + self.kind_emb(kind) + self.cand_count_emb(x.cand_count)
        if self.item_emb is not None:
            item = item + self.item_emb(x.cand_item_emb.clamp(max=self.cfg.n_items - 1))
        loc_id, e_lc = self.location(x.cand_cell, x.cand_ctx)
        if not self.cfg.geo_inputs:
            loc_id, e_lc = torch.zeros_like(loc_id), torch.zeros_like(e_lc)
        return self.item_mlp(torch.cat([item, loc_id, e_lc], -1)), e_lc

    def memory_codes(self, x: Batch):
        """The SID tokens of every encoder event [b, H (+ M), T]: history, then candidates."""
        return torch.cat([x.hist_codes, x.cand_codes], 1) if self._has_candidates(x) else x.hist_codes

    def prompt(self, x: Batch, user_id, user_lc):
        """The decoder's first input [b, 1, d]."""
        user = torch.cat([user_id, user_lc], -1)  # [b, 2e]
        if self.cfg.prompt == "none":
            return self.start.expand(user.shape[0], -1, -1)
        if self.cfg.prompt == "pointwise":
            return self.user_query(user)[:, None]
        nbr_id, nbr_lc = self.location(x.nbr_cell, x.nbr_ctx)  # [b, R, e]
        neighbours = torch.cat([nbr_id, nbr_lc], -1)  # [b, R, 2e]
        present = x.nbr_cell > 0  # [b, R]
        if self.cfg.prompt == "mlp":
            mean = (neighbours * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp(min=1)
            return self.prompt_mlp(torch.cat([user, mean], -1))[:, None]
        kv = self.neighbour_kv(neighbours)
        no_neighbour = ~present.any(1, keepdim=True)
        mask = ~present & ~no_neighbour  # a row without known neighbours attends to all (zeros)
        out = self.prompt_attn(self.user_query(user)[:, None], kv, kv, key_padding_mask=mask, need_weights=False)[0]
        return out  # [b, 1, d]

    # ---- decoder ---------------------------------------------------------------------

    def copy_prior(self, x: Batch):
        """A learned bias of the copy head's score for each encoder event [b, H (+ M)]: a
        history event's from its visit, own-transition and routine count buckets, a
        candidate's from its count bucket (None without the copy head, or with no input)."""
        candidates = self._has_candidates(x)
        if not self.cfg.copy_head or not (self.cfg.repeat_features or self.cfg.routine_features or candidates):
            return None

        prior = torch.zeros(x.hist_codes.shape[:2], device=x.hist_codes.device)  # [b, H]
        if self.cfg.repeat_features:
            prior = prior + self.copy_prior_emb(x.hist_visits * COUNT_BUCKETS + x.hist_trans).squeeze(-1)
        if self.cfg.routine_features:
            prior = prior + self.routine_prior_emb(x.hist_routine * COUNT_BUCKETS + x.hist_routine_week).squeeze(-1)
        return torch.cat([prior, self.cand_prior_emb(x.cand_count).squeeze(-1)], 1) if candidates else prior

    def _copy(self, j: int, logits, hidden, memory, valid, codes, consistent, prior=None):
        """Mix position j's generated distribution with the copy of history tokens.
        logits [b, V_j], hidden [b, d], memory [b, H, d], valid [b, H], codes [b, H, T],
        consistent [b, H] (the event's first j tokens equal the prefix), prior [b, H] or
        None (added to the pointer's scores) -> log-probs [b, V_j]."""
        allowed = valid & consistent  # [b, H]
        scores = torch.einsum("bd,bhd->bh", self.copy_query(hidden), self.copy_key(memory)) / math.sqrt(hidden.shape[-1])
        if prior is not None:
            scores = scores + prior
        attn = scores.float().masked_fill(~allowed, float("-inf")).softmax(-1).nan_to_num(0.0)  # [b, H]
        copied = torch.zeros_like(logits, dtype=torch.float32).scatter_add_(1, codes[..., j], attn)  # [b, V_j]
        pooled = (attn[..., None] * memory.float()).sum(1)  # [b, d] what the pointer reads
        gate = torch.sigmoid(self.copy_gate(torch.cat([hidden.float(), pooled], -1))) * allowed.any(1, keepdim=True)  # [b, 1]
        mixed = (1 - gate) * logits.float().softmax(-1) + gate * copied
        return mixed.clamp(min=1e-12).log()

    def decoder_states(self, memory, valid, prompt, tokens):
        """The decoder over the prompt and then `tokens` [b, j] (SID tokens, j < T), causal:
        hidden states [b, j + 1, d], position k the state that predicts token k. The one
        decoder loop: teacher forcing (`forward`) and search (`decode`) both run it."""
        inputs = [prompt] + [self.tok_emb[k](tokens[:, k])[:, None] for k in range(tokens.shape[1])]
        y = torch.cat(inputs, 1) + self.pos_emb.weight[: tokens.shape[1] + 1]
        for block in self.decoder:
            y = block(y, memory, valid)
        return self.dec_norm(y)

    def decode(self, memory, valid, prompt, prefix, codes=None, prior=None):
        """prefix [b, j] SID tokens (j < T) -> logits of position j [b, V_j] (log-probs with
        the copy head, which needs the history's codes [b, H, T] and takes `copy_prior(x)`
        [b, H]); and hidden states."""
        j = prefix.shape[1]
        y = self.decoder_states(memory, valid, prompt, prefix)
        logits = self.heads[j](y[:, -1])
        if self.cfg.copy_head:
            assert codes is not None, "the copy head decodes with the history's codes"
            consistent = (codes[..., :j] == prefix[:, None, :]).all(-1)  # [b, H]
            logits = self._copy(j, logits, y[:, -1], memory, valid, codes, consistent, prior)
        return logits, y

    def forward(self, x: Batch):
        """Teacher-forced logits (log-probs with the copy head): a list of T tensors, position j: [b, V_j]."""
        memory, valid, prompt, _ = self.encode(x)
        target = x.target  # [b, T]
        assert target.shape[1] == len(self.cfg.token_sizes), f"target has {target.shape[1]} tokens"
        y = self.decoder_states(memory, valid, prompt, target[:, :-1])  # [b, T, d]: position k predicts token k
        out = [head(y[:, k]) for k, head in enumerate(self.heads)]
        if self.cfg.copy_head:
            codes, prior = self.memory_codes(x), self.copy_prior(x)  # [b, H (+ M), T], [b, H (+ M)]
            match = torch.cumprod((codes == target[:, None, :]).long(), -1).bool()  # [b, H, T]: first k+1 tokens agree
            for k in range(len(out)):
                consistent = match[..., k - 1] if k else torch.ones_like(valid)
                out[k] = self._copy(k, out[k], y[:, k], memory, valid, codes, consistent, prior)
        return out


def ntp_loss(logits: list, target: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the T SID positions. logits: T x [b, V_j]; target [b, T]."""
    return torch.stack([F.cross_entropy(lg.float(), target[:, k]) for k, lg in enumerate(logits)]).mean()


def sequence_logprob(logits: list, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens) summed over positions: [b]. (logits teacher-forced on `tokens`.)"""
    return torch.stack([lg.float().log_softmax(-1).gather(1, tokens[:, k : k + 1]).squeeze(1) for k, lg in enumerate(logits)]).sum(0)


def dpo_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """The implicit reward margin beta * ((pi_w - ref_w) - (pi_l - ref_l)): [b] from [b]
    sequence log-probabilities; > 0 where the policy prefers the chosen item more than the
    reference does (0 for the reference itself)."""
    return beta * ((pi_chosen - ref_chosen) - (pi_rejected - ref_rejected))


def dpo_loss(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """-log sigmoid(margin), mean over the batch; inputs [b] (see `dpo_margin`)."""
    return -F.logsigmoid(dpo_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta)).mean()


def preference_accuracy(margin: torch.Tensor) -> float:
    """Share of pairs the policy prefers more than the reference does, a tie counting half
    (so the reference scores 0.5 by construction). margin [b]."""
    return float(((margin > 0).float() + 0.5 * (margin == 0).float()).mean()) if margin.numel() else float("nan")
