//! Many models at once: M models trained as one stack against the same M models trained
//! one after another (each a stack of one, as a node alone trains), in training samples
//! per second (forward + backward + AdamW), on this machine's CPU (or `cuda`).
//!
//! `cargo bench --workspace --bench stacked -- [cpu|cuda] [BATCH] [WINDOW]`

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use wormflow_torch::fit::AdamW;
use wormflow_torch::models::{hidden_for_target, Counting, Options};
use wormflow_torch::stacked::{Draws, Stack};

/// Seconds per optimizer step of one stack of `m` models.
fn seconds_per_step(
    model: &str,
    hidden: i64,
    m: i64,
    (batch, window): (i64, i64),
    device: Device,
    steps: usize,
) -> f64 {
    let seeds: Vec<u64> = (0..m as u64).collect();
    let options = Options { hidden, residual: false, dropout: 0.1, lookback: 0 };
    let mut stack = Stack::new(model, options, &seeds, device).unwrap();
    let mut adam = AdamW::new(&stack);
    let x = Tensor::randn([m, batch, window, 302], (Kind::Float, device));
    let y = Tensor::randn([m, batch, window, 302], (Kind::Float, device));
    let mut step_number = 0u64;
    let mut step = |stack: &mut Stack| {
        step_number += 1;
        for p in &mut stack.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let draws = Draws::new(seeds.iter().map(|&s| (s, step_number)).collect());
        let pred = stack.forward(&stack.weights(None), &x, true, &draws);
        let loss = (pred - &y).square().mean(Kind::Float) * m as f64;
        loss.backward();
        adam.step(stack, &vec![Some((1e-3, 0.01, step_number)); m as usize]);
        let _ = loss.double_value(&[]); // wait for the device
    };
    step(&mut stack);
    let start = Instant::now();
    for _ in 0..steps {
        step(&mut stack);
    }
    start.elapsed().as_secs_f64() / steps as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let device = match args.first().map(String::as_str) {
        Some("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let batch: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let window: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(40);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    tch::set_num_threads(threads as i32);
    println!("M models as one stack vs one after another: batch {batch}, L = {window}, {threads} threads, {device:?}; samples/s (higher is better)");
    for target in [25_000, 580_000] {
        for model in ["feedforward", "ctrnn", "lstm"] {
            let hidden = hidden_for_target(model, target, 0, Counting::Study).unwrap();
            // One model's step, the reference of "one after another".
            let steps = if target > 100_000 { 2 } else { 4 };
            let one = seconds_per_step(model, hidden, 1, (batch, window), device, steps);
            for m in [1, 4, 16, 64] {
                let stacked = if m == 1 {
                    one
                } else {
                    seconds_per_step(model, hidden, m, (batch, window), device, steps)
                };
                let separate = one * m as f64;
                println!(
                    "  {model:<12} ≈{:>3}K (H={hidden:<4}) M={m:<3} stacked {:>9.0} samples/s  separate {:>9.0} samples/s  ratio {:>5.2}×",
                    target / 1000,
                    (m * batch) as f64 / stacked,
                    (m * batch) as f64 / separate,
                    separate / stacked
                );
            }
        }
    }
}
