//! The fuzz harness (`fuzz/src/lib.rs`) on stable, bounded: the seed corpus, then
//! seeded random mutations of it (bit flips, byte edits, splices, truncation).
//! Coverage-guided fuzzing proper is `cargo +nightly fuzz run <target>` (see
//! docs/DEPLOYMENT.md); this keeps the same invariants checked in every test run.
//! `FUZZ_ITERATIONS` scales the run (default 400 hub runs, 4000 parser inputs).

#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..8) {
        let len = data.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] = rng.random();
            }
            2 => {
                let i = rng.random_range(0..=len);
                let b = *[b'{', b'}', b'"', b',', b':', b'[', 0xFF, 0, b'\\']
                    .get(rng.random_range(0..9))
                    .unwrap();
                data.insert(i, b);
            }
            3 if len > 1 => {
                let i = rng.random_range(0..len);
                data.remove(i);
            }
            4 => {
                // Splice a piece of another seed in.
                let other = &seeds[rng.random_range(0..seeds.len())];
                if !other.is_empty() {
                    let a = rng.random_range(0..other.len());
                    let b = rng.random_range(a..=other.len());
                    let at = rng.random_range(0..=len);
                    data.splice(at..at, other[a..b].iter().copied());
                }
            }
            _ if len > 2 => data.truncate(rng.random_range(1..len)),
            _ => {}
        }
    }
    data
}

fn iterations(default: usize) -> usize {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(default, |n| n.max(1))
}

/// Runs `run` on the seeds, then on `n` mutants; a failure prints the input.
fn fuzz(target: &str, n: usize, seed: u64, run: fn(&[u8])) {
    let corpus = seeds(target);
    let mut rng = StdRng::seed_from_u64(seed);
    let inputs = corpus
        .iter()
        .cloned()
        .chain((0..n).map(|_| mutate(&mut rng, &corpus)));
    for (i, input) in inputs.enumerate() {
        if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("{target}: input #{i} failed (seed {seed}); hex: {hex}");
        }
    }
}

#[test]
fn parser_survives_mutated_frames() {
    fuzz(
        "parse_message",
        iterations(4000),
        0x5eed_0001,
        harness::parse_message,
    );
}

#[test]
fn hub_keeps_its_invariants_under_mutated_sessions() {
    fuzz(
        "hub_messages",
        iterations(400),
        0x5eed_0002,
        harness::hub_messages,
    );
}
