//! Owns pre-warming many pools at once on one worker without a storm of connects: when fifty
//! DSPs register together, each worker opens at most `lanes` connections at a time across all
//! of them, and every pool gets its first connection before any gets its second.
//!
//! Each lane is one task on the worker; the pools are dealt to the lanes in turn, and a lane
//! goes round its pools opening one connection per pool per round. A pool whose connect is
//! refused leaves the rotation at once; one whose connects stall (timed out, or paced because
//! its calls took the connect slots) leaves after a few tries. Its calls will open
//! connections as they need them.

use std::{rc::Rc, time::Duration};

use super::pool::Upstream;

/// Rounds without progress after which a pool leaves the pre-warm (its calls open what they
/// need).
const STALLS_MAX: u32 = 3;
/// Wait after a stall, times the pool's stalls so far.
const STALL_WAIT: Duration = Duration::from_millis(20);
/// Rounds paced for want of a connect slot (the pool's calls hold them) that count as one
/// stall.
const PACED_WAITS_PER_STALL: u32 = 10;

/// Pre-warm lanes per worker by default: connects in flight at once across every pool a
/// roster change brings.
pub const PREWARM_LANES_DEFAULT: usize = 8;

/// Opens, on this worker's runtime, `wanted` idle connections in each pool of `pools`, with at
/// most `lanes` connects in flight at once across all of them (at least one). Returns at once;
/// the lanes run as tasks.
pub fn spawn_prewarm(pools: Vec<(Rc<Upstream>, usize)>, lanes: usize) {
    let lanes = lanes.max(1).min(pools.len());
    let mut dealt: Vec<Vec<(Rc<Upstream>, usize)>> = (0..lanes).map(|_| Vec::new()).collect();
    for (i, pool) in pools.into_iter().enumerate() {
        dealt[i % lanes].push(pool);
    }
    for lane in dealt {
        monoio::spawn(warm_lane(lane));
    }
}

/// One lane: round after round, one more connection in each pool that still wants one. A pool
/// whose connect was refused (or its TLS handshake) leaves at once. A round that adds nothing
/// otherwise is a stall: a timed-out connect, or every [`PACED_WAITS_PER_STALL`] rounds that
/// found the pool's connect slots taken by its calls. The lane waits [`STALL_WAIT`] times the
/// stalls so far before going on, and a pool leaves after [`STALLS_MAX`] stalls.
async fn warm_lane(pools: Vec<(Rc<Upstream>, usize)>) {
    let mut pools: Vec<(Rc<Upstream>, usize, u32, u32)> =
        pools.into_iter().map(|(p, n)| (p, n, 0, 0)).collect();
    let mut round = 1;
    while !pools.is_empty() {
        let mut i = 0;
        while i < pools.len() {
            let (pool, wanted, stalls, paced) = &mut pools[i];
            let goal = round.min(*wanted);
            let idle_before = pool.idle_count();
            let failures_before = pool.stats.connect_failures.get();
            let paced_before = pool.stats.connects_paced.get();
            let idle_after = pool.prewarm(goal).await;
            // Refused, unreachable or a TLS handshake refused: trying again soon would only
            // pay for another failure (a handshake is the worker's CPU).
            let refused = pool.stats.connect_failures.get() > failures_before;
            if idle_after < goal && idle_after <= idle_before && !refused {
                // Paced: the pool's calls hold its connect slots now; they free them soon, so
                // only a bounded number of such waits count as a stall.
                if pool.stats.connects_paced.get() > paced_before {
                    *paced += 1;
                    *stalls += u32::from(*paced % PACED_WAITS_PER_STALL == 0);
                } else {
                    *stalls += 1;
                }
                monoio::time::sleep(STALL_WAIT * (*stalls).max(1)).await;
            }
            if refused || *stalls >= STALLS_MAX || round >= *wanted {
                pools.swap_remove(i);
            } else {
                i += 1;
            }
        }
        round += 1;
    }
}
