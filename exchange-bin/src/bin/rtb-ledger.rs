//! rtb-ledger: summarises JSON-lines ledger files written by `rtb-exchange --ledger file:PATH`
//! (revenue, win rate, latency percentiles per DSP), as text or JSON. The work is
//! `rtb_core::ledger_summary`'s; this binary only reads the files and prints.

use std::{
    fs::File,
    io::{BufReader, Write},
    path::PathBuf,
};

use clap::Parser;
use rtb_core::ledger_summary::Summary;

/// Summarise auction ledger files (JSON lines; rotated files too: pass them all).
#[derive(Debug, Parser)]
#[command(name = "rtb-ledger", version, about)]
struct Args {
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Ledger files; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("rtb-ledger: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    let mut summary = Summary::default();
    for path in &args.files {
        if path.as_os_str() == "-" {
            summary.read(std::io::stdin().lock())?;
        } else {
            let file = File::open(path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            summary.read(BufReader::new(file))?;
        }
    }
    summary.finish();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        summary.write_text(&mut out)?;
    }
    out.flush()
}
