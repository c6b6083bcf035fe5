//! Owns the world a seed stands for: the scenario (from the seed), the engine's settings, the
//! DSPs and their behaviours, the arrival process, the worker's CPU model and how its timers
//! fire. Every value is drawn from the seed, so one u64 replays the whole run.

use std::{rc::Rc, time::Duration};

use rtb_core::auction::AuctionConfig;
use rtb_core::deadline::DeadlinePolicy;
use rtb_core::engine::{BreakerConfig, EngineConfig, OverloadPolicy, ShedRatePolicy};

use crate::dsp::{Flap, Latency, Profile, KINDS};
use crate::generate::{BidStyle, RequestMix};
use crate::rng::Rng;

const MS: Duration = Duration::from_millis(1);
const US: Duration = Duration::from_micros(1);

/// What a seed exercises most (every scenario has some of everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Mostly healthy DSPs, some faults, a worker with time to spare.
    Calm,
    /// Every way a call can fail, often: resets, garbage, hangs, trickles, bad statuses.
    Faults,
    /// DSPs going down and up, short cool-downs: breakers trip, probe, close, re-open.
    Flapping,
    /// The DSP table replaced every few milliseconds while auctions are in flight.
    Churn,
    /// Many DSPs bidding on requests with every rule: deals, floors, seats, currencies, blocks.
    Auctions,
    /// A worker with a CPU, offered bursts of 2x to 50x its capacity.
    Burst,
    /// Timers firing later than the engine's slack covers (documents what the engine does then).
    LateTimers,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Calm,
        Scenario::Faults,
        Scenario::Flapping,
        Scenario::Churn,
        Scenario::Auctions,
        Scenario::Burst,
        Scenario::LateTimers,
    ];

    pub fn of_seed(seed: u64) -> Scenario {
        Scenario::ALL[(seed % Scenario::ALL.len() as u64) as usize]
    }
}

/// How the shell's deadline timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timers {
    /// Late by at most what the engine's slack covers (timer slack + the lag fed).
    Covered,
    /// Sometimes later than that.
    Beyond,
    /// When the worker's loop gets to it: a timer tick, then behind whatever work was queued.
    Loop,
}

/// Virtual CPU time each step of the worker costs (all zero: a worker with time to spare).
#[derive(Clone, Copy, Debug, Default)]
pub struct Costs {
    /// Reading and decoding a request (every request pays it, shed or not).
    pub decode: Duration,
    /// Planning and sending one DSP call.
    pub call: Duration,
    /// Reading and decoding one DSP result.
    pub result: Duration,
    /// The auction, the encoding and writing the answer.
    pub finish: Duration,
    /// One wake-up of the lag probe.
    pub probe: Duration,
}

/// Bursts of arrivals above the base rate.
#[derive(Clone, Copy, Debug)]
pub struct Burst {
    pub every: Duration,
    pub length: Duration,
    pub multiplier: f64,
}

/// Everything a seed decides.
#[derive(Debug)]
pub struct World {
    pub scenario: Scenario,
    pub config: EngineConfig,
    pub timers: Timers,
    pub costs: Costs,
    /// Requests read in one go before the loop looks at timers and DSP results again.
    pub batch: usize,
    /// Requests the kernel holds for the worker; more are refused.
    pub backlog_max: usize,
    /// Requests per second outside bursts.
    pub rate: f64,
    pub burst: Option<Burst>,
    /// Whether requests wait a drawn time before they are read (a worker without CPU model).
    pub read_delays: bool,
    /// Whether the event-loop lag fed is drawn (else measured by the loop's probe).
    pub synthetic_lag: bool,
    pub requests: RequestMix,
    /// DSPs that may be in the table (by name); the first `table_size` start in it.
    pub pool: Vec<Profile>,
    pub table_size: usize,
    /// Time between table replacements.
    pub churn: Option<(Duration, Duration)>,
    /// Share of auctions whose client goes away mid-auction.
    pub abandon: f64,
    /// Streams: arrivals, requests, the worker's draws, table changes.
    pub rng: Rng,
}

impl World {
    /// The world of `seed`, for a run of `requests` requests.
    pub fn new(seed: u64, requests: u64) -> World {
        let scenario = Scenario::of_seed(seed);
        let mut rng = Rng::new(seed);
        let config = engine_config(&mut rng, scenario);
        let pool_size = match scenario {
            Scenario::Churn => rng.range(6, 10),
            Scenario::Auctions => rng.range(4, 8),
            Scenario::Faults => rng.range(3, 8),
            _ => rng.range(2, 5),
        } as usize;
        let pool = (0..pool_size)
            .map(|i| profile(&mut rng, scenario, i))
            .collect();
        let table_size = if scenario == Scenario::Churn {
            pool_size / 2
        } else {
            pool_size
        };
        let mut world = World {
            scenario,
            config,
            timers: match scenario {
                Scenario::Burst => Timers::Loop,
                Scenario::LateTimers => Timers::Beyond,
                _ => Timers::Covered,
            },
            costs: Costs::default(),
            batch: 1,
            backlog_max: usize::MAX,
            rate: rng.range(500, 3000) as f64,
            burst: None,
            read_delays: scenario != Scenario::Burst,
            synthetic_lag: scenario != Scenario::Burst,
            requests: request_mix(&mut rng, scenario),
            pool,
            table_size,
            churn: churn(&mut rng, scenario),
            abandon: if matches!(scenario, Scenario::Faults | Scenario::Churn) {
                0.01
            } else {
                0.002
            },
            rng: rng.fork(),
        };
        if scenario == Scenario::Burst {
            world.load_the_cpu(requests);
        }
        world
    }

    /// Gives the worker a CPU and offers it bursts far above what it can do: 2x to 50x its
    /// capacity, each burst about a quarter of the run's requests (several times what the
    /// worker can do within one deadline), with quieter time between them.
    fn load_the_cpu(&mut self, requests: u64) {
        let rng = &mut self.rng;
        // An auction costs 100 to 500 us of CPU; reading and shedding a request 5 to 20 us.
        self.costs = Costs {
            decode: rng.between(5 * US, 20 * US),
            call: rng.between(15 * US, 60 * US),
            result: rng.between(15 * US, 60 * US),
            finish: rng.between(20 * US, 80 * US),
            probe: US,
        };
        self.batch = *rng.pick(&[1, 8, 32, 128]);
        self.backlog_max = *rng.pick(&[64, 256, 1024, 4096]);
        if rng.chance(0.5) {
            // The exchange's own settings: how the shipped admission copes.
            self.config = EngineConfig {
                breaker: self.config.breaker,
                ..EngineConfig::default()
            };
        } else {
            self.config.overload.auctions_in_flight_max = *rng.pick(&[16, 64, 512]);
        }
        let per_auction = self.costs.decode
            + self.costs.finish
            + (self.costs.call + self.costs.result) * self.table_size as u32;
        let capacity = 1.0 / per_auction.as_secs_f64();
        self.rate = capacity * rng.range(20, 80) as f64 / 100.0;
        let burst_rate = capacity * *rng.pick(&[2.0, 4.0, 10.0, 20.0, 50.0]);
        let length = Duration::from_secs_f64(requests as f64 / 4.0 / burst_rate);
        self.burst = Some(Burst {
            every: length * rng.range(3, 10) as u32,
            length,
            multiplier: burst_rate / self.rate,
        });
    }

    /// What the seed decided, in a few lines (printed when a run fails).
    pub fn summary(&self) -> String {
        format!(
            "scenario {:?}, timers {:?}, {} DSPs in a pool of {} ({:?}), churn {:?}, {:.0} req/s, burst {:?}, costs {:?}, batch {}, backlog {}\n{:?}",
            self.scenario,
            self.timers,
            self.table_size,
            self.pool.len(),
            self.pool.iter().map(|p| (p.latency, p.flap.is_some())).collect::<Vec<_>>(),
            self.churn,
            self.rate,
            self.burst,
            self.costs,
            self.batch,
            self.backlog_max,
            self.config
        )
    }

    /// The arrival rate (per second) at virtual offset `t`.
    pub fn rate_at(&self, t: Duration) -> f64 {
        match self.burst {
            // The first burst comes after a quiet period.
            Some(b) if (t + b.length).as_nanos() % b.every.as_nanos() < b.length.as_nanos() => {
                self.rate * b.multiplier
            }
            _ => self.rate,
        }
    }
}

fn engine_config(rng: &mut Rng, scenario: Scenario) -> EngineConfig {
    let cooldown = rng.between(5 * MS, 200 * MS);
    let flapping = scenario == Scenario::Flapping;
    EngineConfig {
        deadline: DeadlinePolicy {
            cap: Duration::from_millis(*rng.pick(&[80, 80, 50, 120])),
            response_margin: rng.between(MS, 5 * MS),
            network_allowance: rng.between(Duration::ZERO, 2 * MS),
            dsp_budget_min: rng.between(MS, 10 * MS),
        },
        overload: OverloadPolicy {
            event_loop_lag_max: rng.between(2 * MS, 20 * MS),
            auctions_in_flight_max: *rng.pick(&[8, 32, 512, 512, 512, 512, 512]),
            // Not drawn: a new draw would change every seed's world.
            ..OverloadPolicy::default()
        },
        shed_rate: ShedRatePolicy {
            enabled: *rng.pick(&[true, true, false]),
            target: rng.between(MS, 8 * MS),
            ..ShedRatePolicy::default()
        },
        breaker: BreakerConfig {
            failures_to_trip: *rng.pick(if flapping {
                &[1, 2, 3, 5]
            } else {
                &[0, 1, 3, 5]
            }),
            cooldown,
            cooldown_max: cooldown * rng.range(1, 10) as u32,
            probe_timeout: rng.between(20 * MS, 2000 * MS),
        },
        auction: AuctionConfig {
            second_price_increment: *rng.pick(&[0.01, 0.01, 0.05, 0.0]),
            ..AuctionConfig::default()
        },
        timer_slack: rng.between(500 * US, 3 * MS),
        lag_compensation_max: rng.between(2 * MS, 15 * MS),
        validation: rtb_core::ValidationMode::Strict,
        // The simulated DSPs have no roster policy (no QPS cap to share).
        workers: 1,
    }
}

fn request_mix(rng: &mut Rng, scenario: Scenario) -> RequestMix {
    RequestMix {
        invalid: if scenario == Scenario::Auctions {
            0.0
        } else {
            0.03
        },
        test: 0.05,
        rules: if scenario == Scenario::Auctions {
            0.8
        } else {
            rng.unit() * 0.5
        },
    }
}

fn churn(rng: &mut Rng, scenario: Scenario) -> Option<(Duration, Duration)> {
    match scenario {
        Scenario::Churn => Some((2 * MS, 30 * MS)),
        Scenario::Auctions | Scenario::Burst => None,
        _ if rng.chance(0.5) => Some((300 * MS, 2000 * MS)),
        _ => None,
    }
}

fn profile(rng: &mut Rng, scenario: Scenario, index: usize) -> Profile {
    let latency = match rng.below(3) {
        0 => Latency::Fixed(rng.between(MS, 30 * MS)),
        1 => Latency::Uniform(MS, rng.between(2 * MS, 60 * MS)),
        _ => Latency::HeavyTail {
            scale: rng.between(MS, 10 * MS),
            alpha: 1.0 + rng.unit() * 2.0,
        },
    };
    let weights = kind_weights(rng, scenario);
    let flap = (scenario == Scenario::Flapping && rng.chance(0.8) || rng.chance(0.1)).then(|| {
        let period = rng.between(50 * MS, 800 * MS);
        Flap {
            period,
            down: period.mul_f64(0.2 + rng.unit() * 0.6),
            phase: rng.between(Duration::ZERO, period),
        }
    });
    Profile {
        name: Rc::from(format!("dsp{index}")),
        latency,
        weights,
        style: BidStyle {
            bids_max: rng.range(1, 4),
            sloppiness: rng.unit()
                * if scenario == Scenario::Auctions {
                    0.3
                } else {
                    0.15
                },
            deals: rng.unit(),
            nurl: 0.3 + rng.unit() * 0.7,
        },
        flap,
        rng: rng.fork(),
    }
}

/// Weights of `dsp::KINDS`: bids, 204, empty 200, nbr only, bad status, garbage, connect,
/// protocol, too large, closed, overloaded, hang, trickle, connect paced, tls.
fn kind_weights(rng: &mut Rng, scenario: Scenario) -> [u32; KINDS.len()] {
    let mut weights = match scenario {
        Scenario::Auctions => [90, 3, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0, 0],
        Scenario::Faults => {
            let mut w = [0u32; KINDS.len()];
            for x in w.iter_mut() {
                *x = rng.range(0, 20) as u32;
            }
            w
        }
        _ => [70, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2, 2, 1, 1],
    };
    weights[0] = weights[0].max(1);
    debug_assert_eq!(weights.len(), KINDS.len());
    weights
}
