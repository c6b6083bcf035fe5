//! Owns the simulated worker: the test-only event loop that drives the engine in virtual time.
//!
//! Requests arrive by a (bursty) Poisson process and wait in the kernel's backlog (refused when
//! it is full) until the loop reads them, a batch at a time. Everything else is an event on the
//! timeline: a DSP's reply, an auction's deadline timer, a client going away, the lag probe,
//! the registry replacing the DSP table. The loop runs events due by the time its CPU is free
//! before it reads more requests; each step costs virtual CPU time (zero for a worker with time
//! to spare), so an overloaded loop runs late, its timers fire late, and the event-loop lag it
//! measures (the probe, smoothed as the exchange does) is what it feeds the engine, with the
//! number of auctions in flight.
//!
//! Auctions are async tasks ([`crate::shell`]) polled with a no-op waker: the loop delivers a
//! step to a task's inbox and polls it, so several auctions are in flight at once, each with
//! its own workspace, exactly as in the exchange.

use std::{
    cell::RefCell,
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use rtb_core::engine::Engine;

use crate::breakers::Breakers;
use crate::dsp::Reply;
use crate::rng::Rng;
use crate::shell::{self, Shared};
use crate::stats::Stats;
use crate::table::Registry;
use crate::timeline::{Clock, Timeline};
use crate::world::World;

const MS: Duration = Duration::from_millis(1);
/// Virtual time starts here, so that instants drawn before "now" stay after the base.
const START: Duration = Duration::from_secs(1);
/// The lag probe's period (as in the exchange).
const PROBE_PERIOD: Duration = MS;

/// Events on the timeline; at one instant a reply goes before the deadline timer (the fan-out
/// polls its calls before its timer), then the rest.
#[derive(Debug)]
enum Event {
    Reply { serial: u64, call: usize },
    Deadline { serial: u64 },
    Abandon { serial: u64 },
    Probe { started: Duration },
    Lag,
    Table,
}

impl Event {
    fn class(&self) -> u8 {
        match self {
            Event::Reply { .. } => 0,
            Event::Deadline { .. } => 1,
            Event::Abandon { .. } => 2,
            _ => 3,
        }
    }
}

/// A request waiting in the kernel.
#[derive(Debug)]
struct Queued {
    serial: u64,
    readable: Duration,
    arrival: Duration,
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    inbox: shell::Inbox,
    /// Each call's reply and when it arrives (none: it hangs).
    replies: Vec<Option<(Duration, Reply)>>,
}

impl Task {
    fn poll(&mut self) -> Poll<()> {
        self.future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    }
}

pub struct Worker {
    world: World,
    shared: Rc<Shared>,
    clock: Clock,
    timeline: Timeline<Event>,
    backlog: VecDeque<Queued>,
    next_readable: Duration,
    generated: u64,
    limit: u64,
    tasks: HashMap<u64, Task>,
    cpu_free: Duration,
    lag: Duration,
    in_flight: u32,
    registry: Registry,
    /// Draws of the worker itself (timer lateness, read delays, lag), of the arrival process,
    /// of the requests and of the table changes, each its own stream.
    rng: Rng,
    arrivals: Rng,
    requests: Rng,
    churn: Rng,
}

impl Worker {
    pub fn new(mut world: World, limit: u64) -> Worker {
        let config = world.config;
        let shared = Rc::new(Shared {
            config,
            timers: world.timers,
            deadline_strict: std::env::var_os("RTB_SIM_DEADLINE_STRICT").is_some(),
            engine: RefCell::new(Engine::new(config)),
            breakers: RefCell::new(Breakers::new(config.breaker)),
            workspaces: RefCell::new(Vec::new()),
            plans: RefCell::new(Vec::new()),
            stats: RefCell::new(Stats::default()),
        });
        #[allow(clippy::disallowed_methods)] // the one real instant: the base of virtual time
        let clock = Clock::new(Instant::now());
        let mut worker = Worker {
            shared,
            clock,
            timeline: Timeline::new(),
            backlog: VecDeque::new(),
            next_readable: START,
            generated: 0,
            limit,
            tasks: HashMap::new(),
            cpu_free: START,
            lag: Duration::ZERO,
            in_flight: 0,
            registry: Registry::default(),
            rng: world.rng.fork(),
            arrivals: world.rng.fork(),
            requests: world.rng.fork(),
            churn: world.rng.fork(),
            world,
        };
        worker.begin();
        worker
    }

    fn schedule_at(&mut self, at: Duration, event: Event) {
        let class = event.class();
        self.timeline.push(at, class, event);
    }

    fn names(&self) -> Vec<Rc<str>> {
        self.world.pool.iter().map(|p| p.name.clone()).collect()
    }

    fn begin(&mut self) {
        let names = self.names();
        let first = &names[..self.world.table_size];
        self.registry.initial(&self.shared, first, &mut self.churn);
        self.next_readable = START + self.gap(START);
        if self.world.synthetic_lag {
            self.schedule_at(START, Event::Lag);
        } else {
            self.schedule_at(START + PROBE_PERIOD, Event::Probe { started: START });
        }
        if let Some((lo, hi)) = self.world.churn {
            let first = START + self.churn.between(lo, hi);
            self.schedule_at(first, Event::Table);
        }
    }

    /// Runs until every request was read and every auction finished.
    pub fn run(mut self) -> Stats {
        loop {
            let next_event = self.timeline.next_at();
            let next_read = match self.backlog.front() {
                Some(q) => Some(q.readable),
                None => (self.generated < self.limit).then_some(self.next_readable),
            };
            let next = match (next_event, next_read) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("one is some"),
            };
            let at = self.cpu_free.max(next);
            self.enqueue_arrivals(at);
            let cost = match next_event {
                Some(due) if due <= at => {
                    let (_, event) = self.timeline.pop().expect("peeked");
                    self.handle(event, at)
                }
                _ => self.read_batch(at),
            };
            self.cpu_free = at + cost;
            self.shared
                .stats
                .borrow_mut()
                .fold(&[at.as_nanos() as u64, cost.as_nanos() as u64]);
        }
        self.end()
    }

    fn end(self) -> Stats {
        assert!(
            self.tasks.is_empty() && self.in_flight == 0,
            "auctions left unfinished"
        );
        assert!(self.backlog.is_empty());
        let mut stats = std::mem::take(&mut *self.shared.stats.borrow_mut());
        stats.requests = self.generated;
        stats.virtual_time = self.cpu_free - START;
        stats
    }

    /// Whether periodic events (probe, lag, table changes) are still needed.
    fn live(&self) -> bool {
        self.generated < self.limit || !self.tasks.is_empty() || !self.backlog.is_empty()
    }

    /// The gap to the next request readable after `t`.
    fn gap(&mut self, t: Duration) -> Duration {
        let mean = Duration::from_secs_f64(1.0 / self.world.rate_at(t - START));
        self.arrivals.exponential(mean).max(Duration::from_nanos(1))
    }

    /// Requests that arrived by `at` join the backlog, or are refused when it is full.
    fn enqueue_arrivals(&mut self, at: Duration) {
        while self.generated < self.limit && self.next_readable <= at {
            let readable = self.next_readable;
            self.generated += 1;
            if self.backlog.len() >= self.world.backlog_max {
                self.shared.stats.borrow_mut().refused += 1;
            } else {
                let delay = if self.world.read_delays {
                    self.read_delay()
                } else {
                    Duration::ZERO
                };
                self.backlog.push_back(Queued {
                    serial: self.generated,
                    readable,
                    arrival: readable - delay,
                });
            }
            self.next_readable = readable + self.gap(readable);
        }
    }

    /// How long a request waited before the worker read it (a worker without CPU model).
    fn read_delay(&mut self) -> Duration {
        let cap = self.world.config.deadline.cap;
        match self.rng.weighted(&[90, 8, 2]) {
            0 => self.rng.between(Duration::ZERO, MS),
            1 => self.rng.between(Duration::ZERO, cap),
            _ => self.rng.between(cap, cap * 2),
        }
    }

    /// Reads up to a batch of waiting requests, one after the other; returns the CPU spent.
    fn read_batch(&mut self, at: Duration) -> Duration {
        let mut t = at;
        for _ in 0..self.world.batch {
            match self.backlog.front() {
                Some(q) if q.readable <= at => {
                    let q = self.backlog.pop_front().expect("peeked");
                    t += self.read(q, t);
                }
                _ => break,
            }
        }
        t - at
    }
}

impl Worker {
    /// Runs one event at `at`; returns the CPU it cost.
    fn handle(&mut self, event: Event, at: Duration) -> Duration {
        match event {
            Event::Reply { serial, call } => self.reply(serial, call, at),
            Event::Deadline { serial } => self.deadline(serial, at),
            Event::Abandon { serial } => self.abandon(serial),
            Event::Probe { started } => self.probe(started, at),
            Event::Lag => self.shift_lag(at),
            Event::Table => self.change_table(at),
        }
    }

    /// The lag probe woke: how late it is, smoothed as the exchange does (1/4 on the newest).
    fn probe(&mut self, started: Duration, at: Duration) -> Duration {
        let late = at.saturating_sub(started + PROBE_PERIOD);
        self.lag = (self.lag * 3 + late) / 4;
        if self.live() {
            let tick = self
                .rng
                .between(Duration::ZERO, self.world.config.timer_slack);
            self.schedule_at(at + PROBE_PERIOD + tick, Event::Probe { started: at });
        }
        self.world.costs.probe
    }

    /// A worker without CPU model feeds a drawn lag: mostly small, sometimes right at the
    /// engine's thresholds or beyond them.
    fn shift_lag(&mut self, at: Duration) -> Duration {
        let config = self.world.config;
        let lag_max = config.overload.event_loop_lag_max;
        self.lag = match self.rng.weighted(&[85, 7, 3, 3, 2]) {
            0 => self.rng.between(Duration::ZERO, 2 * MS),
            1 => self.rng.between(Duration::ZERO, lag_max + 5 * MS),
            2 => lag_max,
            3 => lag_max + Duration::from_nanos(1),
            _ => config.lag_compensation_max,
        };
        if self.live() {
            let next = at + self.rng.between(MS, 50 * MS);
            self.schedule_at(next, Event::Lag);
        }
        Duration::ZERO
    }

    /// The registry replaced the table (auctions in flight keep the table they started with).
    fn change_table(&mut self, at: Duration) -> Duration {
        let names = self.names();
        self.registry.churn(&self.shared, &names, &mut self.churn);
        crate::checks::breakers_agree(&self.shared, 0);
        if let (Some((lo, hi)), true) = (self.world.churn, self.live()) {
            // An empty table does not last: requests meanwhile get 404.
            let (lo, hi) = if self.registry.is_empty() {
                (MS, 20 * MS)
            } else {
                (lo, hi)
            };
            let next = at + self.churn.between(lo, hi);
            self.schedule_at(next, Event::Table);
        }
        Duration::ZERO
    }
}

mod flights;
