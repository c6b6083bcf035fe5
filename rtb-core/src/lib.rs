//! # rtb-core
//!
//! The sans-IO heart of the rtb exchange: bytes and time go in, decisions come out. No sockets,
//! no threads, no runtime, no clock (a per-crate `clippy.toml` bans `Instant::now` and
//! `SystemTime::now`), no `unsafe`.
//!
//! - [`request`]: zero-copy OpenRTB 2.x bid request view over simd-json's tape, validated
//!   with errors that name the field (`imp[1].id: missing`).
//! - [`response`]: DSP bid response view; defective bids are marked, not fatal.
//! - [`auction`]: bid validation (floors, deals, currency, `bcat`/`badv`, seats) and the
//!   per-impression first/second price auction, with OpenRTB loss codes.
//! - [`currency`]: the rates table (Prebid Server's file format), inverse and cross rates, and
//!   where a table comes from ([`currency::RatesSource`]).
//! - [`encode`]: the exchange's bid response, written into a reused buffer, macros substituted.
//! - [`engine`]: one auction's lifecycle as a state machine (admission, plan, answers, finish),
//!   with the per-DSP circuit breaker and load shedding.
//! - [`deadline`]: answer-by instants, per-DSP `tmax` budgets.
//! - [`splice`]: per-DSP `tmax` rewrite of the raw body without re-encoding.
//! - [`ledger`]: the auction ledger record (one JSON line per auction, shed or invalid request).
//! - [`ledger_sample`]: which ledger records a worker keeps, and their wall-clock time.
//! - [`ledger_summary`]: `rtb-ledger`'s report over ledger records (revenue, win rate, latency).
//! - [`revenue`]: revenue amounts as the exchange counts them (currency codes, micro-CPM, sums).
//! - [`registry`]: DSP registry data, URL and address policy (a notice URL's too), versioned
//!   snapshots.
//! - [`directory`]: the registry with every address of each DSP's host (onboard, expire,
//!   re-resolve), as the control plane keeps it; the resolver and the clock are parameters.
//! - `engine_flags`, `directory_flags` (feature `flags`): the engine's and the directory's
//!   settings as clap flags, for a binary to flatten into its own.
//! - [`dns`]: a DNS answer as the directory keeps it (every address checked, bounded) and
//!   when to look a host up again (its TTL, clamped).
//! - [`policy`]: per-DSP policy at planning time (filters, each worker's share of a QPS cap).
//! - [`token_bucket`]: the token bucket (a DSP's QPS cap per worker, the onboarding rate).
//! - [`onboard`]: the `POST /dsp` body, parsed and checked, the answer to an onboarding, and
//!   the onboarding token check.
//! - [`policy_fields`]: the policy as operators write it (roster entry, `POST /dsp`), checked.
//! - [`roster`]: the DSP roster file (per-DSP policy), parsed and validated.
//! - [`echo`]: hostile text cut short before it is echoed into errors and logs.
//! - [`validate`]: strict validation of the whole request by the OpenRTB 2.6 object model and
//!   of the Native 1.2 request ([`ValidationMode`]).
//! - [`version`]: the request's OpenRTB version (`x-openrtb-version`: 2.5, or 2.6 by default).
//!
//! ## One auction, end to end
//!
//! The [`engine`] owns an auction's whole life; a shell (the monoio exchange, or the tokio
//! example in `rtb-core/examples/`) only moves bytes and reads the clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rtb_core::engine::{Answer, CallFailure, CallStatus, DspSpec, Engine, EngineConfig, Start, WorkerLoad};
//!
//! // Per worker: one engine (DSP table, breakers, rules) and a few reused workspaces.
//! let mut engine = Engine::new(EngineConfig::default()); // 80 ms cap, second price
//! engine.set_dsps(["braid", "witness", "hangs"].map(|name| DspSpec {
//!     name: name.into(),
//!     endpoint: format!("{name}:5000").into(),
//! }));
//! let mut workspace = engine.workspace();
//!
//! // 1. A request arrives: decode, validate, admit, plan.
//! let raw = br#"{"id":"auction-1","at":2,"tmax":120,
//!                "imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5}]}"#;
//! # #[allow(clippy::disallowed_methods)]
//! let arrival = Instant::now(); // the shell reads the clock; rtb-core never does
//! let Start::Call(mut run, plan) =
//!     engine.start(&mut workspace, raw, None, arrival, arrival, WorkerLoad::default())
//! else {
//!     unreachable!("a valid request, three DSPs, an idle worker")
//! };
//! // Every DSP gets the body with the tmax it has left (80 ms cap, margins taken off).
//! assert_eq!(plan.calls.len(), 3);
//! let body = std::str::from_utf8(plan.body).unwrap();
//! assert!(body.contains(&format!(r#""tmax":{}"#, plan.calls[0].tmax_ms)));
//! assert!(plan.deadline < arrival + Duration::from_millis(80));
//! // No x-openrtb-version header (the `None` above): a 2.6 request, stated to every DSP.
//! assert_eq!(plan.version.as_str(), "2.6");
//!
//! // 2. The shell sends plan.body_of(call) to each DSP (plan.body, unless a DSP caps its own
//! // tmax lower) and reports each result as it comes.
//! let at = arrival + Duration::from_millis(4);
//! run.on_answer(&mut engine, 0, 200, br#"{"id":"auction-1","seatbid":[{"seat":"braid","bid":[
//!     {"id":"a1","impid":"1","price":2.0,"nurl":"http://braid/win?p=${AUCTION_PRICE}",
//!      "adm":"<img src='w?p=${AUCTION_PRICE}'>"}]}]}"#, at);
//! run.on_answer(&mut engine, 1, 200, br#"{"id":"auction-1","seatbid":[{"seat":"witness","bid":[
//!     {"id":"b1","impid":"1","price":1.25}]}]}"#, at);
//! run.on_failure(&mut engine, 2, CallFailure::Timeout, plan.deadline);
//!
//! // 3. Finish: second price, so braid wins and pays 1.25 + 0.01.
//! let finished = run.finish(&mut engine, at);
//! let Answer::Bid(answer) = finished.answer() else { unreachable!() };
//! let answer = std::str::from_utf8(answer).unwrap();
//! assert!(answer.contains(r#""price":1.26"#) && answer.contains("w?p=1.26"));
//! let (_, url) = finished.notices().iter().next().unwrap(); // fired off the hot path
//! assert_eq!(url, b"http://braid/win?p=1.26");
//! let statuses: Vec<_> = finished.outcomes().iter().map(|o| o.status).collect();
//! assert_eq!(statuses, [CallStatus::Answered, CallStatus::Answered,
//!                       CallStatus::Failed(CallFailure::Timeout)]);
//! assert_eq!(finished.outcomes()[0].wins, 1);
//! drop(finished); // every buffer goes back to the workspace: the next auction allocates nothing
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auction;
mod creative;
pub mod currency;
pub mod deadline;
pub mod directory;
#[cfg(feature = "flags")]
pub mod directory_flags;
pub mod dns;
pub mod echo;
pub mod encode;
pub mod engine;
#[cfg(feature = "flags")]
pub mod engine_flags;
pub mod error;
pub mod json;
pub mod ledger;
pub mod ledger_sample;
pub mod ledger_summary;
pub mod macros;
pub mod media;
pub mod onboard;
pub mod policy;
pub mod policy_fields;
pub mod registry;
pub mod request;
pub mod response;
pub mod revenue;
pub mod roster;
pub mod splice;
pub mod token_bucket;
pub mod validate;
pub mod version;

pub use auction::{Auction, AuctionConfig, AuctionOutcome, RejectReason};
pub use currency::CurrencyRates;
pub use deadline::DeadlinePolicy;
pub use engine::{Engine, EngineConfig};
pub use error::{RequestError, ResponseError};
pub use json::{Decoder, Document};
pub use request::BidRequest;
pub use response::BidResponse;
pub use validate::ValidationMode;
