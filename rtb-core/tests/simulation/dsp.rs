//! Owns the simulated DSPs: each one's seeded behaviour (a latency distribution, a mix of ways to
//! answer or fail, a bidding style, and optionally flapping between up and down) and what it does
//! with one call: answer (bids, no-bid, bad status, garbage), fail (each `CallFailure` the IO
//! layer reports), hang, or trickle in just before or just after the shell's deadline fires.

use std::{rc::Rc, time::Duration};

use rtb_core::engine::{CallFailure, CallStatus};

use crate::generate::{self, BidStyle};
use crate::openrtb::{RequestModel, ResponseModel};
use crate::rng::Rng;

const MS: Duration = Duration::from_millis(1);
const US: Duration = Duration::from_micros(1);

#[derive(Clone, Copy, Debug)]
pub enum Latency {
    Fixed(Duration),
    Uniform(Duration, Duration),
    /// Pareto: mostly near `scale`, sometimes far beyond any deadline.
    HeavyTail {
        scale: Duration,
        alpha: f64,
    },
}

/// The ways a call can go, each with a weight in a DSP's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Bids,
    NoBid204,
    Empty200,
    /// 200 with `{"id":..,"nbr":..}`: a valid answer without bids.
    NbrOnly,
    BadStatus,
    Garbage,
    Fail(CallFailure),
    Hang,
    /// Bids arriving within a millisecond of the shell's deadline, either side.
    Trickle,
}

pub const KINDS: [CallKind; 15] = [
    CallKind::Bids,
    CallKind::NoBid204,
    CallKind::Empty200,
    CallKind::NbrOnly,
    CallKind::BadStatus,
    CallKind::Garbage,
    CallKind::Fail(CallFailure::Connect),
    CallKind::Fail(CallFailure::Protocol),
    CallKind::Fail(CallFailure::TooLarge),
    CallKind::Fail(CallFailure::Closed),
    CallKind::Fail(CallFailure::Overloaded),
    CallKind::Hang,
    CallKind::Trickle,
    CallKind::Fail(CallFailure::ConnectPaced),
    CallKind::Fail(CallFailure::Tls),
];

/// Periods during which every call fails, so breakers trip and recover.
#[derive(Clone, Copy, Debug)]
pub struct Flap {
    pub period: Duration,
    pub down: Duration,
    pub phase: Duration,
}

/// One DSP's behaviour.
#[derive(Debug)]
pub struct Profile {
    pub name: Rc<str>,
    pub latency: Latency,
    /// Weights of [`KINDS`].
    pub weights: [u32; KINDS.len()],
    pub style: BidStyle,
    pub flap: Option<Flap>,
    pub rng: Rng,
}

/// What comes back for a call.
#[derive(Debug)]
pub enum Reply {
    Answer {
        status: u16,
        body: Vec<u8>,
        model: Option<ResponseModel>,
    },
    Failure(CallFailure),
    /// Nothing, ever: the shell times the call out.
    Hang,
}

impl Reply {
    /// How the engine must classify it (for a hang: the shell's timeout).
    pub fn expected_status(&self) -> CallStatus {
        match self {
            Reply::Answer { status: 204, .. } => CallStatus::NoBid,
            Reply::Answer {
                status: 200, body, ..
            } if body.is_empty() => CallStatus::NoBid,
            Reply::Answer {
                status: 200,
                model: Some(_),
                ..
            } => CallStatus::Answered,
            Reply::Answer { status: 200, .. } => CallStatus::Undecodable,
            Reply::Answer { status, .. } => CallStatus::BadStatus(*status),
            Reply::Failure(kind) => CallStatus::Failed(*kind),
            Reply::Hang => CallStatus::Failed(CallFailure::Timeout),
        }
    }
}

impl Profile {
    fn latency(&mut self) -> Duration {
        match self.latency {
            Latency::Fixed(d) => d,
            Latency::Uniform(lo, hi) => self.rng.between(lo, hi),
            Latency::HeavyTail { scale, alpha } => self.rng.pareto(scale, alpha, 10 * 1000 * MS),
        }
    }

    fn down_at(&self, sent: Duration) -> bool {
        self.flap
            .is_some_and(|f| (sent + f.phase).as_nanos() % f.period.as_nanos() < f.down.as_nanos())
    }

    /// The reply to a call sent at `sent` (virtual offset) whose shell deadline fires `fire_in`
    /// later, and how long after the send it arrives.
    pub fn call(
        &mut self,
        request: &RequestModel,
        sent: Duration,
        fire_in: Duration,
    ) -> (Duration, Reply) {
        if self.down_at(sent) {
            return self.down();
        }
        let kind = KINDS[self.rng.weighted(&self.weights)];
        let latency = self.latency();
        let reply = match kind {
            CallKind::Bids | CallKind::Trickle => self.bids(request),
            CallKind::NoBid204 => Reply::Answer {
                status: 204,
                body: Vec::new(),
                model: None,
            },
            CallKind::Empty200 => Reply::Answer {
                status: 200,
                body: Vec::new(),
                model: None,
            },
            CallKind::NbrOnly => {
                let body = format!("{{\"id\":\"{}\",\"nbr\":2}}", request.id).into_bytes();
                let model = ResponseModel {
                    id: request.id.clone(),
                    cur: None,
                    seats: Vec::new(),
                };
                Reply::Answer {
                    status: 200,
                    body,
                    model: Some(model),
                }
            }
            CallKind::BadStatus => {
                let status = *self.rng.pick(&[500, 503, 400, 302, 429]);
                Reply::Answer {
                    status,
                    body: b"oops".to_vec(),
                    model: None,
                }
            }
            CallKind::Garbage => Reply::Answer {
                status: 200,
                body: generate::garbage(&mut self.rng),
                model: None,
            },
            CallKind::Fail(kind) => {
                return (self.failure_latency(kind, latency), Reply::Failure(kind))
            }
            CallKind::Hang => Reply::Hang,
        };
        let after = match kind {
            CallKind::Trickle => {
                let delta = self.rng.between(Duration::ZERO, 500 * US);
                if self.rng.chance(0.5) {
                    fire_in.saturating_sub(delta)
                } else {
                    fire_in + delta
                }
            }
            _ => latency,
        };
        (after, reply)
    }

    fn bids(&mut self, request: &RequestModel) -> Reply {
        let model = generate::response(&mut self.rng, request, &self.name, &self.style);
        Reply::Answer {
            status: 200,
            body: model.render(),
            model: Some(model),
        }
    }

    fn failure_latency(&mut self, kind: CallFailure, latency: Duration) -> Duration {
        match kind {
            CallFailure::Overloaded | CallFailure::ConnectPaced => Duration::ZERO,
            // A refused certificate ends the handshake within a few round trips.
            CallFailure::Connect | CallFailure::Tls => self.rng.between(Duration::ZERO, 3 * MS),
            CallFailure::Closed => self.rng.between(Duration::ZERO, latency),
            _ => latency,
        }
    }

    /// A call while the DSP is down: refused, reset, a 503, or no answer at all.
    fn down(&mut self) -> (Duration, Reply) {
        match self.rng.below(4) {
            0 => (
                self.rng.between(Duration::ZERO, MS),
                Reply::Failure(CallFailure::Connect),
            ),
            1 => (
                self.rng.between(Duration::ZERO, 5 * MS),
                Reply::Failure(CallFailure::Closed),
            ),
            2 => (
                self.rng.between(Duration::ZERO, 5 * MS),
                Reply::Answer {
                    status: 503,
                    body: Vec::new(),
                    model: None,
                },
            ),
            _ => (Duration::ZERO, Reply::Hang),
        }
    }
}
