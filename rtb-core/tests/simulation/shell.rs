//! Owns the test-only shell of one auction: an async task, like the exchange's handler, that
//! lends the engine a workspace, starts the auction, hands the plan to the simulated worker,
//! reports every DSP result as the worker delivers it (exactly once per call: an answer, a
//! failure, or a timeout when the deadline timer fires), then finishes and has the result
//! checked. Between steps it keeps a [`Book`] of what it told the engine, for the checks.

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::poll_fn,
    rc::Rc,
    task::Poll,
    time::{Duration, Instant},
};

use rtb_core::engine::breaker::{State, Transition};
use rtb_core::engine::{
    Admit, AuctionRun, CallFailure, CallStatus, Engine, EngineConfig, Plan, Start, WorkerLoad,
    Workspace,
};

use crate::breakers::Breakers;
use crate::checks;
use crate::dsp::Reply;
use crate::openrtb::{RequestModel, ResponseModel};
use crate::reference;
use crate::stats::Stats;
use crate::world::Timers;

/// What one worker's auctions share (the engine is touched only between awaits, as in the
/// exchange).
pub struct Shared {
    pub config: EngineConfig,
    pub timers: Timers,
    /// Whether an overloaded loop's late answers fail the run (`RTB_SIM_DEADLINE_STRICT`).
    pub deadline_strict: bool,
    pub engine: RefCell<Engine>,
    pub breakers: RefCell<Breakers>,
    pub workspaces: RefCell<Vec<Workspace>>,
    /// Plans of auctions started since the worker last looked.
    pub plans: RefCell<Vec<PlanNotice>>,
    pub stats: RefCell<Stats>,
}

/// What the worker must do for an auction that called DSPs.
#[derive(Debug)]
pub struct PlanNotice {
    pub serial: u64,
    /// Each call's DSP index in the table.
    pub dsps: Vec<u16>,
    pub deadline: Instant,
    /// How late the deadline may fire within the engine's plan.
    pub covered: Duration,
}

/// A request the worker has read.
pub struct Incoming {
    pub serial: u64,
    pub model: Rc<RequestModel>,
    pub body: Vec<u8>,
    pub arrival: Instant,
    pub now: Instant,
    pub load: WorkerLoad,
}

/// What the worker tells a running auction; `done` is when the worker is through with the step
/// (the auction finishes then if it was the last one).
#[derive(Debug)]
pub enum Step {
    Reply {
        call: usize,
        reply: Reply,
        at: Instant,
        done: Instant,
    },
    Deadline {
        at: Instant,
        done: Instant,
    },
}

pub type Inbox = Rc<RefCell<VecDeque<Step>>>;

/// What the shell told the engine about one call, and what the engine must report for it.
#[derive(Debug)]
pub struct CallBook {
    pub dsp: u16,
    pub id: u64,
    /// The bid adjustment of its DSP when the auction was planned (by name, from the
    /// simulated roster).
    pub adjustment: f64,
    pub admit: Admit,
    pub status: Option<CallStatus>,
    pub at: Option<Instant>,
    pub answer: Option<ResponseModel>,
    pub transition: Transition,
    pub breaker: Option<State>,
}

/// Everything the checks need about one auction.
#[derive(Debug)]
pub struct Book {
    pub serial: u64,
    pub started: Instant,
    pub answer_by: Instant,
    pub deadline: Instant,
    pub covered: Duration,
    /// The table's DSP ids when the auction started, and how each one was admitted.
    pub table: Vec<u64>,
    pub admits: Vec<Admit>,
    pub calls: Vec<CallBook>,
    /// Calls that answered a decodable bid response, in arrival order.
    pub arrivals: Vec<usize>,
}

impl Book {
    fn pending(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.calls.len()).filter(|&c| self.calls[c].status.is_none())
    }
}

/// A workspace lent by the worker's pool; given back however the auction ends (also when the
/// client goes away and the task is dropped mid-auction).
struct Lent {
    workspace: Option<Workspace>,
    shared: Rc<Shared>,
}

impl Lent {
    fn take(shared: &Rc<Shared>) -> Lent {
        let idle = shared.workspaces.borrow_mut().pop();
        let workspace = idle.unwrap_or_else(|| shared.engine.borrow().workspace());
        Lent {
            workspace: Some(workspace),
            shared: shared.clone(),
        }
    }

    fn workspace(&mut self) -> &mut Workspace {
        self.workspace.as_mut().expect("lent until dropped")
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(ws) = self.workspace.take() {
            self.shared.workspaces.borrow_mut().push(ws);
        }
    }
}

/// The next step the worker delivers.
async fn next(inbox: &Inbox) -> Step {
    poll_fn(|_| match inbox.borrow_mut().pop_front() {
        Some(step) => Poll::Ready(step),
        None => Poll::Pending,
    })
    .await
}

/// When and how an auction was started.
#[derive(Clone, Copy, Debug)]
pub struct Started {
    pub serial: u64,
    pub arrival: Instant,
    pub now: Instant,
    pub load: WorkerLoad,
}

/// One auction, from the request read to the checked result.
pub async fn auction(shared: Rc<Shared>, inbox: Inbox, incoming: Incoming) {
    let mut lent = Lent::take(&shared);
    let Incoming {
        serial,
        model,
        body,
        arrival,
        now,
        load,
    } = incoming;
    let started = Started {
        serial,
        arrival,
        now,
        load,
    };
    let table: Vec<u64> = shared
        .engine
        .borrow()
        .dsps()
        .iter()
        .map(|d| d.id())
        .collect();
    // The simulated requests are site requests: no DSP matches when none wants that channel.
    let no_match = shared
        .engine
        .borrow()
        .dsps()
        .iter()
        .all(|d| d.policy().channels != rtb_core::roster::ChannelSet::ALL);
    let expected = reference::admission(
        &shared.config,
        &model,
        (table.is_empty(), no_match),
        arrival,
        now,
        load,
    );
    let version = model.version_header().map(str::as_bytes);
    let start =
        shared
            .engine
            .borrow_mut()
            .start(lent.workspace(), &body, version, arrival, now, load);
    let (mut run, plan) = match start {
        Start::Call(run, plan) => (run, plan),
        other => return checks::immediate(&shared, &started, &model, &expected, &other),
    };
    checks::plan(&shared, &started, &model, &body, &expected, &plan);
    let mut book = open_book(&shared, &started, &model, table, &plan);
    shared.plans.borrow_mut().push(PlanNotice {
        serial,
        dsps: plan.calls.iter().map(|c| c.dsp).collect(),
        deadline: plan.deadline,
        covered: book.covered,
    });
    let finish_at = gather(&shared, &inbox, &mut run, &mut book).await;
    let finished = run.finish(&mut shared.engine.borrow_mut(), finish_at);
    checks::finished(&shared, &book, &model, &finished, finish_at);
}

/// Admits each DSP of the table in the breaker models, checks the engine called exactly those
/// let through, and opens the auction's book.
fn open_book(
    shared: &Shared,
    started: &Started,
    model: &RequestModel,
    table: Vec<u64>,
    plan: &Plan<'_>,
) -> Book {
    let serial = started.serial;
    let admits: Vec<Admit> = {
        let mut breakers = shared.breakers.borrow_mut();
        table
            .iter()
            .map(|&id| breakers.admit(id, started.now))
            .collect()
    };
    let let_through: Vec<u16> = (0..admits.len())
        .filter(|&i| admits[i] != Admit::Skip)
        .map(|i| i as u16)
        .collect();
    let planned: Vec<u16> = plan.calls.iter().map(|c| c.dsp).collect();
    assert_eq!(
        planned, let_through,
        "auction {serial}: the calls planned are not the DSPs the breakers let through"
    );
    checks::breakers_agree(shared, serial);
    let names: Vec<std::rc::Rc<str>> = (shared.engine.borrow().dsps().iter())
        .map(|d| d.spec.name.clone())
        .collect();
    let calls = plan
        .calls
        .iter()
        .map(|c| CallBook {
            dsp: c.dsp,
            id: table[usize::from(c.dsp)],
            adjustment: crate::table::adjustment_of(&names[usize::from(c.dsp)]),
            admit: admits[usize::from(c.dsp)],
            status: None,
            at: None,
            answer: None,
            transition: Transition::None,
            breaker: None,
        })
        .collect();
    Book {
        serial,
        started: started.now,
        answer_by: reference::answer_by(&shared.config, model, started.arrival),
        deadline: plan.deadline,
        covered: reference::covered(&shared.config, started.load),
        table,
        admits,
        calls,
        arrivals: Vec::new(),
    }
}

/// Reports every call's result as the worker delivers it; returns when to finish.
async fn gather(
    shared: &Shared,
    inbox: &Inbox,
    run: &mut AuctionRun<'_>,
    book: &mut Book,
) -> Instant {
    if book.calls.is_empty() {
        return book.started; // every DSP skipped: the fan-out is over at once
    }
    loop {
        match next(inbox).await {
            Step::Reply {
                call,
                reply,
                at,
                done,
            } => {
                report(shared, run, book, call, reply, at);
                if book.pending().next().is_none() {
                    return done;
                }
            }
            Step::Deadline { at, done } => {
                let pending: Vec<usize> = book.pending().collect();
                for call in pending {
                    report(
                        shared,
                        run,
                        book,
                        call,
                        Reply::Failure(CallFailure::Timeout),
                        at,
                    );
                }
                return done;
            }
        }
    }
}

/// Reports one call's result to the engine, and to the breaker model; checks both agree.
fn report(
    shared: &Shared,
    run: &mut AuctionRun<'_>,
    book: &mut Book,
    call: usize,
    reply: Reply,
    at: Instant,
) {
    let status = reply.expected_status();
    {
        let mut engine = shared.engine.borrow_mut();
        match &reply {
            Reply::Answer { status, body, .. } => {
                run.on_answer(&mut engine, call, *status, body, at)
            }
            Reply::Failure(kind) => run.on_failure(&mut engine, call, *kind, at),
            Reply::Hang => unreachable!("a hang is reported as the deadline's timeout"),
        }
    }
    let entry = &mut book.calls[call];
    assert!(
        entry.status.is_none(),
        "auction {}: call {call} reported twice",
        book.serial
    );
    // A call the worker's connect pacing refused was never sent: it counts toward nothing,
    // unless it was the half-open breaker's probe.
    let admit = match (status, entry.admit) {
        (CallStatus::Failed(CallFailure::ConnectPaced), Admit::Call) => Admit::Skip,
        (_, admit) => admit,
    };
    let recorded = shared
        .breakers
        .borrow_mut()
        .record(entry.id, admit, status.answered_ok(), at);
    (entry.transition, entry.breaker) = match recorded {
        Some((transition, state)) => (transition, Some(state)),
        None => (Transition::None, None),
    };
    entry.status = Some(status);
    entry.at = Some(at);
    if let Reply::Answer {
        model: Some(model), ..
    } = reply
    {
        if status == CallStatus::Answered {
            entry.answer = Some(model);
            book.arrivals.push(call);
        }
    }
    shared.stats.borrow_mut().call(status, entry.transition);
    checks::breakers_agree(shared, book.serial);
}
