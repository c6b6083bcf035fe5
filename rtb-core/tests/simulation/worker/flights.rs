//! Owns the auctions' side of the worker: reading a request into a new auction task, scheduling
//! what its plan calls for (each DSP's reply, the deadline timer firing somewhat late, maybe the
//! client going away), and delivering those steps to the task.

use std::{rc::Rc, time::Duration};

use rtb_core::engine::WorkerLoad;

use super::{Event, Queued, Task, Worker, MS};
use crate::dsp::Reply;
use crate::generate;
use crate::openrtb::RequestModel;
use crate::shell::{self, Incoming, PlanNotice, Step};
use crate::world::Timers;

impl Worker {
    /// Reads one request at `t` and starts its auction; returns the CPU it cost.
    pub(super) fn read(&mut self, q: Queued, t: Duration) -> Duration {
        let costs = self.world.costs;
        let model = Rc::new(generate::request(
            &mut self.requests,
            q.serial,
            &self.world.requests,
        ));
        let incoming = Incoming {
            serial: q.serial,
            body: model.render(),
            model: model.clone(),
            arrival: self.clock.at(q.arrival),
            now: self.clock.at(t),
            load: WorkerLoad {
                event_loop_lag: self.lag,
                auctions_in_flight: self.in_flight,
                // The simulated worker has no turn queue: requests start when they are read.
                queue_wait: Duration::ZERO,
            },
        };
        let inbox = shell::Inbox::default();
        let future = Box::pin(shell::auction(self.shared.clone(), inbox.clone(), incoming));
        let mut task = Task {
            future,
            inbox,
            replies: Vec::new(),
        };
        let done = task.poll().is_ready();
        let Some(plan) = self.shared.plans.borrow_mut().pop() else {
            assert!(done, "an auction waits for DSPs without a plan");
            return costs.decode;
        };
        let calls = costs.call * plan.dsps.len() as u32;
        if done {
            // Every DSP skipped by its breaker: nothing to wait for.
            return costs.decode + calls + costs.finish;
        }
        self.schedule(&mut task, &model, &plan, t + costs.decode + calls);
        self.tasks.insert(q.serial, task);
        self.in_flight += 1;
        let mut stats = self.shared.stats.borrow_mut();
        stats.in_flight_max = stats.in_flight_max.max(self.in_flight);
        costs.decode + calls
    }

    /// Draws each call's reply, the deadline timer's lateness, and maybe an abandon.
    fn schedule(
        &mut self,
        task: &mut Task,
        model: &RequestModel,
        plan: &PlanNotice,
        sent: Duration,
    ) {
        let serial = plan.serial;
        let fire = self.clock.offset(plan.deadline) + self.lateness(plan.covered);
        self.schedule_at(fire, Event::Deadline { serial });
        for (call, &dsp) in plan.dsps.iter().enumerate() {
            let name = &self.registry.specs[usize::from(dsp)].name;
            let profile = self
                .world
                .pool
                .iter_mut()
                .find(|p| &p.name == name)
                .expect("a DSP of the pool");
            let (after, reply) = profile.call(model, sent, fire.saturating_sub(sent));
            task.replies.push(match reply {
                Reply::Hang => None,
                reply => {
                    self.schedule_at(sent + after, Event::Reply { serial, call });
                    Some((sent + after, reply))
                }
            });
        }
        if self.rng.chance(self.world.abandon) {
            let at = sent + self.rng.between(Duration::ZERO, fire.saturating_sub(sent));
            self.schedule_at(at, Event::Abandon { serial });
        }
    }

    /// How late the shell's deadline timer fires, by the world's timer model.
    fn lateness(&mut self, covered: Duration) -> Duration {
        let slack = self.world.config.timer_slack;
        match self.world.timers {
            // A timer tick; the loop adds whatever work is queued before it.
            Timers::Loop => self.rng.between(Duration::ZERO, slack),
            Timers::Beyond if self.rng.chance(0.5) => {
                covered + self.rng.between(Duration::from_nanos(1), 20 * MS)
            }
            Timers::Covered | Timers::Beyond => match self.rng.weighted(&[20, 30, 20, 30]) {
                0 => Duration::ZERO,
                1 => self.rng.between(Duration::ZERO, covered),
                2 => covered,
                _ => self.rng.between(Duration::ZERO, slack.min(covered)),
            },
        }
    }

    /// A DSP's reply came in: the task reads it.
    pub(super) fn reply(&mut self, serial: u64, call: usize, at: Duration) -> Duration {
        let cost = self.world.costs.result;
        let Some(task) = self.tasks.get_mut(&serial) else {
            return Duration::ZERO; // the auction is over: the connection was dropped
        };
        let Some((_, reply)) = task.replies[call].take() else {
            return Duration::ZERO; // swept up by the deadline already
        };
        let step = Step::Reply {
            call,
            reply,
            at: self.clock.at(at),
            done: self.clock.at(at + cost),
        };
        task.inbox.borrow_mut().push_back(step);
        cost + self.poll(serial)
    }

    /// The deadline timer fired at `at`: replies already in are read first (the fan-out polls
    /// its calls before its timer), then every call still out times out and the auction ends.
    pub(super) fn deadline(&mut self, serial: u64, at: Duration) -> Duration {
        let cost = self.world.costs.result;
        let Some(task) = self.tasks.get_mut(&serial) else {
            return Duration::ZERO; // every call came back before
        };
        let mut arrived: Vec<(Duration, usize)> = task
            .replies
            .iter()
            .enumerate()
            .filter_map(|(call, r)| {
                r.as_ref()
                    .filter(|(due, _)| *due <= at)
                    .map(|(due, _)| (*due, call))
            })
            .collect();
        arrived.sort();
        let mut t = at;
        for (_, call) in arrived {
            let (_, reply) = task.replies[call].take().expect("listed");
            let step = Step::Reply {
                call,
                reply,
                at: self.clock.at(t),
                done: self.clock.at(t + cost),
            };
            task.inbox.borrow_mut().push_back(step);
            t += cost;
        }
        task.inbox.borrow_mut().push_back(Step::Deadline {
            at: self.clock.at(t),
            done: self.clock.at(t),
        });
        let finish = self.poll(serial);
        assert!(
            !self.tasks.contains_key(&serial),
            "auction {serial} still running after its deadline"
        );
        t - at + finish
    }

    /// The client went away: the auction's task is dropped mid-flight.
    pub(super) fn abandon(&mut self, serial: u64) -> Duration {
        if self.tasks.remove(&serial).is_some() {
            self.in_flight -= 1;
            self.shared.stats.borrow_mut().abandoned += 1;
        }
        Duration::ZERO
    }

    /// Polls a task; once it is done, forgets it and returns the finish's CPU cost.
    fn poll(&mut self, serial: u64) -> Duration {
        let task = self.tasks.get_mut(&serial).expect("polling a live auction");
        if task.poll().is_pending() {
            return Duration::ZERO;
        }
        self.tasks.remove(&serial);
        self.in_flight -= 1;
        self.world.costs.finish
    }
}
