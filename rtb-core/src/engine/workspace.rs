//! Owns the buffers one auction works in: simd-json's scratch, the request and response
//! documents, the auction's vectors, the spliced bodies, the bid adjustments, the answer and
//! the notices. A worker keeps a few (one per auction running at once) and lends one to each
//! auction; once they have grown to their working size, an auction allocates nothing.

use crate::auction::{Auction, AuctionConfig};
use crate::json::{Decoder, Document};
use crate::response::BidResponse;

use super::capped::CappedBody;
use super::notices::Notices;
use super::outcome::DspOutcome;
use super::PlannedCall;

/// Reused buffers of one auction at a time.
pub struct Workspace {
    pub(crate) decoder: Decoder,
    pub(crate) request_doc: Document,
    pub(crate) response_docs: Vec<Document>,
    pub(crate) views: Vec<BidResponse<'static>>,
    pub(crate) view_outcomes: Vec<u16>,
    pub(crate) auction: Auction,
    pub(crate) spliced: Vec<u8>,
    pub(crate) capped: Vec<CappedBody>,
    pub(crate) calls: Vec<PlannedCall>,
    pub(crate) outcomes: Vec<DspOutcome>,
    pub(crate) adjustments: Vec<f64>,
    pub(crate) view_adjustments: Vec<f64>,
    pub(crate) answer: Vec<u8>,
    pub(crate) notices: Notices,
}

/// Bytes reserved up front for a request body and for an answer (they grow when needed).
const BODY_BYTES_EXPECTED: usize = 4096;

impl Workspace {
    /// Buffers for auctions run with these settings.
    pub fn new(auction: AuctionConfig) -> Self {
        Self {
            decoder: Decoder::new(),
            request_doc: Document::with_capacity(BODY_BYTES_EXPECTED),
            response_docs: Vec::new(),
            views: Vec::new(),
            view_outcomes: Vec::new(),
            auction: Auction::new(auction),
            spliced: Vec::with_capacity(BODY_BYTES_EXPECTED),
            capped: Vec::new(),
            calls: Vec::new(),
            outcomes: Vec::new(),
            adjustments: Vec::new(),
            view_adjustments: Vec::new(),
            answer: Vec::with_capacity(BODY_BYTES_EXPECTED),
            notices: Notices::default(),
        }
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new(AuctionConfig::default())
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("response_docs", &self.response_docs.len())
            .field("answer_capacity", &self.answer.capacity())
            .finish_non_exhaustive()
    }
}
