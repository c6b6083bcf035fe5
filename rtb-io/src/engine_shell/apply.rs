//! Owns how registry snapshots and currency rates reach a worker: tasks that apply each new
//! one between requests, so the engine's DSP table and the worker's DSP slots change together
//! and an auction converts with one whole rates table.

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use rtb_core::{directory::Resolved, engine::Engine};

use super::{
    dsps::{apply_snapshot, DspSet},
    Currency, Shared,
};
use crate::{broadcast::APPLY_PERIOD_DEFAULT, BroadcastReceiver, WorkerCtx};

/// Applies every registry snapshot to this worker: new DSP slots and the engine's table, in
/// the same order, at the same moment (between requests).
pub(super) fn spawn_applier(
    ctx: &WorkerCtx,
    shared: &Arc<Shared>,
    updates: BroadcastReceiver<Resolved>,
    engine: Rc<RefCell<Engine>>,
    dsps: Rc<RefCell<Rc<DspSet>>>,
) {
    let index = ctx.info.index;
    let shared = shared.clone();
    // This worker's TLS client config: its session cache serves this worker's pools only.
    let tls = shared.dsp_tls_roots.worker_connector();
    updates.spawn_applier(
        APPLY_PERIOD_DEFAULT,
        ctx.shutdown.clone(),
        move |snapshot| {
            let Some(metrics) = shared.metrics.get(index) else {
                return;
            };
            let pools = shared.dsp_pools;
            let next = apply_snapshot(&dsps.borrow(), &snapshot, metrics, pools, &tls);
            let specs = next.slots.iter().map(|s| (s.spec(), s.policy.clone()));
            engine.borrow_mut().set_dsps_with_policies(specs);
            tracing::debug!(
                worker = index,
                version = next.version,
                dsps = next.slots.len(),
                "registry applied"
            );
            metrics
                .applied_version
                .store(next.version, Ordering::Release);
            *dsps.borrow_mut() = Rc::new(next);
        },
    );
}

/// How often a worker looks for a new currency rates table (refreshes are minutes apart).
const RATES_APPLY_PERIOD: Duration = Duration::from_millis(100);

/// Installs the startup rates table on this worker's engine, then every new one the control
/// thread publishes, between requests: an auction converts with one whole table.
pub(super) fn spawn_rates_applier(
    ctx: &WorkerCtx,
    currency: &Currency,
    engine: Rc<RefCell<Engine>>,
) {
    engine
        .borrow_mut()
        .set_currency_rates(currency.initial.clone());
    let Some(updates) = currency.updates.receiver(ctx.info.index) else {
        return;
    };
    let index = ctx.info.index;
    updates.spawn_applier(RATES_APPLY_PERIOD, ctx.shutdown.clone(), move |rates| {
        tracing::debug!(
            worker = index,
            currencies = rates.currencies(),
            "currency rates applied"
        );
        engine.borrow_mut().set_currency_rates(Some(rates));
    });
}
