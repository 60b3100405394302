"""NLinear, DLinear and TSMixer as the forecasting literature writes them, re-implemented in
PyTorch to check wormflow's models against: NLinear and DLinear (Zeng et al. 2023) as POCO
runs them (models/single_session_models.py with `separate_projs`, one nn.Linear per neuron;
DLinear's trend from Autoformer's `series_decomp`); TSMixer (Chen et al. 2023) as POCO's
zapbench_scripts/tsmixer.py builds it with `norm_type = "layer"` and its default
`num_blocks = 2` (one mixer layer), predicting one step.

    python forecasting_models.py DIR

DIR holds `<model>.safetensors` (wormflow's weights, `__x`, `__mask` and `__out`: its
next-step predictions at every position) and `counts.json`, written by forecasting_models.rs.
The reference forecasts one step, in float64, from each window of `lookback` steps ending at
a position, and must match `__out` within 1e-5 of the output's scale there; before a full
window NLinear and DLinear see the sequence's first step repeated before its start, TSMixer
returns its input (wormflow's rules for early positions). Exit 0 when everything agrees.
"""

import json
import sys
from pathlib import Path

import torch

from study_models import N, TOLERANCE, exit_code, read_safetensors, scaled_error


class MovingAverage(torch.nn.Module):
    """Autoformer's moving_avg: the ends repeated (k - 1) / 2 times, then AvgPool1d."""

    def __init__(self, k):
        super().__init__()
        self.k = k
        self.pool = torch.nn.AvgPool1d(kernel_size=k, stride=1, padding=0)

    def forward(self, x):  # (B, L, N)
        half = (self.k - 1) // 2
        front = x[:, :1, :].repeat(1, half, 1)
        end = x[:, -1:, :].repeat(1, half, 1)
        x = torch.cat([front, x, end], dim=1)
        return self.pool(x.permute(0, 2, 1)).permute(0, 2, 1)


class NLinear(torch.nn.Module):
    """(B, L, N) → (B, P, N): per neuron, Linear(L → P) of the window minus its last value."""

    def __init__(self, seq_len, pred_len, channels):
        super().__init__()
        self.Linear = torch.nn.ModuleList(torch.nn.Linear(seq_len, pred_len) for _ in range(channels))
        self.pred_len = pred_len

    def forward(self, x):
        last = x[:, -1:, :].detach()
        x = x - last
        out = torch.zeros([x.size(0), self.pred_len, x.size(2)], dtype=x.dtype)
        for i, linear in enumerate(self.Linear):
            out[:, :, i] = linear(x[:, :, i])
        return out + last


class DLinear(torch.nn.Module):
    """(B, L, N) → (B, P, N): per neuron, Linear(L → P) of the remainder plus of the trend."""

    def __init__(self, seq_len, pred_len, channels):
        super().__init__()
        self.decomposition = MovingAverage(seq_len // 4 * 2 + 1)
        self.Linear_Seasonal = torch.nn.ModuleList(torch.nn.Linear(seq_len, pred_len) for _ in range(channels))
        self.Linear_Trend = torch.nn.ModuleList(torch.nn.Linear(seq_len, pred_len) for _ in range(channels))
        self.pred_len = pred_len

    def forward(self, x):
        trend = self.decomposition(x)
        seasonal = x - trend
        out = torch.zeros([x.size(0), self.pred_len, x.size(2)], dtype=x.dtype)
        for i in range(x.size(2)):
            out[:, :, i] = self.Linear_Seasonal[i](seasonal[:, :, i]) + self.Linear_Trend[i](trend[:, :, i])
        return out


class TimeMixing(torch.nn.Module):
    """x + Dropout(ReLU(Linear(L → L) over time)), then the norm."""

    def __init__(self, seq_len, channels):
        super().__init__()
        self.norm = torch.nn.LayerNorm((seq_len, channels))
        self.fc1 = torch.nn.Linear(seq_len, seq_len)
        self.dropout = torch.nn.Dropout(0.1)

    def forward(self, x):  # (B, L, N)
        mixed = self.dropout(torch.relu(self.fc1(x.permute(0, 2, 1)))).permute(0, 2, 1)
        return self.norm(x + mixed)


class FeatureMixing(torch.nn.Module):
    """x + Dropout(fc2(Dropout(ReLU(fc1(norm(x)))))), normalised before (POCO's default)."""

    def __init__(self, seq_len, channels, ff_dim):
        super().__init__()
        self.norm_before = torch.nn.LayerNorm((seq_len, channels))
        self.fc1 = torch.nn.Linear(channels, ff_dim)
        self.fc2 = torch.nn.Linear(ff_dim, channels)
        self.dropout = torch.nn.Dropout(0.1)

    def forward(self, x):
        h = self.dropout(torch.relu(self.fc1(self.norm_before(x))))
        return x + self.dropout(self.fc2(h))


class MixerLayer(torch.nn.Module):
    def __init__(self, seq_len, channels, ff_dim):
        super().__init__()
        self.time_mixing = TimeMixing(seq_len, channels)
        self.feature_mixing = FeatureMixing(seq_len, channels, ff_dim)

    def forward(self, x):
        return self.feature_mixing(self.time_mixing(x))


class TSMixer(torch.nn.Module):
    """(B, L, N) → (B, P, N): mixer layers, then Linear(L → P) over time."""

    def __init__(self, seq_len, pred_len, channels, ff_dim, num_blocks=2):
        super().__init__()
        # num_blocks - 1 layers, as the library's _build_mixer makes them.
        self.mixer_layers = torch.nn.Sequential(*[MixerLayer(seq_len, channels, ff_dim) for _ in range(num_blocks - 1)])
        self.temporal_projection = torch.nn.Linear(seq_len, pred_len)

    def forward(self, x):
        x = self.mixer_layers(x)
        return self.temporal_projection(x.permute(0, 2, 1)).permute(0, 2, 1)


CLASSES = {"nlinear": NLinear, "dlinear": DLinear, "tsmixer": TSMixer}
# wormflow's (302, L) / (302,) tensors → the per-neuron modules' names.
MAPS = {
    "nlinear": {"linear": "Linear"},
    "dlinear": {"seasonal": "Linear_Seasonal", "trend": "Linear_Trend"},
}


# wormflow's TSMixer names → the reference's.
TSMIXER_NAMES = {
    "time.fc1": "mixer_layers.0.time_mixing.fc1",
    "time.norm": "mixer_layers.0.time_mixing.norm",
    "feature.fc1": "mixer_layers.0.feature_mixing.fc1",
    "feature.fc2": "mixer_layers.0.feature_mixing.fc2",
    "feature.norm": "mixer_layers.0.feature_mixing.norm_before",
    "projection": "temporal_projection",
}


def load(kind, model, tensors):
    if kind == "tsmixer":
        state = model.state_dict()
        loaded = {}
        for name, value in tensors.items():
            module, param = name.rsplit(".", 1)
            theirs = f"{TSMIXER_NAMES[module]}.{param}"
            loaded[theirs] = value.reshape(state[theirs].shape)
        missing = set(state) - set(loaded)
        if missing:
            raise ValueError(f"tsmixer: the reference has weights wormflow lacks: {sorted(missing)}")
        model.load_state_dict(loaded)
        return
    with torch.no_grad():
        for ours, theirs in MAPS[kind].items():
            weight, bias = tensors.pop(f"{ours}.weight"), tensors.pop(f"{ours}.bias")
            for i, linear in enumerate(getattr(model, theirs)):
                linear.weight.copy_(weight[i : i + 1])
                linear.bias.copy_(bias[i : i + 1])
    if tensors:
        raise ValueError(f"{kind}: wormflow weights the reference has no place for: {sorted(tensors)}")


def every_position(model, x, lookback):
    """The one-step forecast from the window ending at each position, the start padded."""
    padded = torch.cat([x[:, :1, :].repeat(1, lookback - 1, 1), x], dim=1)
    steps = [model(padded[:, t : t + lookback, :])[:, 0, :] for t in range(x.size(1))]
    return torch.stack(steps, dim=1)


def full_windows(model, x, lookback):
    """The input up to the first full window, then the forecast from each window."""
    steps = [model(x[:, t - lookback + 1 : t + 1, :])[:, 0, :] for t in range(lookback - 1, x.size(1))]
    return torch.cat([x[:, : lookback - 1, :], torch.stack(steps, dim=1)], dim=1)


def build(kind, hidden, lookback):
    if kind == "tsmixer":
        return TSMixer(lookback, 1, N, hidden)
    return CLASSES[kind](lookback, 1, N)


def main(directory):
    directory = Path(directory)
    counts = json.loads((directory / "counts.json").read_text())
    lookback, hidden = counts["lookback"], counts["hidden"]
    problems = []
    for kind in CLASSES:
        tensors = read_safetensors(directory / f"{kind}.safetensors")
        x, mask, expected = tensors.pop("__x"), tensors.pop("__mask"), tensors.pop("__out")
        model = build(kind, hidden, lookback).eval()
        load(kind, model, tensors)
        positions = full_windows if kind == "tsmixer" else every_position
        with torch.no_grad():
            out = positions(model.double(), (x * mask).double(), lookback)
        err = scaled_error(out, expected)
        if not err <= TOLERANCE:
            problems.append(f"{kind}: forward pass differs from the reference by {err:.3e} (relative to the output's scale)")
        print(f"{kind:8s} lookback={lookback:<3d} |wormflow - reference| / scale = {err:.2e}")
        for h, c, expected_count in counts["table"][kind]:
            got = sum(p.numel() for p in build(kind, h, c).parameters())
            if got != expected_count:
                problems.append(f"{kind} at hidden {h}, lookback {c}: the reference has {got} parameters, wormflow says {expected_count}")
            print(f"{kind:8s} hidden={h:<3d} lookback={c:<3d} reference count {got}")
    return exit_code(problems)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
