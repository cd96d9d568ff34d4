//! The statistical quality of the leak verdict, over 1000 synthetic series per case: retained
//! levels of 500 MiB plus the case's growth plus uniform noise of ±20 MiB (the fixture worker's
//! `--noise-mib 40`). For leaks: how often the verdict is a leak, how often it is clear within
//! 30 trials, how often the rate is within ±15%. For the rest: how often each is called a leak.
//! The README's quality table quotes this output.
//!
//! `cargo bench --bench quality` (a few seconds).

use memwarden::analysis::{classify, Rules, Verdict};

use memwarden::units::MIB;
const SEEDS: u64 = 1000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    type Case = (&'static str, usize, f64, fn(usize) -> f64);
    let cases: [Case; 7] = [
        ("leak 1 MiB/trial, 90 trials", 90, 1.0, |i| i as f64),
        ("leak 4 MiB/trial, 40 trials", 40, 4.0, |i| 4.0 * i as f64),
        ("leak 32 MiB/trial, 30 trials", 30, 32.0, |i| {
            32.0 * i as f64
        }),
        ("pure noise, 30 trials", 30, 0.0, |_| 0.0),
        ("cache 200 MiB over 8 trials, 30 trials", 30, 0.0, |i| {
            i.min(8) as f64 * 25.0
        }),
        ("step 200 MiB at trial 12, 30 trials", 30, 0.0, |i| {
            if i >= 12 {
                200.0
            } else {
                0.0
            }
        }),
        ("step 200 MiB at trial 22, 30 trials", 30, 0.0, |i| {
            if i >= 22 {
                200.0
            } else {
                0.0
            }
        }),
    ];
    println!("| case | called a leak | clear within 30 trials | rate within ±15% |");
    println!("|---|---|---|---|");
    for (name, trials, rate, level) in cases {
        let (mut leaks, mut early, mut accurate) = (0, 0, 0);
        for seed in 1..=SEEDS {
            let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut noise = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 20.0
            };
            let x: Vec<f64> = (0..trials).map(|i| i as f64).collect();
            let y: Vec<f64> = (0..trials)
                .map(|i| (500.0 + level(i) + noise()) * MIB)
                .collect();
            let c = classify(&x, &y, &Rules::default());
            leaks += usize::from(c.verdict == Verdict::Leak);
            early += usize::from(c.first_clear.is_some_and(|t| t < 30));
            if let Some(fit) = c.ongoing.filter(|_| rate > 0.0) {
                accurate += usize::from((fit.slope / MIB / rate - 1.0).abs() <= 0.15);
            }
        }
        let share = |n: usize| format!("{:.1}%", 100.0 * n as f64 / SEEDS as f64);
        let (early, accurate) = if rate > 0.0 {
            (share(early), share(accurate))
        } else {
            ("-".into(), "-".into())
        };
        println!("| {name} | {} | {early} | {accurate} |", share(leaks));
    }
}
