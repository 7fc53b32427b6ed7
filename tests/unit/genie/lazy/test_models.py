"""Real models, unchanged, on the remote device: torch.nn CNNs (resnet- and
mobilenet-style), nn.MultiheadAttention, nn.TransformerEncoder, a ViT, nn.LSTM,
nn.GRU, and HF transformers GPT-2, BERT and Llama (each also with a padded attention
mask, Llama also with grouped-query attention), plus HF ``generate()``.

Each model is moved with ``model.to("remote_accelerator:0")`` (one test with
``genie.remote_module``), run twice under ``torch.no_grad()``, and must equal eager
within 1e-5, cost one ``POST /graph`` per forward, and upload its weights with the
first forward only: the second forward's body is smaller by at least the weights.
Random-initialised tiny configs, never a hub download.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import genie

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test never downloads a model

REMOTE = "remote_accelerator:0"
Traffic = Callable[[], tuple[int, int]]


def _output(out: Any) -> torch.Tensor:
    """The tensor a model returns (HF returns an output object)."""
    for name in ("logits", "last_hidden_state"):
        if hasattr(out, name):
            return getattr(out, name)
    return out[0] if isinstance(out, tuple) else out


def _weight_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size()
               for t in (*model.parameters(), *model.buffers()))


def check_model(model: nn.Module, inputs: Sequence[Any], traffic: Traffic, *,
                kwargs: dict[str, Any] | None = None, move: bool = True) -> float:
    """Eager vs the remote device, two forwards: returns the max abs difference."""
    kwargs = kwargs or {}
    model.eval()
    with torch.no_grad():
        expected = _output(model(*inputs, **kwargs))
    weights = _weight_bytes(model)
    if move:
        model.to(REMOTE)
        remote_in = [t.to(REMOTE) for t in inputs]
        remote_kw = {k: v.to(REMOTE) for k, v in kwargs.items()}
    else:
        genie.remote_module(model)
        remote_in = [genie.remote(t) for t in inputs]
        remote_kw = {k: genie.remote(v) for k, v in kwargs.items()}
    traffic()
    sent = []
    for _ in range(2):
        with torch.no_grad():
            got = _output(model(*remote_in, **remote_kw)).materialize()
        requests, nbytes = traffic()
        assert requests == 1, f"{requests} requests for one forward"
        sent.append(nbytes)
        diff = (got - expected).abs().max().item()
        assert got.shape == expected.shape and diff <= 1e-5, diff
    if move:  # the weights went with the first forward only
        assert sent[1] <= sent[0] - weights, (sent, weights)
    else:  # remote_module uploaded them before: both forwards send the input only (the
        # second may also carry the release of the first's temporaries: a few handle ids)
        assert abs(sent[0] - sent[1]) < 512 < weights, (sent, weights)
    return diff


# --- torch.nn models ---

class BasicBlock(nn.Module):
    """torchvision's resnet BasicBlock, from torch.nn."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + identity)


class InvertedResidual(nn.Module):
    """mobilenet v2/v3's block: expand, depthwise, squeeze-excite, project."""

    def __init__(self, c: int, expand: int) -> None:
        super().__init__()
        e = c * expand
        self.block = nn.Sequential(
            nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.Hardswish(),
            nn.Conv2d(e, e, 3, 1, 1, groups=e, bias=False), nn.BatchNorm2d(e), nn.ReLU6(),
            nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c))
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, 4, 1), nn.ReLU(),
                                nn.Conv2d(4, c, 1), nn.Hardsigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y * self.se(y)


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Running statistics that are not 0/1, so eval-mode batch norm does something."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def test_resnet_style_cnn(client: genie.Client, graph_traffic: Traffic) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1), BasicBlock(8, 8, 1), BasicBlock(8, 16, 2),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(16, 10)))
    check_model(model, [torch.randn(2, 3, 16, 16)], graph_traffic)


def test_mobilenet_style_cnn(client: genie.Client, graph_traffic: Traffic) -> None:
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(),
        InvertedResidual(8, 2), InvertedResidual(8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(8, 5)))
    check_model(model, [torch.randn(2, 3, 16, 16)], graph_traffic)


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.attn(x, x, x, key_padding_mask=mask)[0]


@pytest.mark.parametrize("padded", [False, True])
def test_multihead_attention(client: genie.Client, graph_traffic: Traffic, padded: bool) -> None:
    """F.multi_head_attention_forward is a Python function: it decomposes."""
    torch.manual_seed(0)
    inputs = [torch.randn(2, 5, 16)]
    if padded:
        inputs.append(torch.tensor([[False] * 5, [False] * 3 + [True] * 2]))
    check_model(SelfAttention(), inputs, graph_traffic)


def test_transformer_encoder(client: genie.Client, graph_traffic: Traffic) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    check_model(model, [torch.randn(2, 5, 16)], graph_traffic)


class ViT(nn.Module):
    """A vision transformer: patches, class token, positions, pre-norm encoder, head."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, 4)
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.pos = nn.Parameter(torch.randn(1, 17, 16))
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), p], 1) + self.pos
        return self.head(self.norm(self.encoder(h))[:, 0])


def test_vit(client: genie.Client, graph_traffic: Traffic) -> None:
    torch.manual_seed(0)
    check_model(ViT(), [torch.randn(2, 3, 16, 16)], graph_traffic)


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU], ids=["lstm", "gru"])
def test_recurrent(client: genie.Client, graph_traffic: Traffic, kind: type[nn.Module]) -> None:
    """torch.lstm / torch.gru are C++ composites: they decompose (to the fused cells
    torch uses on an accelerator, captured as their pointwise ops)."""
    torch.manual_seed(0)
    rnn = kind(8, 12, num_layers=2, batch_first=True, bidirectional=True)
    check_model(rnn, [torch.randn(2, 5, 8)], graph_traffic)


# --- HF transformers ---

def _hf(name: str, kv_heads: int = 4) -> nn.Module:
    T = pytest.importorskip("transformers")  # noqa: N806 - the library's usual name
    torch.manual_seed(0)
    if name == "gpt2":
        return T.GPT2LMHeadModel(T.GPT2Config(vocab_size=64, n_positions=32, n_embd=32,
                                              n_layer=2, n_head=4))
    if name == "bert":
        return T.BertModel(T.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64,
                                        max_position_embeddings=32))
    return T.LlamaForCausalLM(T.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=32))


_IDS = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(0))


def _mask(padded: bool) -> torch.Tensor:
    mask = torch.ones(2, 6, dtype=torch.long)
    if padded:
        mask[1, :2] = 0  # left padding, as batched generation uses
    return mask


@pytest.mark.parametrize("padded", [False, True], ids=["full", "padded"])
@pytest.mark.parametrize(("name", "kv_heads"), [("gpt2", 4), ("bert", 4), ("llama", 4),
                                                ("llama", 2)],
                         ids=["gpt2", "bert", "llama", "llama-gqa"])
def test_hf_transformers(client: genie.Client, graph_traffic: Traffic, name: str,
                         kv_heads: int, padded: bool) -> None:
    check_model(_hf(name, kv_heads), [_IDS], graph_traffic,
                kwargs={"attention_mask": _mask(padded)})


def test_hf_model_with_remote_module(client: genie.Client, graph_traffic: Traffic) -> None:
    check_model(_hf("gpt2"), [_IDS], graph_traffic, kwargs={"attention_mask": _mask(True)},
                move=False)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_hf_generate_greedy_matches_eager(client: genie.Client, graph_traffic: Traffic,
                                          name: str) -> None:
    model = _hf(name, 2).eval()
    options = {"max_new_tokens": 10, "do_sample": False, "pad_token_id": 0}
    mask = torch.ones_like(_IDS)
    with torch.no_grad():
        expected = model.generate(_IDS, attention_mask=mask, **options)
    model.to(REMOTE)
    graph_traffic()
    with torch.no_grad():
        got = model.generate(_IDS.to(REMOTE), attention_mask=mask.to(REMOTE), **options)
    got = got.materialize() if isinstance(got, genie.LazyTensor) else got
    assert torch.equal(got, expected)
    requests, _ = graph_traffic()
    assert requests <= 11  # one per new token (its value picks the next), and the result
