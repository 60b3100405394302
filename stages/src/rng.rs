//! Seeded random numbers: ChaCha8 streams, one per (seed, purpose, index), so results do not
//! depend on thread scheduling or on how many draws another worm needed.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub fn stream(seed: u64, purpose: &str, index: u64) -> ChaCha8Rng {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(purpose.as_bytes());
    h.update(&index.to_le_bytes());
    ChaCha8Rng::from_seed(*h.finalize().as_bytes())
}
