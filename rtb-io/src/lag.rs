//! Owns a worker's event-loop lag probe: how late its timers fire (the exchange's engine takes
//! it into account, since a late loop makes every DSP deadline late too, and sheds on it).

use std::{cell::Cell, rc::Rc, time::Duration, time::Instant};

/// How often the probe wakes. monoio's timer has millisecond resolution, so an idle worker
/// reads ~1 ms of "lag"; the default shed threshold is 10 ms.
const LAG_PROBE_PERIOD: Duration = Duration::from_millis(1);

/// Starts a task that sleeps a millisecond at a time and records how much longer it took,
/// smoothed (EWMA, 1/4 weight on the newest sample). One wake-up per millisecond per worker;
/// no cross-core traffic.
pub fn spawn_lag_monitor(shutdown: crate::ShutdownHandle) -> Rc<Cell<Duration>> {
    let lag = Rc::new(Cell::new(Duration::ZERO));
    let out = lag.clone();
    monoio::spawn(async move {
        while !shutdown.is_triggered() {
            let started = Instant::now();
            monoio::time::sleep(LAG_PROBE_PERIOD).await;
            let late = started.elapsed().saturating_sub(LAG_PROBE_PERIOD);
            lag.set((lag.get() * 3 + late) / 4);
        }
    });
    out
}
