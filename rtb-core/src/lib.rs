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
//! - [`encode`]: the exchange's bid response, written into a reused buffer, macros substituted.
//! - [`deadline`]: answer-by instants, per-DSP `tmax` budgets, load shedding.
//! - [`splice`]: per-DSP `tmax` rewrite of the raw body without re-encoding.
//! - [`registry`]: DSP registry data, URL and address policy, versioned snapshots.
//! - [`validate`]: strict validation of the whole request by the OpenRTB 2.6 object model and
//!   of the Native 1.2 request ([`ValidationMode`]).
//!
//! ## One auction, end to end
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rtb_core::{
//!     auction::{Auction, AuctionConfig},
//!     deadline::{DeadlinePolicy, DspBudget},
//!     encode::encode_bid_response,
//!     json::{Decoder, Document},
//!     request::BidRequest,
//!     response::BidResponse,
//!     splice::splice_tmax,
//! };
//!
//! // Per worker, reused for every request: parse buffers, documents, output buffers.
//! let mut decoder = Decoder::new();
//! let mut request_doc = Document::default();
//! let mut response_docs = [Document::default(), Document::default()];
//! let mut auction = Auction::new(AuctionConfig::default());
//! let (mut dsp_body, mut answer) = (Vec::new(), Vec::new());
//!
//! // 1. Decode and validate the client's request (the raw bytes stay untouched for forwarding).
//! let raw = br#"{"id":"auction-1","at":2,"tmax":120,
//!                "imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5}]}"#;
//! # #[allow(clippy::disallowed_methods)]
//! let arrival = Instant::now(); // the IO layer supplies this; rtb-core never reads a clock
//! let request = BidRequest::decode(raw, &mut request_doc, &mut decoder)?;
//!
//! // 2. Plan: when to answer, and the tmax each DSP gets, spliced into its copy of the body.
//! let policy = DeadlinePolicy::default(); // 80 ms cap, 3 ms margin
//! let timing = policy.timing(arrival, request.tmax_ms);
//! let DspBudget::Call { tmax_ms, .. } = policy.dsp_budget(&timing, arrival) else {
//!     unreachable!("a fresh request has time")
//! };
//! splice_tmax(raw, request.tmax_site, tmax_ms, &mut dsp_body).unwrap();
//! assert!(std::str::from_utf8(&dsp_body).unwrap().contains(&format!("\"tmax\":{tmax_ms}")));
//!
//! // 3. Two DSPs answered (in this order); decode their responses.
//! let [doc_a, doc_b] = &mut response_docs;
//! let a = BidResponse::decode(
//!     br#"{"id":"auction-1","seatbid":[{"seat":"braid","bid":[
//!          {"id":"a1","impid":"1","price":2.0,"adm":"<img src='w?p=${AUCTION_PRICE}'>"}]}]}"#,
//!     doc_a, &mut decoder).unwrap();
//! let b = BidResponse::decode(
//!     br#"{"id":"auction-1","seatbid":[{"seat":"witness","bid":[
//!          {"id":"b1","impid":"1","price":1.25}]}]}"#,
//!     doc_b, &mut decoder).unwrap();
//!
//! // 4. Auction: second price, so braid wins and pays 1.25 + 0.01.
//! let outcome = auction.run(&request, &[&a, &b]);
//! assert_eq!(outcome.winners.len(), 1);
//! assert_eq!(outcome.winners[0].clearing_price, 1.26);
//!
//! // 5. Encode the answer into a reused buffer.
//! assert!(encode_bid_response(&request, &[&a, &b], outcome, None, &mut answer));
//! let text = std::str::from_utf8(&answer).unwrap();
//! assert!(text.contains(r#""price":1.26"#) && text.contains("w?p=1.26"));
//!
//! // 6. Give the tapes back so the next request allocates nothing.
//! let (ta, tb) = (a.release(), b.release());
//! doc_a.reuse(ta);
//! doc_b.reuse(tb);
//! let tape = request.release();
//! request_doc.reuse(tape);
//! # Ok::<(), rtb_core::error::RequestError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auction;
mod creative;
pub mod deadline;
pub mod encode;
pub mod error;
pub mod json;
pub mod macros;
pub mod registry;
pub mod request;
pub mod response;
pub mod splice;
pub mod validate;

pub use auction::{Auction, AuctionConfig, AuctionOutcome, RejectReason};
pub use deadline::DeadlinePolicy;
pub use error::{RequestError, ResponseError};
pub use json::{Decoder, Document};
pub use request::BidRequest;
pub use response::BidResponse;
pub use validate::ValidationMode;
