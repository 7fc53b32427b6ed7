"""The guide's week-2 check "LLM Decode Co-location": compare KV-cache transfer with
keeping the cache where the model runs.

A small GPT-2-style decoder (written here in ``torch.nn``, random weights from a fixed
seed, so no model library or download is needed) generates greedily from a prompt,
twice on the server, with its weights uploaded once each time (``genie.remote_module``):

- **kept**: the KV cache stays on the server as handles.  Each decode step is ONE
  request: the new token goes in, the next token comes back, the new cache is kept and
  last step's cache is released in the same request (``genie.release(defer=True)``);
- **shipped**: the cache travels: each step sends the whole cache and fetches the new
  one (still one request per step, the graph runs remotely all the same).

It records bytes each way and time per step and in total for both, and what keeping the
cache saves; it asserts the kept path made exactly one request per step (counted by the
client and by the server, for that client's session alone, so a shared server does not
disturb it), that last step's caches were freed, and that both give eager's tokens.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import genie
from pytest_genie import Key

pytestmark = pytest.mark.client

#: Chosen so that at every greedy step the best token leads the next by more than 0.03
#: (logits of about 1.5): a GPU server's rounding (about 1e-6) cannot flip a token.
SEED = 31
VOCAB, CONTEXT, D_MODEL, HEADS, LAYERS = 256, 128, 64, 4, 4
PROMPT_TOKENS, STEPS = 16, 24

Cache = list[tuple[torch.Tensor, torch.Tensor]]


class Block(nn.Module):
    """GPT-2's pre-norm block: causal self-attention and a GELU MLP, each a residual."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D_MODEL), nn.LayerNorm(D_MODEL)
        self.c_attn = nn.Linear(D_MODEL, 3 * D_MODEL)
        self.c_proj = nn.Linear(D_MODEL, D_MODEL)
        self.c_fc = nn.Linear(D_MODEL, 4 * D_MODEL)
        self.mlp_proj = nn.Linear(4 * D_MODEL, D_MODEL)

    def forward(self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, HEADS, d // HEADS).transpose(1, 2)
                   for z in self.c_attn(self.ln_1(x)).split(d, dim=-1))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # The prompt attends causally; a decode step's one query sees the whole cache.
        a = F.scaled_dot_product_attention(q, k, v, is_causal=past is None and t > 1)
        x = x + self.c_proj(a.transpose(1, 2).reshape(b, t, d))
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x, (k, v)


class TinyGPT(nn.Module):
    """Token and learned position embeddings, ``LAYERS`` blocks, a final norm and an
    untied head (tied to random embeddings, greedy decoding only repeats the last token).
    ``forward`` returns the greedy next token and the new KV cache."""

    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D_MODEL), nn.Embedding(CONTEXT, D_MODEL)
        self.h = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)

    def forward(self, idx: torch.Tensor, pos: torch.Tensor, past: Cache | None
                ) -> tuple[torch.Tensor, Cache]:
        x = self.wte(idx) + self.wpe(pos)
        cache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, None if past is None else past[i])
            cache.append(kv)
        return self.lm_head(self.ln_f(x)[:, -1]).argmax(dim=-1), cache


def _model() -> TinyGPT:
    """The same weights every time; the caller's CPU generator is left as it was.  (Not
    ``torch.random.fork_rng``: it refuses to run once the remote device names PrivateUse1.)"""
    state = torch.get_rng_state()
    try:
        torch.manual_seed(SEED)
        return TinyGPT().eval()
    finally:
        torch.set_rng_state(state)


def _prompt() -> torch.Tensor:
    return torch.randint(0, VOCAB, (1, PROMPT_TOKENS), generator=torch.Generator().manual_seed(SEED))


def _positions(start: int, count: int) -> torch.Tensor:
    return torch.arange(start, start + count).unsqueeze(0)


def _eager_tokens() -> list[int]:
    model, idx, past, tokens = _model(), _prompt(), None, []
    with torch.no_grad():
        for _ in range(STEPS + 1):
            start = 0 if past is None else past[0][0].shape[2]
            token, past = model(idx, _positions(start, idx.shape[1]), past)
            tokens.append(int(token))
            idx = token.view(1, 1)
    return tokens


def _flat(cache: Cache) -> list[torch.Tensor]:
    return [t for kv in cache for t in kv]


def _size(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class Decoder:
    """Greedy decoding on the server, one step (one request) at a time, its own client
    (so its own server session), its weights uploaded once (``genie.remote_module``).

    ``keep_cache``: the KV cache stays on the server as handles, and each step releases
    last step's in its own request; otherwise the cache lives here and travels both ways.
    """

    def __init__(self, client: genie.Client, keep_cache: bool) -> None:
        self.client, self.keep_cache = client, keep_cache
        self.model = genie.remote_module(_model(), client=client)
        self.idx, self.position = _prompt(), 0
        self.remote_cache: Cache | None = None  # kept: LazyTensors held on the server
        self.local_cache: Cache | None = None  # shipped: CPU tensors
        self.tokens: list[int] = []
        self.rows: list[dict[str, Any]] = []
        self.prefill: dict[str, Any] = {}
        self.requests_before_decode = 0

    def step(self) -> None:
        started, requests = time.perf_counter(), self.client.requests
        args = (genie.remote(self.idx, client=self.client),
                genie.remote(_positions(self.position, self.idx.shape[1]), client=self.client))
        if self.keep_cache:
            token, new = self.model(*args, self.remote_cache)
            if self.remote_cache is not None:  # freed by the server once this step's graph ran
                genie.release(*_flat(self.remote_cache), defer=True)
            value = genie.materialize(token, keep=_flat(new))
            self.remote_cache = new
        else:
            sent = None if self.local_cache is None else [
                (genie.remote(k, client=self.client), genie.remote(v, client=self.client))
                for k, v in self.local_cache]
            token, new = self.model(*args, sent)
            value, *fetched = genie.materialize(token, *_flat(new))
            self.local_cache = list(zip(fetched[::2], fetched[1::2], strict=True))
        row = {Key.BYTES_SENT: self.client.last.bytes_sent,
               Key.BYTES_RECEIVED: self.client.last.bytes_received,
               Key.ROUND_TRIP_MS: round((time.perf_counter() - started) * 1000, 3)}
        made = self.client.requests - requests
        assert made == 1, f"step {len(self.tokens)}: {made} requests"
        if self.tokens:
            self.rows.append({Key.STEP: len(self.tokens), **row})
        else:
            self.prefill, self.requests_before_decode = row, self.client.requests
        self.tokens.append(int(value))
        self.position += self.idx.shape[1]
        self.idx = value.view(1, 1)

    def cache_bytes(self) -> int:
        if self.remote_cache is not None:
            return _size(_flat(self.remote_cache))
        return _size(_flat(self.local_cache or []))

    def figures(self) -> dict[str, Any]:
        rows = self.rows
        return {
            Key.REQUESTS_MADE: self.client.requests - self.requests_before_decode,
            Key.REQUESTS_PER_STEP: (self.client.requests - self.requests_before_decode) / len(rows),
            Key.BYTES_SENT: sum(r[Key.BYTES_SENT] for r in rows),
            Key.BYTES_RECEIVED: sum(r[Key.BYTES_RECEIVED] for r in rows),
            Key.TOTAL_MS: round(sum(r[Key.ROUND_TRIP_MS] for r in rows), 3),
            Key.STEP_MS_MEDIAN: round(statistics.median(r[Key.ROUND_TRIP_MS] for r in rows), 3),
            Key.PREFILL: self.prefill, Key.PER_STEP: rows,
        }


def test_llm_decode_colocation(genie_client: genie.Client, genie_server_url: str,
                               genie_options: Any, genie_record: dict[str, Any]) -> None:
    """The KV cache kept on the server costs one request and a constant few kB per
    step; shipping it costs the whole cache both ways every step.  Same tokens as eager."""
    want = _eager_tokens()
    with genie.Client(genie_server_url, token=genie_options.token) as kept_client, \
            genie.Client(genie_server_url, token=genie_options.token) as shipped_client:
        decoders = {Key.KV_KEPT: Decoder(kept_client, True),
                    Key.KV_SHIPPED: Decoder(shipped_client, False)}
        for step in range(STEPS + 1):  # in lockstep, taking turns to go first: same conditions
            for decoder in list(decoders.values())[::1 if step % 2 else -1]:
                decoder.step()
        figures, held = {}, {}
        for way, decoder in decoders.items():
            # The server's own count of the session's requests: the client's, exactly.
            session = genie_client.session_info(decoder.client.session)
            assert session["requests"] == decoder.client.requests
            figures[way] = {**decoder.figures(), Key.SERVER_REQUESTS: session["requests"]
                            - decoder.requests_before_decode}
            held[way] = session["handles"]
    kept, shipped = figures[Key.KV_KEPT], figures[Key.KV_SHIPPED]
    moved = [f[Key.BYTES_SENT] + f[Key.BYTES_RECEIVED] for f in (kept, shipped)]
    params = list(_model().parameters())
    genie_record.update({
        Key.MODEL: {"layers": LAYERS, "d_model": D_MODEL, "heads": HEADS, "vocab": VOCAB,
                    "parameters": sum(p.numel() for p in params)},
        Key.PROMPT_TOKENS: PROMPT_TOKENS, Key.STEPS: STEPS,
        Key.TOKENS_MATCH_EAGER: all(d.tokens == want for d in decoders.values()),
        Key.KV_CACHE_BYTES: decoders[Key.KV_KEPT].cache_bytes(),
        Key.KV_KEPT: kept, Key.KV_SHIPPED: shipped,
        Key.BYTES_RATIO: round(moved[1] / moved[0], 2),
        Key.BYTES_SAVED_PCT: round(100 * (1 - moved[0] / moved[1]), 1),
        Key.TIME_RATIO: round(shipped[Key.STEP_MS_MEDIAN] / kept[Key.STEP_MS_MEDIAN], 2),
    })
    for way, decoder in decoders.items():
        assert decoder.tokens == want, f"{way}: {decoder.tokens} != eager {want}"
    # One request per decode step, as the server counted them for that session alone.
    assert kept[Key.REQUESTS_MADE] == kept[Key.SERVER_REQUESTS] == STEPS
    # Every step's release freed last step's cache: the weights and one cache are held.
    assert held[Key.KV_KEPT] == len(params) + 2 * LAYERS
    assert held[Key.KV_SHIPPED] == len(params)
    # Kept: a step sends the same few bytes whatever the cache holds; shipped: it grows.
    kept_sent = [r[Key.BYTES_SENT] for r in kept[Key.PER_STEP]]
    assert max(kept_sent) - min(kept_sent) < 64, kept_sent
    shipped_in = [r[Key.BYTES_RECEIVED] for r in shipped[Key.PER_STEP]]
    assert shipped_in == sorted(shipped_in)
    assert shipped_in[-1] >= decoders[Key.KV_SHIPPED].cache_bytes()
    assert moved[0] < moved[1]
