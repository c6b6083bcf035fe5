//! Owns a worker's turn budget: how long requests may keep the worker's CPU before its event
//! loop gets to check the timer wheel again.
//!
//! Why: monoio 0.2.4 fires timers only once its run queue is empty (BENCHMARKS.md, "Timers
//! under load"). One reap that wakes 128 requests runs all of them, about 6 ms of CPU, before
//! a DSP deadline that came due meanwhile can fire: timers are late by the work queued ahead
//! of them, not by the core's average load. With a budget, a request that is read when the
//! worker has gone longer than the budget since its turn marker last fired waits in a
//! queue until the marker fires again, which it can only do once the loop has emptied its run
//! queue and fired every timer due. So the work between two timer checks is about the budget
//! plus one request, whatever the batch.
//!
//! The marker is a task that sleeps to the next millisecond tick of monoio's timer wheel
//! ([`spawn_turn_marker`]): a tick of it means a timer check happened. A budget of at least
//! two ticks ([`TURN_BUDGET_MIN`]) means the marker is always due by the time the budget is
//! spent, so the loop never idles while requests wait. At a new turn only one waiting request
//! is woken; each request admitted wakes the next (a baton), so a deep queue costs one poll
//! per admitted request, not a poll of every waiting one per turn (measured: waking them all
//! collapsed under a backlog).
//!
//! The queue serves oldest first while it drains, and newest first once it stands
//! ([`QueueOrder`]: adaptive LIFO), so that under overload the requests served still have
//! their deadline, while those that waited past `stale_after` go first, for the handler to
//! shed at once. A request keeps its arrival time (its first byte), and the handler learns
//! how long it waited (`Request::queue_wait`): the exchange's engine sheds it before decoding
//! when that is over `--shed-queue-wait-ms`. The queue reuses its storage: nothing is
//! allocated per request once it has grown.

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
/// timers about 3x more punctual. Served oldest first, its queue's wait ate the DSPs' share
/// of each deadline under overload and cost wins; with [`QueueOrder`] (and the exchange's
/// queue-wait shed) it made auctions late by the exchange's clock 3 to 25 times rarer at
/// twice capacity, at no measurable cost (BENCHMARKS.md, "A turn budget"). Off in the library,
/// where nothing may shed on the queue's wait; the exchange's flags turn it on
/// (`limit_flags::EXCHANGE_TURN_BUDGET_DEFAULT`).
pub const TURN_BUDGET_DEFAULT: Duration = Duration::ZERO;

/// The order the queue serves in (adaptive LIFO, as in Facebook's "Fail at Scale"): oldest
/// first while it drains; once it stands, newest first, since those still have their whole
/// deadline, except that requests waiting past `stale_after` go first so that the server's
/// handler can shed them at once (the exchange sheds a request that waited longer than its
/// `--shed-queue-wait-ms` before decoding it) rather than let them age past their deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOrder {
    /// The oldest request has waited longer than this: the queue stands.
    pub lifo_after: Duration,
    /// A request that has waited longer than this goes first.
    pub stale_after: Duration,
}

/// Default [`QueueOrder::lifo_after`].
pub const LIFO_AFTER_DEFAULT: Duration = Duration::from_millis(5);
/// Default [`QueueOrder::stale_after`]: rtb-core's default queue-wait shed threshold.
pub const STALE_AFTER_DEFAULT: Duration = Duration::from_millis(10);

impl Default for QueueOrder {
    fn default() -> Self {
        Self {
            lifo_after: LIFO_AFTER_DEFAULT,
            stale_after: STALE_AFTER_DEFAULT,
        }
    }
}

/// One waiting request: its ticket, when it started waiting, and its task.
type Waiting = (u64, Instant, Waker);

/// A worker's budget of request work between two timer checks (single-threaded: one per
/// worker, shared by its connections through an `Rc`).
#[derive(Debug)]
pub struct TurnBudget {
    /// Zero: off (requests never wait).
    budget: Cell<Duration>,
    /// When the marker last fired.
    turn_started: Cell<Instant>,
    /// Requests waiting, oldest first.
    queue: RefCell<VecDeque<Waiting>>,
    order: Cell<QueueOrder>,
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
            order: Cell::new(QueueOrder::default()),
            baton: Cell::new(None),
            next_ticket: Cell::new(0),
        }
    }

    /// Sets the order the queue serves in.
    pub fn set_order(&self, order: QueueOrder) {
        self.order.set(order);
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
        for (_, _, waker) in waiting {
            waker.wake();
        }
    }

    /// Requests waiting now.
    pub fn waiting_count(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Wakes the next waiting request in [`QueueOrder`], unless one woken already has yet to
    /// run.
    fn pass_baton(&self) {
        if self.baton.get().is_some() {
            return;
        }
        // Popped before waking: a waker must never run inside the queue's borrow.
        let next = self.pop_next(Instant::now());
        if let Some((ticket, _, waker)) = next {
            self.baton.set(Some(ticket));
            waker.wake();
        }
    }

    fn pop_next(&self, now: Instant) -> Option<Waiting> {
        let order = self.order.get();
        let mut queue = self.queue.borrow_mut();
        let oldest_wait = now.saturating_duration_since(queue.front()?.1);
        if oldest_wait > order.lifo_after && oldest_wait <= order.stale_after {
            queue.pop_back()
        } else {
            queue.pop_front()
        }
    }

    /// Puts back a woken request that found the budget spent, where its wait puts it.
    fn put_back(&self, waiting: Waiting) {
        let mut queue = self.queue.borrow_mut();
        match queue.back() {
            Some(newest) if newest.1 > waiting.1 => queue.push_front(waiting),
            _ => queue.push_back(waiting),
        }
    }

    /// Completes when a request may run: at once while the budget lasts and nobody waits,
    /// otherwise in the queue's [`QueueOrder`], turn after turn.
    pub fn admission(&self) -> Admission<'_> {
        Admission {
            budget: self,
            ticket: None,
            queued_at: None,
        }
    }
}

/// Waits while the worker's turn budget is spent; how long it waited, if it queued.
pub async fn wait_for_budget(budget: &TurnBudget) -> Option<Duration> {
    let mut admission = std::pin::pin!(budget.admission());
    (&mut admission).await;
    admission.queued_at.map(|at| at.elapsed())
}

/// The future of [`TurnBudget::admission`]: a place in the worker's queue once it waits.
#[derive(Debug)]
pub struct Admission<'a> {
    budget: &'a TurnBudget,
    /// Its place in the queue while it waits.
    ticket: Option<u64>,
    /// When it joined the queue, if it did.
    queued_at: Option<Instant>,
}

impl Future for Admission<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let budget = self.budget;
        if !budget.is_enabled() {
            self.ticket = None;
            return Poll::Ready(());
        }
        let now = Instant::now();
        let spent = budget.is_spent(now);
        let Some(ticket) = self.ticket else {
            if !spent && budget.queue.borrow().is_empty() && budget.baton.get().is_none() {
                return Poll::Ready(());
            }
            let ticket = budget.next_ticket.get();
            budget.next_ticket.set(ticket.wrapping_add(1));
            self.ticket = Some(ticket);
            self.queued_at = Some(now);
            budget
                .queue
                .borrow_mut()
                .push_back((ticket, now, cx.waker().clone()));
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
            let queued_at = self.queued_at.unwrap_or(now);
            budget.put_back((ticket, queued_at, cx.waker().clone()));
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
            self.budget
                .queue
                .borrow_mut()
                .retain(|(t, _, _)| *t != ticket);
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

    #[test]
    fn the_queue_serves_oldest_first_newest_once_it_stands_and_stale_ones_before_all() {
        let now = Instant::now();
        let budget = TurnBudget::new(Duration::from_millis(2), now);
        budget.set_order(QueueOrder {
            lifo_after: Duration::from_millis(5),
            stale_after: Duration::from_millis(10),
        });
        let ago = |ms| now - Duration::from_millis(ms);
        let fill = |waits: &[u64]| {
            let mut queue = budget.queue.borrow_mut();
            queue.clear();
            for (ticket, ms) in waits.iter().enumerate() {
                queue.push_back((ticket as u64, ago(*ms), noop_waker()));
            }
        };
        let next = || budget.pop_next(now).map(|(ticket, _, _)| ticket);
        // Draining: the oldest has waited 3 ms, under lifo_after.
        fill(&[3, 2, 1]);
        assert_eq!(next(), Some(0));
        // Standing: the oldest has waited 7 ms; the newest still has its deadline.
        fill(&[7, 4, 1]);
        assert_eq!(next(), Some(2));
        // Stale: past stale_after, served first so that it is shed at once.
        fill(&[12, 7, 1]);
        assert_eq!((next(), next(), next()), (Some(0), Some(2), Some(1)));
        assert_eq!(next(), None);
    }

    #[test]
    fn a_woken_request_put_back_keeps_its_place_by_age() {
        let now = Instant::now();
        let budget = TurnBudget::new(Duration::from_millis(2), now);
        let at = |ms| now - Duration::from_millis(ms);
        budget
            .queue
            .borrow_mut()
            .push_back((1, at(5), noop_waker()));
        budget.put_back((0, at(9), noop_waker()));
        budget.put_back((2, at(1), noop_waker()));
        let tickets: Vec<u64> = budget.queue.borrow().iter().map(|w| w.0).collect();
        assert_eq!(tickets, [0, 1, 2]);
    }
}
