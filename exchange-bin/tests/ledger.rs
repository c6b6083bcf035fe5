//! The auction ledger through the real exchange binary and three real `rtb-dsp` processes
//! (bids, no bids, 500s, resets, hangs that time out): after a run and a graceful stop, the
//! file sink (rotated files included) holds one record per auction, shed and invalid request
//! answered minus the drops and samples the exchange counted; every winning record's clearing
//! price is the price in the answer the client got; every line validates against the
//! published JSON Schema; `rtb-ledger` sums the same revenue.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    process::Command,
};

use common::ledger::{
    expected_and_not_kept, run_auctions, start_dsps, temp_dir, Sent, AUCTIONS_PER_CLIENT, CLIENTS,
    OTHERS,
};
use common::{sample, Exchange};
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/ledger/ledger-record.v2.schema.json"
    );
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every line of the ledger file and its rotated files, oldest first.
fn ledger_lines(path: &Path) -> (Vec<String>, usize) {
    let mut files = vec![path.to_path_buf()];
    for n in 1.. {
        let rotated = PathBuf::from(format!("{}.{n}", path.display()));
        if !rotated.exists() {
            break;
        }
        files.push(rotated);
    }
    let count = files.len();
    let lines = files
        .iter()
        .rev()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "{}: a cut record",
                f.display()
            );
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    (lines, count)
}

/// A finished run: the ledger file, what the clients got, the metrics scraped before the stop.
struct Run {
    dir: PathBuf,
    path: PathBuf,
    sent: Sent,
    metrics: String,
}

/// Starts the DSPs and an exchange writing its ledger to a fresh file with `extra` flags, runs
/// the auctions, scrapes the metrics, stops the exchange gracefully (SIGTERM). None when the
/// DSP binary is not built (outside CI).
fn run_with_ledger(name: &str, extra: &[&str]) -> Option<Run> {
    let dsps = start_dsps()?;
    let dir = temp_dir(name);
    let path = dir.join("ledger.jsonl");
    let target = format!("file:{}", path.display());
    let mut args = vec!["--ledger", target.as_str()];
    args.extend_from_slice(extra);
    let mut ex = Exchange::start(&args);
    for (name, dsp) in ["steady", "flaky", "sleepy"].iter().zip(&dsps) {
        assert_eq!(ex.onboard(name, dsp.addr).status, 201);
    }
    let sent = run_auctions(&ex);
    let metrics = ex.metrics();
    assert!(ex.terminate().success());
    drop(dsps);
    Some(Run {
        dir,
        path,
        sent,
        metrics,
    })
}

#[test]
fn the_file_ledger_matches_the_answers_the_counts_and_the_schema() {
    let Some(Run {
        dir,
        path,
        sent: Sent {
            answers,
            invalid_shed,
        },
        metrics,
    }) = run_with_ledger(
        "file",
        &[
            "--ledger-file-max-bytes",
            "100000",
            "--ledger-file-keep",
            "1000",
            "--ledger-flush-ms",
            "50",
        ],
    )
    else {
        return;
    };
    let (made, not_kept) = expected_and_not_kept(&metrics);
    assert_eq!(
        made,
        (CLIENTS * AUCTIONS_PER_CLIENT + 2 * OTHERS) as u64,
        "{metrics}"
    );
    let (lines, files) = ledger_lines(&path);
    assert_eq!(
        lines.len() as u64,
        made - not_kept,
        "records = answered - not kept"
    );
    assert_eq!(not_kept, 0, "nothing dropped at this rate: {metrics}");
    assert!(files > 2, "the file rotated ({files} files)");

    let validator = schema();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut statuses: HashMap<String, usize> = HashMap::new();
    let mut revenue = 0.0;
    let mut recorded = HashSet::new();
    let mut late_sheds = 0;
    let mut unnamed_sheds = 0;
    for line in &lines {
        let record: Value = serde_json::from_str(line).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&record)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{line}");
        *kinds
            .entry(record["kind"].as_str().unwrap().into())
            .or_default() += 1;
        if record["kind"] == "shed" {
            // Schema v2: a shed record says whose request it was: a deliberate late one, or
            // a client's auction that got 204. A request shed before it was decoded (the
            // queue-wait and in-flight rules) has no id: it is counted below.
            let id = record["id"].as_str().unwrap();
            if id.is_empty() {
                unnamed_sheds += 1;
            } else if id.starts_with("late-") {
                late_sheds += 1;
            } else {
                assert_eq!(answers.get(id), Some(&None), "shed {id}: {line}");
                assert!(recorded.insert(id.to_string()), "two records: {line}");
            }
        }
        if record["kind"] != "auction" {
            continue;
        }
        for dsp in record["dsps"].as_array().unwrap() {
            *statuses
                .entry(dsp["status"].as_str().unwrap().into())
                .or_default() += 1;
        }
        let id = record["id"].as_str().unwrap();
        let answer = answers.get(id).unwrap_or_else(|| panic!("{id}: not sent"));
        assert!(recorded.insert(id.to_string()), "two records: {line}");
        let test = record["test"].as_bool().unwrap();
        assert_eq!(record["answer"] == "bid", answer.is_some(), "{line}");
        let mut won = HashMap::new();
        for imp in record["imps"].as_array().unwrap() {
            if let Some(clear) = imp["winner"]["clear"].as_f64() {
                won.insert(imp["id"].as_str().unwrap().to_string(), clear);
                if !test {
                    revenue += clear / 1000.0;
                }
            }
        }
        assert_eq!(
            answer.clone().unwrap_or_default(),
            won,
            "clearing prices of {id}"
        );
    }
    // A loaded machine (a debug build in CI) may shed some of the clients' auctions too: after
    // decoding (event-loop lag) with the client's id, matched above to a 204, or before it
    // (queue wait) with no id; and an invalid request shed before decoding got 204. So the
    // late requests, the shed invalid ones and the clients' auctions with no record of their
    // own are exactly the unnamed and late shed records.
    let invalid = kinds.get("invalid").copied().unwrap_or(0);
    assert_eq!(invalid + invalid_shed, OTHERS, "{kinds:?}");
    let unrecorded = answers.len() - recorded.len();
    assert_eq!(
        late_sheds + unnamed_sheds,
        OTHERS + invalid_shed + unrecorded,
        "one record per request: {late_sheds} late, {unnamed_sheds} unnamed: {kinds:?}"
    );
    assert!(late_sheds <= OTHERS, "{late_sheds} late-N shed records");
    for (id, answer) in &answers {
        assert!(
            recorded.contains(id) || answer.is_none(),
            "{id} has no record of its own and was not answered 204"
        );
    }
    for status in ["answered", "no_bid", "bad_status", "timeout"] {
        assert!(
            statuses.get(status).copied().unwrap_or(0) > 0,
            "no {status} call: {statuses:?}"
        );
    }
    summary_agrees(&path, files, lines.len(), revenue);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `rtb-ledger --json` over the same files counts the same records and revenue.
fn summary_agrees(path: &Path, files: usize, records: usize, revenue: f64) {
    let mut args = vec![path.to_path_buf()];
    args.extend((1..files).map(|n| PathBuf::from(format!("{}.{n}", path.display()))));
    let out = Command::new(env!("CARGO_BIN_EXE_rtb-ledger"))
        .arg("--json")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records"].as_u64(), Some(records as u64));
    assert_eq!(summary["unreadable"].as_u64(), Some(0));
    let summed = summary["revenue"]["USD"].as_f64().unwrap();
    assert!((summed - revenue).abs() < 1e-9, "{summed} vs {revenue}");
    let sleepy = &summary["dsps"]["sleepy"];
    assert!(sleepy["timeouts"].as_u64().unwrap() > 0, "{sleepy}");
    assert!(
        sleepy["latency_us"]["p99"].as_u64().unwrap() > 50_000,
        "hangs wait out the deadline"
    );
}

#[test]
fn sampling_keeps_every_winner_and_counts_what_it_leaves_out() {
    let Some(Run {
        dir,
        path,
        sent,
        metrics,
    }) = run_with_ledger("sample", &["--ledger-sample", "0"])
    else {
        return;
    };
    let won = sent.answers.values().filter(|a| a.is_some()).count();
    let (made, not_kept) = expected_and_not_kept(&metrics);
    let (lines, _) = ledger_lines(&path);
    assert_eq!(lines.len(), won, "only winners kept");
    assert_eq!(lines.len() as u64, made - not_kept);
    assert!(lines.iter().all(|l| l.contains(r#""answer":"bid""#)));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn with_one_buffer_per_worker_every_record_is_written_or_counted() {
    let Some(Run {
        dir, path, metrics, ..
    }) = run_with_ledger("tight", &["--ledger-buffers", "1"])
    else {
        return;
    };
    let (made, not_kept) = expected_and_not_kept(&metrics);
    let (lines, _) = ledger_lines(&path);
    println!(
        "{} records written, {not_kept} dropped of {made}",
        lines.len()
    );
    assert_eq!(lines.len() as u64, made - not_kept, "{metrics}");
    assert_eq!(
        sample(&metrics, "rtb_ledger_records_total{result=\"dropped\"}") as u64,
        not_kept,
        "only drops, no sampling"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
