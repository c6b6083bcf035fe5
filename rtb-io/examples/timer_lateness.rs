//! Measures how late monoio's timers fire on one worker under a synthetic auction-like load
//! (issue 14): why the exchange's deadline timers ran late while its core was only 61-66% busy.
//!
//! One thread, pinned to `--core`, runs the runtime that ships (`rtb_io::driver::build_runtime`,
//! so io_uring with `COOP_TASKRUN`, or epoll). A generator task makes arrivals open loop: bursts
//! of `--burst` tasks at once (like one event-loop turn reading many requests), the bursts
//! spaced by a Poisson process so that `--rate` tasks arrive per second. Each task sleeps until
//! its deadline, `--deadline-ms` after its scheduled arrival (like the fan-out's one timer per
//! auction), records how late it woke, then busy-spins `--work-us` microseconds (an auction's
//! CPU). The core's utilization is about `rate x work`. A probe task sleeps 1 ms at a time, as
//! the exchange's lag monitor does (`rtb-io/src/lag.rs`), and records its own lateness
//! and the EWMA the exchange sheds on.
//!
//! It prints one Markdown table row per run: lateness p50/p99/p99.9/max, the share of the run
//! the thread used the core and waited for it (other processes on it, from the scheduler's
//! schedstat), the largest number of timers due in the same 1 ms tick and that batch's work,
//! and what a model of monoio 0.2.4's loop predicts for the same arrivals (`model_lateness`:
//! timers fire only when the run queue is empty, and a woken batch runs to the end).
//!
//! ```sh
//! cargo build --release -p rtb-io --example timer_lateness
//! target/release/examples/timer_lateness --driver uring --work-us 50 --rate 12000 --burst 8
//! ```
//!
//! With `--work-at arrival`, a task does its work when it arrives and then sleeps to its
//! deadline, as the exchange's auction does (read, decode and fan out, then wait for the
//! DSPs): a burst of arrivals is then work queued ahead of the deadlines already due. With
//! `--turn-budget-us N`, a task waits for the worker's turn budget before its work
//! (`rtb_io::turn_budget`, as the server does before a request's handler), and the row adds
//! how long tasks waited to start.
//!
//! Flags: `--driver auto|uring|epoll` (auto), `--work-us` (50), `--rate` per second (12000),
//! `--burst` (1), `--deadline-ms` (10), `--seconds` (5), `--core` (0), `--work-at
//! deadline|arrival` (deadline), `--turn-budget-us` (0: off), `--header` (print the table's
//! header first).

use std::{
    cell::RefCell,
    rc::Rc,
    time::{Duration, Instant},
};

use rtb_io::{
    driver::{build_runtime, DriverKind, URING_ENTRIES_DEFAULT},
    turn_budget::{spawn_turn_marker, wait_for_budget, TurnBudget},
    ShutdownHandle,
};

/// One run's settings, from the command line.
#[derive(Debug, Clone)]
struct Settings {
    driver: DriverKind,
    work: Duration,
    rate: f64,
    burst: usize,
    deadline: Duration,
    seconds: f64,
    core: usize,
    /// The work runs when the task arrives (then it sleeps to its deadline), not after.
    work_at_arrival: bool,
    /// Zero: off.
    turn_budget: Duration,
    header: bool,
}

impl Settings {
    fn from_args() -> Result<Self, String> {
        let mut s = Settings {
            driver: DriverKind::Auto,
            work: Duration::from_micros(50),
            rate: 12_000.0,
            burst: 1,
            deadline: Duration::from_millis(10),
            seconds: 5.0,
            core: 0,
            work_at_arrival: false,
            turn_budget: Duration::ZERO,
            header: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            if flag == "--header" {
                s.header = true;
                continue;
            }
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("bad {flag} {value:?}: {e}");
            match flag.as_str() {
                "--driver" => s.driver = value.parse().map_err(|e| bad(&e))?,
                "--work-us" => s.work = Duration::from_micros(value.parse().map_err(|e| bad(&e))?),
                "--rate" => s.rate = value.parse().map_err(|e| bad(&e))?,
                "--burst" => s.burst = value.parse().map_err(|e| bad(&e))?,
                "--deadline-ms" => {
                    s.deadline = Duration::from_millis(value.parse().map_err(|e| bad(&e))?)
                }
                "--seconds" => s.seconds = value.parse().map_err(|e| bad(&e))?,
                "--core" => s.core = value.parse().map_err(|e| bad(&e))?,
                "--work-at" => match value.as_str() {
                    "arrival" => s.work_at_arrival = true,
                    "deadline" => s.work_at_arrival = false,
                    _ => return Err(bad(&"arrival or deadline")),
                },
                "--turn-budget-us" => {
                    s.turn_budget = Duration::from_micros(value.parse().map_err(|e| bad(&e))?)
                }
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if s.burst == 0 || s.rate <= 0.0 {
            return Err("--burst and --rate must be positive".into());
        }
        Ok(s)
    }
}

/// What the tasks record, shared on the one thread.
#[derive(Default)]
struct Record {
    /// Each deadline timer's lateness (woken minus deadline), in microseconds.
    timer_late_us: Vec<u32>,
    /// The 1 ms probe's lateness per wake-up, in microseconds.
    probe_late_us: Vec<u32>,
    /// The largest EWMA of the probe's lateness, as the exchange's lag monitor computes it.
    probe_ewma_max: Duration,
    /// Timers due per 1 ms tick since the start (index = deadline's millisecond).
    due_per_tick: Vec<u32>,
    /// With `--work-at arrival`: each task's wait from its arrival to the start of its work.
    start_delay_us: Vec<u32>,
    /// With `--work-at arrival`: tasks that started too late to finish before their deadline.
    shed: u32,
}

/// A small xorshift generator: the example needs exponential gaps, not a crate.
struct Xorshift(u64);

impl Xorshift {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// An exponential gap with the given mean: Poisson arrivals.
    fn exponential(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(-self.unit().ln())
    }
}

fn spin(work: Duration) {
    let end = Instant::now() + work;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// The arrival schedule of a run: each burst's scheduled time, from the start.
fn schedule(s: &Settings) -> impl Iterator<Item = Duration> {
    let mean_gap = Duration::from_secs_f64(s.burst as f64 / s.rate);
    let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
    let length = Duration::from_secs_f64(s.seconds);
    let mut next = Duration::ZERO;
    std::iter::from_fn(move || {
        next += rng.exponential(mean_gap);
        (next < length).then_some(next)
    })
}

/// monoio 0.2.4's loop in virtual time, with nothing but the hypothesis: timers are checked
/// only when the run queue is empty (a park), a deadline is rounded up to the next 1 ms tick,
/// the park sleeps whole milliseconds from the current tick, and every task woken by one park
/// runs to the end before the next park. Returns each timer's lateness in microseconds.
fn model_lateness(s: &Settings) -> Vec<u32> {
    let ms = Duration::from_millis(1);
    let ticks = |d: Duration| d.as_micros().div_ceil(1000) as u32;
    let mut deadlines = schedule(s).map(|a| a + s.deadline).peekable();
    let mut late = Vec::new();
    let mut now = Duration::ZERO;
    while let Some(&first) = deadlines.peek() {
        let due_tick = ticks(first);
        let now_tick = now.as_millis() as u32;
        if due_tick > now_tick {
            // Idle: the park sleeps from the current (floored) tick to the due tick.
            now += ms * (due_tick - now_tick);
        }
        let now_tick = now.as_millis() as u32;
        while let Some(deadline) = deadlines.next_if(|d| ticks(*d) <= now_tick) {
            for _ in 0..s.burst {
                late.push(now.saturating_sub(deadline).as_micros() as u32);
                now += s.work;
            }
        }
    }
    late
}

/// Sleeps until `deadline` (the fan-out's one timer per auction) and records how late it woke.
async fn sleep_and_record_lateness(deadline: Instant, ctx: &TaskCtx) {
    monoio::time::sleep_until(monoio::time::Instant::from_std(deadline)).await;
    let late = Instant::now().saturating_duration_since(deadline);
    ctx.record
        .borrow_mut()
        .timer_late_us
        .push(late.as_micros() as u32);
}

/// One auction-like task: its timer, then its work (behind the turn budget, if any).
async fn deadline_task(deadline: Instant, work: Duration, ctx: Rc<TaskCtx>) {
    sleep_and_record_lateness(deadline, &ctx).await;
    wait_for_budget(&ctx.budget).await;
    spin(work);
}

/// One auction-like task as the exchange runs it: its work when it arrives (behind the turn
/// budget, if any), then its timer. A task that starts too late to finish its work before its
/// deadline is shed, as the engine sheds it: its timer would measure the queue, not the timer.
async fn arrival_task(arrival: Instant, deadline: Instant, work: Duration, ctx: Rc<TaskCtx>) {
    wait_for_budget(&ctx.budget).await;
    let started = Instant::now();
    let delay = started.saturating_duration_since(arrival);
    {
        let mut record = ctx.record.borrow_mut();
        record.start_delay_us.push(delay.as_micros() as u32);
        if started + work >= deadline {
            record.shed += 1;
            return;
        }
    }
    spin(work);
    sleep_and_record_lateness(deadline, &ctx).await;
}

/// What every task shares: the record and the worker's turn budget.
struct TaskCtx {
    record: Rc<RefCell<Record>>,
    budget: Rc<TurnBudget>,
}

/// Spawns bursts open loop: a late generator catches up, as requests that waited
/// in the kernel would, and each task's deadline counts from its scheduled arrival.
async fn generate(s: Settings, start: Instant, ctx: Rc<TaskCtx>) {
    let mut arrivals = schedule(&s).map(|a| start + a).peekable();
    while let Some(&first) = arrivals.peek() {
        monoio::time::sleep_until(monoio::time::Instant::from_std(first)).await;
        let now = Instant::now();
        while let Some(next) = arrivals.next_if(|a| *a <= now) {
            let deadline = next + s.deadline;
            let tick = deadline.duration_since(start).as_millis() as usize;
            {
                let mut r = ctx.record.borrow_mut();
                if r.due_per_tick.len() <= tick {
                    r.due_per_tick.resize(tick + 1, 0);
                }
                r.due_per_tick[tick] += s.burst as u32;
            }
            for _ in 0..s.burst {
                if s.work_at_arrival {
                    monoio::spawn(arrival_task(next, deadline, s.work, ctx.clone()));
                } else {
                    monoio::spawn(deadline_task(deadline, s.work, ctx.clone()));
                }
            }
        }
    }
    // Let the last deadlines pass before the run ends.
    monoio::time::sleep(s.deadline + Duration::from_millis(50)).await;
}

/// The exchange's lag monitor: 1 ms sleeps, lateness smoothed with weight 1/4.
async fn probe(end: Instant, record: Rc<RefCell<Record>>) {
    const PERIOD: Duration = Duration::from_millis(1);
    let mut ewma = Duration::ZERO;
    while Instant::now() < end {
        let started = Instant::now();
        monoio::time::sleep(PERIOD).await;
        let late = started.elapsed().saturating_sub(PERIOD);
        ewma = (ewma * 3 + late) / 4;
        let mut r = record.borrow_mut();
        r.probe_late_us.push(late.as_micros() as u32);
        r.probe_ewma_max = r.probe_ewma_max.max(ewma);
    }
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Time the calling thread spent runnable but waiting for the core (other processes on it),
/// from the scheduler's `/proc/thread-self/schedstat` (second field, nanoseconds).
fn thread_run_delay() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = stat.split_whitespace().nth(1).and_then(|n| n.parse().ok());
    Duration::from_nanos(nanos.unwrap_or(0))
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// The thread's share of the run: CPU it used and time it waited for the core.
struct Share {
    busy: f64,
    waited: f64,
}

fn report(s: &Settings, driver: &str, share: &Share, mut record: Record) {
    record.timer_late_us.sort_unstable();
    record.probe_late_us.sort_unstable();
    let t = &record.timer_late_us;
    let p = &record.probe_late_us;
    let max_batch = record.due_per_tick.iter().copied().max().unwrap_or(0);
    let batch_work_ms = f64::from(max_batch) * s.work.as_secs_f64() * 1000.0;
    // The model knows only work after the timer and no budget.
    let model = if s.work_at_arrival || !s.turn_budget.is_zero() {
        "n/a".to_string()
    } else {
        let mut model = model_lateness(s);
        model.sort_unstable();
        format!(
            "{:.2} / {:.2} / {:.2}",
            percentile_ms(&model, 0.5),
            percentile_ms(&model, 0.99),
            percentile_ms(&model, 1.0)
        )
    };
    record.start_delay_us.sort_unstable();
    let d = &record.start_delay_us;
    let start_delay = if s.work_at_arrival {
        format!(
            "{:.2} / {:.2} ({} shed)",
            percentile_ms(d, 0.99),
            percentile_ms(d, 1.0),
            record.shed
        )
    } else {
        "n/a".to_string()
    };
    let work_at = if s.work_at_arrival {
        "arrival"
    } else {
        "deadline"
    };
    println!(
        "| {driver} | {work_at} | {} | {:.0} | {} | {} | {:.0}% | {:.1}% | {} | {:.2} | {:.2} | {:.2} | {:.2} | \
         {max_batch} ({batch_work_ms:.1} ms) | {model} | {start_delay} | {:.2} / {:.2} | {:.2} |",
        s.turn_budget.as_micros(),
        s.rate,
        s.burst,
        s.work.as_micros(),
        share.busy * 100.0,
        share.waited * 100.0,
        t.len(),
        percentile_ms(t, 0.5),
        percentile_ms(t, 0.99),
        percentile_ms(t, 0.999),
        percentile_ms(t, 1.0),
        percentile_ms(p, 0.99),
        percentile_ms(p, 1.0),
        record.probe_ewma_max.as_secs_f64() * 1000.0,
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let s = Settings::from_args()?;
    let core = core_affinity::CoreId { id: s.core };
    if !core_affinity::set_for_current(core) {
        return Err(format!("cannot pin to core {}", s.core).into());
    }
    let (mut rt, active) = build_runtime(s.driver, URING_ENTRIES_DEFAULT)?;
    let record = Rc::new(RefCell::new(Record {
        timer_late_us: Vec::with_capacity((s.rate * s.seconds * 1.2) as usize + 1024),
        ..Record::default()
    }));
    let (cpu_before, delay_before) = (thread_cpu(), thread_run_delay());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(s.seconds);
    let ctx = Rc::new(TaskCtx {
        record: record.clone(),
        budget: Rc::new(TurnBudget::new(s.turn_budget, start)),
    });
    rt.block_on({
        let s = s.clone();
        async move {
            monoio::spawn(probe(end, ctx.record.clone()));
            let shutdown = ShutdownHandle::new();
            spawn_turn_marker(ctx.budget.clone(), shutdown.clone());
            generate(s, start, ctx).await;
            shutdown.trigger();
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let share = Share {
        busy: (thread_cpu() - cpu_before).as_secs_f64() / wall,
        waited: (thread_run_delay() - delay_before).as_secs_f64() / wall,
    };
    if s.header {
        println!(
            "| driver | work at | turn budget us | rate/s | burst | work us | core busy | waited for core | timers | \
             p50 ms | p99 ms | p99.9 ms | max ms | max due per tick (its work) | model p50 / p99 / max ms | \
             start delay p99 / max ms (shed) | probe p99 / max ms | lag EWMA max ms |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let record = std::mem::take(&mut *record.borrow_mut());
    report(&s, active.as_str(), &share, record);
    Ok(())
}
