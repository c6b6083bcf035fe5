//! Replays every committed seed (`seeds/<target>/`), every crash turned regression
//! (`regressions/<target>/`) and, when present, the local corpus (`corpus/<target>/`, filled by
//! `scripts/seed.sh` and by fuzzing runs) through the fuzzed functions, on stable, without
//! libFuzzer. A panic names the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    fs,
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 5] = [
    ("http_head", rtb_fuzz::http_head),
    ("bid_request", rtb_fuzz::bid_request),
    ("bid_response", rtb_fuzz::bid_response),
    ("tmax_splice", rtb_fuzz::tmax_splice),
    ("encode_response", rtb_fuzz::encode_response),
];

/// Most corpus files replayed per target, so a long fuzzing run's corpus cannot make the CI
/// replay slow (seeds and regressions are always replayed in full).
const CORPUS_FILES_MAX: usize = 2_000;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    out.sort();
    out
}

fn replay(kind: &str, limit: usize) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        for path in files(&root.join(kind).join(name)).into_iter().take(limit) {
            let data = fs::read(&path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(format!("{name}: {}", path.display()));
            }
            ran += 1;
        }
    }
    (ran, failures)
}

#[test]
fn seeds() {
    let (ran, failures) = replay("seeds", usize::MAX);
    println!("replayed {ran} seed files");
    assert!(failures.is_empty(), "failing seeds: {failures:#?}");
    // Every target has committed seeds: an empty directory would make this test vacuous.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    for (name, _) in TARGETS {
        assert!(!files(&root.join(name)).is_empty(), "no seeds for {name}");
    }
}

#[test]
fn regressions() {
    let (ran, failures) = replay("regressions", usize::MAX);
    println!("replayed {ran} regression files");
    assert!(failures.is_empty(), "failing regressions: {failures:#?}");
}

#[test]
fn corpus() {
    let (ran, failures) = replay("corpus", CORPUS_FILES_MAX);
    if ran == 0 {
        println!("no corpus/ (run scripts/seed.sh or scripts/run.sh to make one); skipped");
    } else {
        println!("replayed {ran} corpus files");
    }
    assert!(failures.is_empty(), "failing corpus files: {failures:#?}");
}
