"""The study's model classes, re-implemented in PyTorch from its code (qsimeon/worm-graph,
models/_utils.py: Model, PositionalEncoding, FeedForward, CTRNN, CausalTransformer,
SelfAttention and the six subclasses), to check wormflow's models against.

    python study_models.py DIR

DIR holds one `<model>.safetensors` per architecture, written by study_models.rs: wormflow's
weights under wormflow's names plus `__x`, `__mask` and `__out` (wormflow's eval-mode output
on `__x`), and `counts.json` (the parameter counts wormflow reports). For each model this
loads the weights into the study's class under the study's names, runs its forward pass in
eval mode and compares, then checks the study's parameter count at every size of the
paper's Table II. Exit 0 when all agree; otherwise one line per disagreement.
"""

import json
import math
import struct
import sys
from pathlib import Path

import torch

N = 302

# wormflow computes in float32; the reference runs in float64, so what remains is wormflow's
# own rounding, which grows with the size of the values: a bound on the error relative to the
# output's scale (an absolute 1e-5 failed on one CPU at 1.05e-5 on TSMixer outputs of size ~20).
TOLERANCE = 1e-5


def scaled_error(out, expected):
    """max |out - expected| over max(1, max |expected|): float32 rounding at the output's scale."""
    err = (out.double() - expected.double()).abs().max().item()
    return err / max(1.0, expected.abs().max().item())


def exit_code(problems):
    """One line per disagreement on stderr; 0 when there is none."""
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def read_safetensors(path):
    """safetensors without the safetensors package: 8-byte header length, JSON, raw data."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        lo, hi = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[lo:hi]), dtype=torch.float32).reshape(info["shape"])
    return out


class PositionalEncoding(torch.nn.Module):
    def __init__(self, d_model, max_len=5000, dropout=0.1):
        super().__init__()
        self.d_model = d_model
        self.dropout = torch.nn.Dropout(dropout)
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_len, d_model)
        pe[0, :, 0::2] = torch.sin(position * div)
        pe[0, :, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe)

    def forward(self, x):
        x = x * math.sqrt(self.d_model) + self.pe[:, : x.size(1), :]
        return self.dropout(x)


class FeedForward(torch.nn.Module):
    def __init__(self, n, dropout=0.1):
        super().__init__()
        self.ffwd = torch.nn.Sequential(torch.nn.Linear(n, n), torch.nn.ReLU(), torch.nn.Dropout(dropout))

    def forward(self, x):
        return x + self.ffwd(x)


class CTRNN(torch.nn.Module):
    def __init__(self, n_in, h):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.ones(1, h))
        self.input2h = torch.nn.Linear(n_in, h)
        self.h2h = torch.nn.Linear(h, h)

    def forward(self, x):
        hidden = x.new_zeros(x.size(0), self.h2h.in_features)
        out = []
        for t in range(x.size(1)):
            new = torch.relu(self.input2h(x[:, t]) + self.h2h(hidden))
            hidden = hidden * (1 - self.alpha.sigmoid()) + new * self.alpha.sigmoid()
            out.append(hidden)
        return torch.stack(out, 1)


class CausalTransformer(torch.nn.Module):
    def __init__(self, d, heads, dropout=0.1):
        super().__init__()
        # As the study: the layer stays registered and TransformerEncoder deep-copies it.
        self.encoder_layer = torch.nn.TransformerEncoderLayer(d, heads, d, dropout, activation="relu", batch_first=True, norm_first=True)
        self.transformer_encoder = torch.nn.TransformerEncoder(self.encoder_layer, 1, enable_nested_tensor=False)

    def forward(self, x):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(x.size(1))
        return self.transformer_encoder(x, mask=mask, is_causal=True)


class SelfAttention(torch.nn.Module):
    def __init__(self, d, heads, dropout=0.1):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(d, heads, dropout, batch_first=True)

    def forward(self, x):
        mask = torch.nn.Transformer.generate_square_subsequent_mask(x.size(1))
        out, _ = self.attn(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)
        return out


def largest_divisor(h):
    return next(n for n in range(5, 0, -1) if h % n == 0)


class Model(torch.nn.Module):
    """The study's backbone: masked input → input_hidden → hidden_hidden → linear readout; it
    registers latent_embedding, linear and layer_norm whether the subclass uses them or not."""

    def __init__(self, kind, h):
        super().__init__()
        if kind in ("linear", "baseline"):
            h = N  # LinearRegression and NaivePredictor pass hidden_size = None: the input's width
        self.kind = kind
        self.latent_embedding = torch.nn.Linear(N, h)
        self.linear = torch.nn.Linear(h, N)
        self.layer_norm = torch.nn.LayerNorm(h)
        if kind == "baseline":
            self.linear = torch.nn.Identity()
            self._ = torch.nn.Parameter(torch.tensor(0.0))
            self.input_hidden, self.hidden_hidden = torch.nn.Identity(), torch.nn.Identity()
        elif kind == "linear":
            self.input_hidden, self.hidden_hidden = torch.nn.Sequential(self.latent_embedding), torch.nn.Identity()
        elif kind == "feedforward":
            self.input_hidden, self.hidden_hidden = torch.nn.Sequential(self.latent_embedding), FeedForward(h)
        elif kind == "ctrnn":
            self.input_hidden, self.hidden_hidden = torch.nn.Sequential(self.latent_embedding, self.layer_norm), CTRNN(h, h)
        elif kind == "lstm":
            self.input_hidden = torch.nn.Sequential(self.latent_embedding, self.layer_norm)
            self.hidden_hidden = torch.nn.LSTM(h, h, bias=True, batch_first=True)
        elif kind == "transformer":
            self.input_hidden = torch.nn.Sequential(self.latent_embedding, PositionalEncoding(h))
            self.hidden_hidden = CausalTransformer(h, largest_divisor(h))
        elif kind == "attention":
            self.input_hidden = torch.nn.Sequential(self.latent_embedding, PositionalEncoding(h))
            self.hidden_hidden = SelfAttention(h, largest_divisor(h))
        else:
            raise ValueError(kind)

    def forward(self, x, mask):
        z = self.input_hidden(x * mask.unsqueeze(1))
        z = self.hidden_hidden(z)
        if isinstance(z, tuple):  # the LSTM's (output, state)
            z = z[0]
        return self.linear(z)


def study_names(kind, ours):
    """wormflow's tensor names → the study's module paths."""
    table = {"embedding.": "latent_embedding.", "readout.": "linear.", "embedding_norm.": "layer_norm."}
    layer = "hidden_hidden.transformer_encoder.layers.0."
    core = {
        "feedforward": {"hidden.": "hidden_hidden.ffwd.0."},
        "ctrnn": {"input.": "hidden_hidden.input2h.", "recurrent.": "hidden_hidden.h2h.", "leak": "hidden_hidden.alpha"},
        "lstm": {"lstm.": "hidden_hidden."},
        "transformer": {
            "encoder.attention.in_proj.weight": layer + "self_attn.in_proj_weight",
            "encoder.attention.in_proj.bias": layer + "self_attn.in_proj_bias",
            "encoder.attention.out_proj.": layer + "self_attn.out_proj.",
            "encoder.norm1.": layer + "norm1.",
            "encoder.norm2.": layer + "norm2.",
            "encoder.ff1.": layer + "linear1.",
            "encoder.ff2.": layer + "linear2.",
        },
        "attention": {
            "attention.in_proj.weight": "hidden_hidden.attn.in_proj_weight",
            "attention.in_proj.bias": "hidden_hidden.attn.in_proj_bias",
            "attention.out_proj.": "hidden_hidden.attn.out_proj.",
        },
    }.get(kind, {})
    for prefix, theirs in {**table, **core}.items():
        if ours.startswith(prefix):
            return theirs + ours[len(prefix) :]
    raise KeyError(f"{kind}: no study name for {ours}")


def main(directory):
    directory = Path(directory)
    counts = json.loads((directory / "counts.json").read_text())
    problems = []
    for path in sorted(directory.glob("*.safetensors")):
        kind = path.stem
        tensors = read_safetensors(path)
        x, mask, expected = tensors.pop("__x"), tensors.pop("__mask"), tensors.pop("__out")
        hidden = int(counts["hidden"][kind])
        model = Model(kind, hidden).eval()
        state = model.state_dict()
        loaded = {}
        for name, value in tensors.items():
            theirs = study_names(kind, name)
            loaded[theirs] = value.reshape(state[theirs].shape)
        if kind == "transformer":  # the registered, never-called copy of the layer
            for name, value in list(loaded.items()):
                loaded[name.replace("transformer_encoder.layers.0.", "encoder_layer.")] = value
        # One module under two names (input_hidden.0 is latent_embedding): the same tensor.
        for name in state:
            for other, value in list(loaded.items()):
                if name not in loaded and state[name].data_ptr() == state[other].data_ptr():
                    loaded[name] = value
        def unused(k):  # registered by the study's class, never called in its forward pass
            return kind == "baseline" or k.endswith("pe") or (k.startswith("layer_norm.") and kind not in ("ctrnn", "lstm"))

        missing = [k for k in state if k not in loaded and not unused(k)]
        if missing:
            problems.append(f"{kind}: wormflow has no weights for the study's {missing}")
            continue
        model.load_state_dict(loaded, strict=False)
        with torch.no_grad():
            out = model.double()(x.double(), mask.reshape(x.size(0), N).double())
        err = scaled_error(out, expected)
        if not err <= TOLERANCE:
            problems.append(f"{kind}: forward pass differs from the study's class by {err:.3e} (relative to the output's scale)")
        print(f"{kind:12s} H={hidden:<4d} |wormflow - study| / scale = {err:.2e}")
    for kind, rows in counts["table"].items():
        for h, expected in rows:
            got = sum(p.numel() for p in Model(kind, h).parameters())
            if got != expected:
                problems.append(f"{kind} at H={h}: the study's class registers {got} parameters, wormflow says {expected}")
            print(f"{kind:12s} H={h:<4d} study count {got}")
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
