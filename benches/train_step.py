#!/usr/bin/env python3
"""The PyTorch reference for benches/train_step.rs: the same architectures as wormflow's
(the study's: CTRNN leak logit starting at 1, Transformer with √H scaling and dropout 0.1
in train mode), batch, window and optimizer, timed the same way.
usage: train_step.py MODEL HIDDEN THREADS DEVICE → prints "<seconds per step> <parameter count>"."""
import math
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

N = 302


def heads_for(h):
    return next(d for d in range(min(5, h), 0, -1) if h % d == 0)


def positions(t, h, device):
    pos = torch.arange(t, device=device, dtype=torch.float32).unsqueeze(1)
    i = torch.arange(h, device=device, dtype=torch.float32)
    freq = torch.exp(torch.floor(i / 2) * 2 * (-math.log(10000.0) / h))
    angle = pos * freq
    return torch.where(i.remainder(2) == 0, angle.sin(), angle.cos())


DROPOUT = 0.1


class Attention(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.in_proj, self.out_proj, self.heads = nn.Linear(h, 3 * h), nn.Linear(h, h), heads_for(h)

    def forward(self, x):
        b, t, h = x.shape
        q, k, v = self.in_proj(x).view(b, t, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=DROPOUT if self.training else 0.0, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, h))


class Lstm(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.embedding, self.norm = nn.Linear(N, h), nn.LayerNorm(h)
        self.lstm, self.readout = nn.LSTM(h, h, batch_first=True), nn.Linear(h, N)

    def forward(self, x):
        return self.readout(self.lstm(self.norm(self.embedding(x)))[0])


class Ctrnn(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.embedding, self.norm = nn.Linear(N, h), nn.LayerNorm(h)
        self.input, self.recurrent = nn.Linear(h, h), nn.Linear(h, h)
        self.leak, self.readout = nn.Parameter(torch.ones(h)), nn.Linear(h, N)

    def forward(self, x):
        drive = self.input(self.norm(self.embedding(x)))
        alpha = torch.sigmoid(self.leak)
        state = torch.zeros(x.shape[0], drive.shape[2], device=x.device)
        states = []
        for step in drive.unbind(1):
            target = torch.relu(step + self.recurrent(state))
            state = torch.lerp(state, target, alpha)
            states.append(state)
        return self.readout(torch.stack(states, 1))


class Transformer(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.embedding, self.readout = nn.Linear(N, h), nn.Linear(h, N)
        self.norm1, self.attention, self.norm2 = nn.LayerNorm(h), Attention(h), nn.LayerNorm(h)
        self.ff1, self.ff2 = nn.Linear(h, h), nn.Linear(h, h)

    def forward(self, x):
        e = self.embedding(x)
        drop = lambda t: F.dropout(t, DROPOUT, self.training)
        z = drop(e * math.sqrt(e.shape[2]) + positions(e.shape[1], e.shape[2], e.device))
        z = z + drop(self.attention(self.norm1(z)))
        z = z + drop(self.ff2(drop(torch.relu(self.ff1(self.norm2(z))))))
        return self.readout(z)


def main():
    model, hidden, threads, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = {"lstm": Lstm, "ctrnn": Ctrnn, "transformer": Transformer}[model](hidden).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(128, 180, N, device=device)
    y = torch.randn(128, 180, N, device=device)
    mask = torch.ones(128, 1, N, device=device)

    def step():
        opt.zero_grad()
        loss = (((net(x * mask) - y) ** 2) * mask).sum() / (mask.sum() * 180)
        loss.backward()
        opt.step()
        loss.item()

    step()
    step()
    start = time.perf_counter()
    for _ in range(5):
        step()
    print(f"{(time.perf_counter() - start) / 5:.6f} {sum(p.numel() for p in net.parameters())}")


main()
