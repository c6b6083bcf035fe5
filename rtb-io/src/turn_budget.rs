//! Owns a worker's turn budget: how long requests may keep the worker's CPU before its event
//! loop gets to check the timer wheel again.
//!
//! Why: monoio 0.2.4 fires timers only once its run queue is empty (BENCHMARKS.md, "Timers
//! under load"). One reap that wakes 128 requests runs all of them, about 6 ms of CPU, before
//! a DSP deadline that came due meanwhile can fire: timers are late by the work queued ahead
//! of them, not by the core's average load. With a budget, a request that is read when the
//! worker has gone longer than the budget since its turn marker last fired waits in a FIFO
//! queue until the marker fires again, which it can only do once the loop has emptied its run
//! queue and fired every timer due. So the work between two timer checks is about the budget
//! plus one request, whatever the batch.
//!
//! The marker is a task that sleeps to the next millisecond tick of monoio's timer wheel
//! ([`spawn_turn_marker`]): a tick of it means a timer check happened. A budget of at least
//! two ticks ([`TURN_BUDGET_MIN`]) means the marker is always due by the time the budget is
//! spent, so the loop never idles while requests wait. At a new turn only the queue's head is woken; each request
//! admitted wakes the next (a baton), so a deep queue costs one poll per admitted request,
//! not a poll of every waiting one per turn (measured: waking them all collapsed under a
//! backlog). A waiting request keeps its arrival time (its first byte), so the time it waited
//! counts against its deadline, and the engine sheds it when too little is left. The queue
//! reuses its storage: nothing is allocated per request once it has grown.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

/// The marker's sleep: it completes at monoio's next millisecond tick (the wheel rounds a
/// deadline up to the end of its millisecond).
const TO_NEXT_TICK: Duration = Duration::from_nanos(1);

/// The least budget that is not off: two ticks of monoio's timer wheel. The marker's next
/// tick is one or two ticks after the turn starts (the turn's time is read before the marker
/// sleeps, and a tick may pass between), so with one tick the budget could be spent a tick
/// before the marker is due and the loop would idle while requests wait.
pub const TURN_BUDGET_MIN: Duration = Duration::from_millis(2);

/// Default [`TurnBudget`]: off. A 2 ms budget (about 30 three-DSP auctions of CPU) makes
/// timers about 3x more punctual, but in the exchange under sustained overload the wait it
/// adds eats the DSPs' share of each deadline: more DSP timeouts, breakers open, fewer wins
/// and a longer client tail (BENCHMARKS.md, "A turn budget"). It stays off until the queue
/// serves fresh requests first under overload (adaptive LIFO), which is not built.
pub const TURN_BUDGET_DEFAULT: Duration = Duration::ZERO;

/// A worker's budget of request work between two timer checks (single-threaded: one per
/// worker, shared by its connections through an `Rc`).
#[derive(Debug)]
pub struct TurnBudget {
    /// Zero: off (requests never wait).
    budget: Cell<Duration>,
    /// When the marker last fired.
    turn_started: Cell<Instant>,
    /// Requests waiting, oldest first, by ticket.
    queue: RefCell<VecDeque<(u64, Waker)>>,
    /// The ticket woken to run next, if it has not been polled yet.
    baton: Cell<Option<u64>>,
    next_ticket: Cell<u64>,
}

impl TurnBudget {
    /// A budget of `budget` per turn (zero: off; otherwise at least [`TURN_BUDGET_MIN`]), the
    /// first turn starting at `now`.
    pub fn new(budget: Duration, now: Instant) -> Self {
        let budget = if budget.is_zero() {
            budget
        } else {
            budget.max(TURN_BUDGET_MIN)
        };
        Self {
            budget: Cell::new(budget),
            turn_started: Cell::new(now),
            queue: RefCell::new(VecDeque::new()),
            baton: Cell::new(None),
            next_ticket: Cell::new(0),
        }
    }

    /// Whether requests may be made to wait at all.
    pub fn is_enabled(&self) -> bool {
        !self.budget.get().is_zero()
    }

    /// Whether a request read at `now` must wait for the next turn: the worker has run longer
    /// than the budget since its timers were last checked.
    pub fn is_spent(&self, now: Instant) -> bool {
        self.is_enabled()
            && now.saturating_duration_since(self.turn_started.get()) > self.budget.get()
    }

    /// A timer check happened at `now` (the marker fired): a new turn starts, and the oldest
    /// waiting request is woken (unless one woken already has yet to run).
    pub fn start_turn(&self, now: Instant) {
        self.turn_started.set(now);
        // A baton already handed out stays with its holder: it was woken and will run.
        self.pass_baton();
    }

    /// Turns the budget off for good (the marker stopped at shutdown) and releases every
    /// waiting request.
    pub fn disable(&self) {
        self.budget.set(Duration::ZERO);
        self.baton.set(None);
        // Taken out before waking: a waker must never run inside the queue's borrow.
        let waiting = std::mem::take(&mut *self.queue.borrow_mut());
        for (_, waker) in waiting {
            waker.wake();
        }
    }

    /// Requests waiting now.
    pub fn waiting_count(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Wakes the oldest waiting request, unless one woken already has yet to run.
    fn pass_baton(&self) {
        if self.baton.get().is_some() {
            return;
        }
        // Popped before waking: a waker must never run inside the queue's borrow.
        let head = self.queue.borrow_mut().pop_front();
        if let Some((ticket, waker)) = head {
            self.baton.set(Some(ticket));
            waker.wake();
        }
    }

    /// Completes when a request may run: at once while the budget lasts and nobody waits,
    /// otherwise in arrival order, turn after turn.
    pub fn admission(&self) -> Admission<'_> {
        Admission {
            budget: self,
            ticket: None,
            waited: false,
        }
    }
}

/// Waits while the worker's turn budget is spent; true when it waited.
pub async fn wait_for_budget(budget: &TurnBudget) -> bool {
    let mut admission = std::pin::pin!(budget.admission());
    (&mut admission).await;
    admission.waited
}

/// The future of [`TurnBudget::admission`]: a place in the worker's queue once it waits.
#[derive(Debug)]
pub struct Admission<'a> {
    budget: &'a TurnBudget,
    /// Its place in the queue while it waits.
    ticket: Option<u64>,
    waited: bool,
}

impl Future for Admission<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let budget = self.budget;
        if !budget.is_enabled() {
            self.ticket = None;
            return Poll::Ready(());
        }
        let spent = budget.is_spent(Instant::now());
        let Some(ticket) = self.ticket else {
            if !spent && budget.queue.borrow().is_empty() && budget.baton.get().is_none() {
                return Poll::Ready(());
            }
            let ticket = budget.next_ticket.get();
            budget.next_ticket.set(ticket.wrapping_add(1));
            self.ticket = Some(ticket);
            self.waited = true;
            budget
                .queue
                .borrow_mut()
                .push_back((ticket, cx.waker().clone()));
            if !spent {
                budget.pass_baton();
            }
            return Poll::Pending;
        };
        if budget.baton.get() != Some(ticket) {
            // Woken by something else, or released by `disable`: still in line unless off.
            return Poll::Pending;
        }
        budget.baton.set(None);
        if spent {
            budget
                .queue
                .borrow_mut()
                .push_front((ticket, cx.waker().clone()));
            return Poll::Pending;
        }
        self.ticket = None;
        budget.pass_baton();
        Poll::Ready(())
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else { return };
        if self.budget.baton.get() == Some(ticket) {
            // Dropped (its connection closed) after being woken: the next in line runs.
            self.budget.baton.set(None);
            self.budget.pass_baton();
        } else {
            self.budget.queue.borrow_mut().retain(|(t, _)| *t != ticket);
        }
    }
}

/// Starts the worker's turn marker: it sleeps to the timer wheel's next tick and starts a turn
/// each time it wakes, until `shutdown`, when it turns the budget off so that no request stays
/// waiting. Nothing is started when the budget is off.
pub fn spawn_turn_marker(budget: Rc<TurnBudget>, shutdown: crate::ShutdownHandle) {
    if !budget.is_enabled() {
        return;
    }
    monoio::spawn(async move {
        while !shutdown.is_triggered() {
            monoio::time::sleep(TO_NEXT_TICK).await;
            budget.start_turn(Instant::now());
        }
        budget.disable();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker;

    fn poll(admission: Pin<&mut Admission<'_>>) -> Poll<()> {
        let waker = noop_waker();
        admission.poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_request_waits_only_once_the_budget_is_spent() {
        let t0 = Instant::now();
        let budget = TurnBudget::new(Duration::from_millis(2), t0);
        assert!(!budget.is_spent(t0 + Duration::from_millis(2)));
        assert!(budget.is_spent(t0 + Duration::from_micros(2_001)));
        budget.start_turn(t0 + Duration::from_millis(3));
        assert!(!budget.is_spent(t0 + Duration::from_millis(4)));
    }

    #[test]
    fn off_never_waits_and_a_small_budget_is_raised_to_one_tick() {
        let t0 = Instant::now();
        let off = TurnBudget::new(Duration::ZERO, t0);
        assert!(!off.is_spent(t0 + Duration::from_secs(10)));
        assert!(poll(std::pin::pin!(off.admission())).is_ready());
        let small = TurnBudget::new(Duration::from_micros(10), t0);
        assert!(!small.is_spent(t0 + TURN_BUDGET_MIN));
    }

    /// A budget whose turn started long ago: every new request must wait.
    fn spent_budget() -> TurnBudget {
        let long_ago = Instant::now() - Duration::from_secs(1);
        TurnBudget::new(Duration::from_millis(1), long_ago)
    }

    #[test]
    fn waiting_requests_run_in_arrival_order_one_baton_at_a_time() {
        let budget = spent_budget();
        let mut first = std::pin::pin!(budget.admission());
        let mut second = std::pin::pin!(budget.admission());
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        assert_eq!(budget.waiting_count(), 2);
        budget.start_turn(Instant::now());
        // Only the head holds the baton: the second, polled early, stays in line.
        assert!(poll(second.as_mut()).is_pending());
        assert_eq!(budget.waiting_count(), 1);
        assert!(poll(first.as_mut()).is_ready());
        // The admitted head passed the baton on.
        assert_eq!(budget.waiting_count(), 0);
        assert!(poll(second.as_mut()).is_ready());
        // A newcomer while nobody waits and the budget lasts runs at once.
        assert!(poll(std::pin::pin!(budget.admission())).is_ready());
    }

    #[test]
    fn a_head_that_finds_the_budget_spent_keeps_its_place() {
        let t0 = Instant::now() - Duration::from_secs(1);
        let budget = TurnBudget::new(Duration::from_millis(1), t0);
        let mut first = std::pin::pin!(budget.admission());
        let mut second = std::pin::pin!(budget.admission());
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        // A turn that is already spent when the head runs (a long request ran first).
        budget.start_turn(t0);
        assert!(poll(first.as_mut()).is_pending());
        assert_eq!(budget.waiting_count(), 2);
        budget.start_turn(Instant::now());
        assert!(poll(first.as_mut()).is_ready());
        assert!(poll(second.as_mut()).is_ready());
    }

    #[test]
    fn a_dropped_request_leaves_the_line_and_passes_a_baton_it_held() {
        let budget = spent_budget();
        {
            let mut gone = std::pin::pin!(budget.admission());
            assert!(poll(gone.as_mut()).is_pending());
        }
        assert_eq!(budget.waiting_count(), 0);
        let mut woken_then_dropped = Box::pin(budget.admission());
        let mut next = std::pin::pin!(budget.admission());
        assert!(poll(woken_then_dropped.as_mut()).is_pending());
        assert!(poll(next.as_mut()).is_pending());
        budget.start_turn(Instant::now());
        drop(woken_then_dropped);
        assert!(poll(next.as_mut()).is_ready());
    }

    #[test]
    fn disable_releases_every_waiting_request() {
        let budget = spent_budget();
        let mut waiting = std::pin::pin!(budget.admission());
        assert!(poll(waiting.as_mut()).is_pending());
        budget.disable();
        assert_eq!(budget.waiting_count(), 0);
        assert!(poll(waiting.as_mut()).is_ready());
        assert!(!budget.is_spent(Instant::now() + Duration::from_secs(1)));
    }

    /// A turn that starts while the woken head has yet to run must not orphan it: the head
    /// was popped from the queue, so once its baton is dropped nothing wakes it again.
    #[test]
    fn a_second_turn_before_the_woken_head_runs_does_not_lose_it() {
        let budget = spent_budget();
        let mut first = std::pin::pin!(budget.admission());
        let mut second = std::pin::pin!(budget.admission());
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        budget.start_turn(Instant::now()); // baton -> first (woken, not yet polled)
        budget.start_turn(Instant::now());
        for _ in 0..3 {
            budget.start_turn(Instant::now());
        }
        assert!(poll(first.as_mut()).is_ready(), "first was lost");
        assert!(poll(second.as_mut()).is_ready());
    }
}
