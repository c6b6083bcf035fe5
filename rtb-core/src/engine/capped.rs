//! Owns the request bodies sent to DSPs that cap their own `tmax` below the auction's
//! (a roster entry's `tmax_ms`): one body per distinct cap in an auction, spliced from the
//! client's body into the workspace's reused buffers, shared by every DSP with that cap.

use crate::request::BidRequest;
use crate::splice::splice_tmax;

use super::PlannedCall;

/// Most distinct caps one auction splices a body for; a call past them sends the plan's body
/// (with the auction's `tmax`): the bound keeps an auction's work finite whatever the roster.
pub const CAPPED_BODIES_MAX: usize = 16;

/// One body with a DSP's own `tmax` spliced in.
#[derive(Debug, Default)]
pub(crate) struct CappedBody {
    tmax_ms: u32,
    pub(crate) bytes: Vec<u8>,
}

/// Gives every call whose `tmax_ms` is below `plan_tmax_ms` a body stating it; returns how
/// many of `bodies` now hold one (the first ones). A call whose body cannot be spliced
/// (a `tmax` spelled with escapes) or that is past [`CAPPED_BODIES_MAX`] sends the plan's body,
/// and its `tmax_ms` then says the plan's.
pub(crate) fn splice_capped(
    body: &[u8],
    request: &BidRequest<'_>,
    plan_tmax_ms: u32,
    calls: &mut [PlannedCall],
    bodies: &mut Vec<CappedBody>,
) -> usize {
    let mut used = 0;
    for call in calls.iter_mut().filter(|c| c.tmax_ms < plan_tmax_ms) {
        let index = match bodies[..used]
            .iter()
            .position(|b| b.tmax_ms == call.tmax_ms)
        {
            Some(index) => Some(index),
            None if used < CAPPED_BODIES_MAX => {
                if used == bodies.len() {
                    bodies.push(CappedBody::default());
                }
                let slot = &mut bodies[used];
                let spliced = splice_tmax(body, request.tmax_site, call.tmax_ms, &mut slot.bytes);
                slot.tmax_ms = call.tmax_ms;
                spliced.is_ok().then(|| {
                    used += 1;
                    used - 1
                })
            }
            None => None,
        };
        match index {
            // Below CAPPED_BODIES_MAX (16), so the index fits.
            Some(index) => call.body = u8::try_from(index + 1).unwrap_or(0),
            None => call.tmax_ms = plan_tmax_ms,
        }
    }
    used
}
