//! Train-step time (forward + backward + AdamW) of LSTM, CTRNN and Transformer at ≈580K
//! parameters, batch 128, L = 180, against the same models in PyTorch (train_step.py).
//!
//! `cargo bench --bench train_step -- PYTHON [DEVICE]`
//! `cargo bench --bench train_step -- --table [DEVICE]`: the step-time table `--cost` is
//! calibrated by (stages/data/step_times.csv), as CSV rows: every architecture at three
//! hidden sizes and two shapes.

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use wormflow_torch::fit::AdamW;
use wormflow_torch::models::{hidden_for_target, n_params, Counting, Options};
use wormflow_torch::stacked::{Draws, Stack};

const BATCH: i64 = 128;
const WINDOW: i64 = 180;
const STEPS: usize = 5;

/// Seconds per optimizer step of one model as a train node runs it (a stack of one).
fn time_steps(
    model: &str,
    (hidden, lookback): (i64, i64),
    (batch, window): (i64, i64),
    device: Device,
) -> f64 {
    let options = Options { hidden, residual: false, dropout: 0.1, lookback };
    let mut stack = Stack::new(model, options, &[0], device).unwrap();
    let mut adam = AdamW::new(&stack);
    let x = Tensor::randn([1, batch, window, 302], (Kind::Float, device));
    let y = Tensor::randn([1, batch, window, 302], (Kind::Float, device));
    let mut n = 0u64;
    let mut step = |stack: &mut Stack| {
        n += 1;
        for p in &mut stack.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let pred = stack.forward(&stack.weights(None), &x, true, &Draws::new(vec![(0, n)]));
        let loss = (pred - &y).square().mean(Kind::Float);
        loss.backward();
        adam.step(stack, &[Some((1e-3, 0.01, n))]);
        let _ = loss.double_value(&[]); // wait for the device
    };
    step(&mut stack);
    step(&mut stack);
    let start = Instant::now();
    for _ in 0..STEPS {
        step(&mut stack);
    }
    start.elapsed().as_secs_f64() / STEPS as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let python = args.first().cloned().unwrap_or_else(|| "python3".into());
    let device = match args.get(1).map(String::as_str) {
        Some("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    tch::set_num_threads(threads as i32);
    if python == "--table" {
        // One thread: a node's share of the CPU under `run`'s default -j (one per core).
        tch::set_num_threads(1);
        return print_table(device, 1, args.get(2).map(String::as_str));
    }
    println!("train step (forward + backward + AdamW), batch {BATCH}, L = {WINDOW}, {threads} threads, {device:?}");
    for model in ["lstm", "ctrnn", "transformer"] {
        let hidden = hidden_for_target(model, 580_000, 0, Counting::Study).unwrap();
        let ours = time_steps(model, (hidden, 0), (BATCH, WINDOW), device);
        let theirs = std::process::Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/train_step.py"))
            .args([
                model,
                &hidden.to_string(),
                &threads.to_string(),
                if device == Device::Cpu { "cpu" } else { "cuda" },
            ])
            .output()
            .expect("run the PyTorch reference");
        let out = String::from_utf8_lossy(&theirs.stdout);
        let line = out.lines().last().unwrap_or_default().to_string();
        let (torch_s, torch_params): (f64, i64) = match line.split_whitespace().collect::<Vec<_>>()
            [..]
        {
            [s, p] => (s.parse().unwrap_or(f64::NAN), p.parse().unwrap_or(-1)),
            _ => {
                eprintln!("PyTorch reference failed: {}", String::from_utf8_lossy(&theirs.stderr));
                (f64::NAN, -1)
            }
        };
        println!(
            "  {model:<12} H={hidden:<4} params {:>7} (torch {torch_params:>7})  wormflow {:7.1} ms  pytorch {:7.1} ms  ratio {:.3} (target ≤ 1.05)  {:.0} samples/s",
            n_params(model, hidden, 0, Counting::Used).unwrap(),
            ours * 1e3,
            torch_s * 1e3,
            ours / torch_s,
            BATCH as f64 / ours
        );
    }
}

/// The rows of stages/data/step_times.csv for this machine (`only`: one architecture's).
fn print_table(device: Device, threads: usize, only: Option<&str>) {
    let name = if device == Device::Cpu { "cpu" } else { "cuda" };
    println!("device,model,hidden,lookback,batch,window,threads,seconds,source");
    let wanted = |m: &&&str| **m != "baseline" && only.is_none_or(|o| o == **m);
    for model in wormflow_torch::models::MODELS.iter().filter(wanted) {
        // (hidden, lookback); the forecasting models' windows at least their lookback.
        let sizes: &[(i64, i64)] = match *model {
            "linear" => &[(302, 0)],
            "nlinear" | "dlinear" => &[(0, 16), (0, 48)],
            "tsmixer" => &[(16, 16), (64, 48), (256, 48)],
            _ => &[(16, 0), (64, 0), (256, 0)],
        };
        // The forecasting models at pipelines/forecast.toml's shapes (a TSMixer mixes a
        // whole window at each of its T − L + 1 positions: B128 L180 would need 12 GB).
        let shapes =
            if sizes[0].1 > 0 { [(16, 64), (64, 64)] } else { [(16, 40), (BATCH, WINDOW)] };
        for &(hidden, lookback) in sizes {
            for shape in shapes {
                let seconds = time_steps(model, (hidden, lookback), shape, device);
                println!(
                    "{name},{model},{hidden},{lookback},{},{},{threads},{seconds:.6},wormflow train_step --table",
                    shape.0, shape.1
                );
            }
        }
    }
}
