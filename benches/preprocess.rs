//! Preprocess speed against an expert numpy/scipy implementation, on a synthetic dataset
//! shaped like the paper's pool (284 worms × ~3,000 steps × ~100 recorded neurons).
//!
//! `cargo bench --bench preprocess -- DIR PYTHON` writes DIR/input.bin, runs
//! benches/preprocess_numpy.py with PYTHON on it, times wormflow's preprocess on the same
//! worms, and prints the speed-up and the largest absolute difference.

use std::io::{Read, Write};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use wormflow_stages::neurons::N_NEURONS;
use wormflow_stages::preprocess::{preprocess_worm, Params};
use wormflow_stages::table::{Worm, WormInfo};

fn dataset() -> Vec<Worm> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    (0..284)
        .map(|w| {
            let n_steps = 2500 + rng.random_range(0..1000);
            let t: Vec<f64> =
                (0..n_steps).map(|k| k as f64 * 0.6 + rng.random_range(0.0..0.01)).collect();
            let mut traces = vec![None; N_NEURONS];
            for slot in rand::seq::index::sample(&mut rng, N_NEURONS, 100) {
                let mut x = rng.random_range(-1.0..1.0f32);
                traces[slot] = Some(
                    (0..n_steps)
                        .map(|_| {
                            x += rng.random_range(-0.1..0.1f32);
                            x
                        })
                        .collect(),
                );
            }
            Worm {
                dataset: "Bench".into(),
                worm: format!("w{w}"),
                t,
                traces,
                info: WormInfo::default(),
            }
        })
        .collect()
}

fn write_input(path: &std::path::Path, worms: &[Worm]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&(worms.len() as u32).to_le_bytes()).unwrap();
    for w in worms {
        let cols: Vec<&Vec<f32>> = w.traces.iter().flatten().collect();
        f.write_all(&(w.t.len() as u32).to_le_bytes()).unwrap();
        f.write_all(&(cols.len() as u32).to_le_bytes()).unwrap();
        for t in &w.t {
            f.write_all(&t.to_le_bytes()).unwrap();
        }
        for r in 0..w.t.len() {
            for c in &cols {
                f.write_all(&c[r].to_le_bytes()).unwrap();
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: preprocess DIR PYTHON"));
    let python = args.get(2).map(String::as_str).unwrap_or("python3");
    std::fs::create_dir_all(&dir).unwrap();
    let worms = dataset();
    let values: usize = worms.iter().map(|w| w.t.len() * 100).sum();
    write_input(&dir.join("input.bin"), &worms);
    let p = Params::default();

    let numpy = std::process::Command::new(python)
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/benches/preprocess_numpy.py")])
        .arg(dir.join("input.bin"))
        .arg(dir.join("numpy.bin"))
        .args([p.smooth_alpha.to_string(), p.resample_dt.to_string()])
        .output()
        .expect("run the numpy reference");
    assert!(
        numpy.status.success(),
        "numpy reference failed: {}",
        String::from_utf8_lossy(&numpy.stderr)
    );
    let numpy_s: f64 = String::from_utf8_lossy(&numpy.stdout).trim().parse().unwrap();

    // Best of three runs (the first also pays for fresh pages from the OS).
    let time = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut best = f64::INFINITY;
        let mut out = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            out = pool.install(|| {
                worms.par_iter().map(|w| preprocess_worm(w, &p).unwrap()).collect::<Vec<Worm>>()
            });
            best = best.min(start.elapsed().as_secs_f64());
        }
        (best, out)
    };
    let (one, _) = time(1);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (all, out) = time(cores);

    // Compare with numpy's output.
    let mut bytes = Vec::new();
    std::fs::File::open(dir.join("numpy.bin")).unwrap().read_to_end(&mut bytes).unwrap();
    let mut pos = 4;
    let mut max_diff = 0.0f64;
    for w in &out {
        let rd = |b: &[u8], p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap()) as usize;
        let (rows, cols) = (rd(&bytes, pos), rd(&bytes, pos + 4));
        pos += 8;
        assert_eq!(rows, w.t.len(), "grid lengths differ");
        let ours: Vec<&Vec<f32>> = w.traces.iter().flatten().collect();
        for r in 0..rows {
            for (c, col) in ours.iter().enumerate().take(cols) {
                let theirs = f32::from_le_bytes(
                    bytes[pos + 4 * (r * cols + c)..pos + 4 * (r * cols + c) + 4]
                        .try_into()
                        .unwrap(),
                );
                max_diff = max_diff.max((theirs as f64 - col[r] as f64).abs());
            }
        }
        pos += 4 * rows * cols;
    }
    println!(
        "preprocess of 284 worms × ~3000 steps × 100 neurons ({:.1} M values)",
        values as f64 / 1e6
    );
    println!("  numpy/scipy (reference) {numpy_s:7.3} s");
    println!("  wormflow, 1 thread     {one:8.3} s   speed-up {:6.1}x", numpy_s / one);
    println!(
        "  wormflow, {cores} threads    {all:8.3} s   speed-up {:6.1}x   (target ≥ 10x)",
        numpy_s / all
    );
    println!("  max |difference|       {max_diff:.2e}   (target ≤ 1e-5)");
}
