"""NLinear and DLinear as the forecasting literature writes them (Zeng et al. 2023, as POCO
runs them: models/single_session_models.py with `separate_projs`, one nn.Linear per neuron;
DLinear's trend from Autoformer's `series_decomp`), re-implemented in PyTorch to check
wormflow's models against.

    python forecasting_models.py DIR

DIR holds `<model>.safetensors` (wormflow's weights, `__x`, `__mask` and `__out`: its
next-step predictions at every position) and `counts.json`, written by forecasting_models.rs.
The reference forecasts one step from each window of `lookback` steps ending at a position,
the sequence's first step repeated before its start (wormflow's rule for early positions),
and must match `__out` within 1e-5. Exit 0 when everything agrees.
"""

import json
import sys
from pathlib import Path

import torch

from study_models import N, read_safetensors


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


CLASSES = {"nlinear": NLinear, "dlinear": DLinear}
# wormflow's (302, L) / (302,) tensors → the per-neuron modules' names.
MAPS = {
    "nlinear": {"linear": "Linear"},
    "dlinear": {"seasonal": "Linear_Seasonal", "trend": "Linear_Trend"},
}


def load(kind, model, tensors):
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


def main(directory):
    directory = Path(directory)
    counts = json.loads((directory / "counts.json").read_text())
    lookback = counts["lookback"]
    problems = []
    for kind, cls in CLASSES.items():
        tensors = read_safetensors(directory / f"{kind}.safetensors")
        x, mask, expected = tensors.pop("__x"), tensors.pop("__mask"), tensors.pop("__out")
        model = cls(lookback, 1, N).eval()
        load(kind, model, tensors)
        with torch.no_grad():
            out = every_position(model, x * mask, lookback)
        err = (out - expected).abs().max().item()
        if not err <= 1e-5:
            problems.append(f"{kind}: forward pass differs from the reference by {err:.3e} (max abs)")
        print(f"{kind:8s} lookback={lookback:<3d} max |wormflow - reference| = {err:.2e}")
        for c, expected_count in counts["table"][kind]:
            got = sum(p.numel() for p in cls(c, 1, N).parameters())
            if got != expected_count:
                problems.append(f"{kind} at lookback {c}: the reference has {got} parameters, wormflow says {expected_count}")
            print(f"{kind:8s} lookback={c:<3d} reference count {got}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
