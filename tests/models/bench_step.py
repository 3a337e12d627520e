"""Time one training step (forward + backward + AdamW) on a realistic slide; not a test.

Run: ``python tests/models/bench_step.py [--threads 2] [name[;key=json_value...] ...]``, e.g.
``python tests/models/bench_step.py align-st sgn "align-st;token_pool=1"``. The slide has 190 spots,
1280-d image features, (4, 56, 56) nuclei maps and 64 genes of 96 real MiniLM-width tokens.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from geneshot.models import GeneInputs, SlideInputs, create_model, mse_pcc_loss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="*", default=["align-st", "sgn"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, g, length = 190, 64, 96
    r, c = torch.meshgrid(torch.arange(20), torch.arange(10), indexing="ij")
    grid = torch.stack([r.flatten(), c.flatten()], 1)[:n]
    slide = SlideInputs(torch.randn(n, 1280), torch.rand(n, 4, 56, 56), grid)
    genes = GeneInputs(
        torch.randn(g, length, 384), torch.ones(g, length, dtype=torch.bool), torch.randn(g, 384)
    )
    y = torch.rand(n, g)
    for spec in args.specs:
        name, *kv = spec.split(";")
        model = create_model(name, **{k: json.loads(v) for k, v in (x.split("=", 1) for x in kv)})
        opt = torch.optim.AdamW(model.parameters(), 5e-4, weight_decay=1e-4)
        wall, cpu = [], []
        for _ in range(args.repeats):
            t, c0 = time.perf_counter(), time.process_time()
            loss = mse_pcc_loss(model(slide, genes), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c0)
        wall.sort()
        n_par = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"{spec}: {n_par:.2f}M params, step wall median {wall[len(wall) // 2]:.3f}s "
            f"min {wall[0]:.3f}s, cpu min {min(cpu):.3f}s ({args.threads} threads); "
            f"400 steps ~ {400 * wall[0]:.0f}s"
        )


if __name__ == "__main__":
    main()
