//! Owns what the engine reports about each DSP call of an auction: how the call ended, how long
//! it took, what it bid and won, and what its breaker did. The shell turns these records into
//! metrics (and the auction ledger); the engine never counts anything itself.

use std::time::Duration;

use super::breaker::{Admit, State, Transition};

/// Why a call produced no HTTP answer (the IO layer's failure, as the engine sees it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallFailure {
    /// The deadline passed first.
    Timeout,
    /// The connection could not be opened.
    Connect,
    /// The answer was not valid HTTP.
    Protocol,
    /// The answer was larger than the client's limit.
    TooLarge,
    /// The DSP closed or reset the connection before a full answer.
    Closed,
    /// The worker already had its maximum of calls to this DSP running.
    Overloaded,
    /// No idle connection, and the worker's connect budget for this DSP was spent (a slow or
    /// hanging DSP would otherwise cost a new connection per auction).
    ConnectPaced,
    /// The TLS handshake failed (certificate refused, or the DSP does not speak TLS).
    Tls,
}

impl CallFailure {
    /// Every failure, in a fixed order (for metrics).
    pub const ALL: [CallFailure; 8] = [
        CallFailure::Timeout,
        CallFailure::Connect,
        CallFailure::Protocol,
        CallFailure::TooLarge,
        CallFailure::Closed,
        CallFailure::Overloaded,
        CallFailure::ConnectPaced,
        CallFailure::Tls,
    ];

    /// Whether the call was refused by the caller's own limits before anything was sent, so
    /// that it says nothing about the DSP's health (the breaker ignores it).
    pub fn is_local(self) -> bool {
        matches!(self, CallFailure::ConnectPaced)
    }

    /// A short stable name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CallFailure::Timeout => "timeout",
            CallFailure::Connect => "connect_error",
            CallFailure::Protocol => "protocol_error",
            CallFailure::TooLarge => "too_large",
            CallFailure::Closed => "closed",
            CallFailure::Overloaded => "overloaded",
            CallFailure::ConnectPaced => "connect_paced",
            CallFailure::Tls => "tls",
        }
    }
}

/// How one DSP call of an auction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallStatus {
    /// Planned, but no result has come back (the auction finished first: a bug in the shell,
    /// which must report every call; counted so it shows).
    Pending,
    /// Not called: its circuit breaker is open.
    SkippedBreaker,
    /// Answered 200 with a decodable bid response (it may hold no bid).
    Answered,
    /// Answered 204, or 200 with an empty body: no bid.
    NoBid,
    /// Answered 200 with a body that is not a bid response.
    Undecodable,
    /// Answered with another status.
    BadStatus(u16),
    /// No answer.
    Failed(CallFailure),
}

impl CallStatus {
    /// Whether the DSP answered usably (what its breaker counts as a success). Rejected bids
    /// still count: the breaker guards availability, rejections are counted apart.
    pub fn answered_ok(self) -> bool {
        matches!(self, CallStatus::Answered | CallStatus::NoBid)
    }
}

/// One DSP call of an auction, as it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DspOutcome {
    /// The DSP's index in the engine's table when the auction was planned (the shell's pool
    /// index for that DSP set).
    pub dsp: u16,
    /// The DSP's stable id (see [`super::dsps::Dsp::id`]).
    pub dsp_id: u64,
    /// How the breaker admitted the call.
    pub admit: Admit,
    /// How it ended.
    pub status: CallStatus,
    /// From the fan-out to the result (none when skipped or pending).
    pub latency: Option<Duration>,
    /// Bids read from its answer.
    pub bids: u16,
    /// Bids beyond the response's bid cap, ignored.
    pub bids_dropped: u16,
    /// Impressions it won.
    pub wins: u16,
    /// What its breaker did on this result.
    pub transition: Transition,
    /// Its breaker's state after this result (none when the DSP left the table meanwhile).
    pub breaker: Option<State>,
}

impl DspOutcome {
    pub(crate) fn planned(dsp: u16, dsp_id: u64, admit: Admit) -> Self {
        Self {
            dsp,
            dsp_id,
            admit,
            status: if admit == Admit::Skip {
                CallStatus::SkippedBreaker
            } else {
                CallStatus::Pending
            },
            latency: None,
            bids: 0,
            bids_dropped: 0,
            wins: 0,
            transition: Transition::None,
            breaker: None,
        }
    }

    /// Whether the DSP was called at all.
    pub fn called(&self) -> bool {
        self.admit != Admit::Skip
    }
}
