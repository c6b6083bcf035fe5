//! Proof that the whole core pipeline (decode, plan, 3 DSP answers, auction, encode) and the
//! strict decode of every request sample (the Native request string parsed too) allocate
//! nothing once warm. A counting global allocator; this file holds a single test so no other
//! test allocates concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use benches::{pipeline_cases, request_samples, EngineDriver};
use rtb_core::json::{Decoder, Document};
use rtb_core::request::BidRequest;
use rtb_core::ValidationMode;

/// Iterations before counting: buffers grow to their working size here.
const WARM_UP_ITERATIONS: usize = 10;
/// Iterations that must allocate nothing.
const COUNTED_ITERATIONS: usize = 1000;

struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; the counter has no effect on
// the memory returned.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size layout), passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator, i.e. by `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr`/`layout` come from this allocator (i.e. `System`) and the caller
        // upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Decodes every request sample in strict mode, one worker's buffers for all, as a worker
/// would: warm-up rounds, then counted rounds that must not allocate.
fn strict_decode_allocates_nothing_once_warm() {
    let samples = request_samples();
    assert!(!samples.is_empty());
    let mut decoder = Decoder::new();
    let mut doc = Document::default();
    let mut round = || {
        let mut imps = 0;
        for sample in &samples {
            let request = BidRequest::decode_with(
                &sample.bytes,
                &mut doc,
                &mut decoder,
                ValidationMode::Strict,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", sample.stem));
            imps += request.imps.len();
        }
        imps
    };
    let mut warm = 0;
    for _ in 0..WARM_UP_ITERATIONS {
        warm = round();
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for _ in 0..COUNTED_ITERATIONS {
        assert_eq!(round(), warm);
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations in {COUNTED_ITERATIONS} strict decodes of {} samples",
        samples.len()
    );
    println!(
        "strict decode: 0 allocations in {COUNTED_ITERATIONS} rounds of {} samples",
        samples.len()
    );
}

#[test]
fn pipeline_and_strict_decode_allocate_nothing_once_warm() {
    // The built-in fallback requests test less than the samples: not enough for CI.
    test_support::ci::require_samples_in_ci(
        "pipeline_and_strict_decode_allocate_nothing_once_warm",
    );
    // The counter must see an allocation, or a zero below would prove nothing.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let probe = std::hint::black_box(vec![0u8; 64]);
    assert!(
        ALLOCATIONS.load(Ordering::SeqCst) > before,
        "counting allocator not installed"
    );
    drop(probe);

    let cases = pipeline_cases();
    assert!(!cases.is_empty());
    let mut pipeline = EngineDriver::new();
    for case in &cases {
        let mut last = None;
        for _ in 0..WARM_UP_ITERATIONS {
            last = Some(pipeline.run(case).unwrap());
        }
        let warm = last.unwrap();
        assert!(
            warm.answer_len > 0 && warm.winners > 0,
            "{}: {warm:?}",
            case.stem
        );
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for _ in 0..COUNTED_ITERATIONS {
            let result = pipeline.run(case).unwrap();
            assert_eq!(result, warm);
        }
        let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(
            allocations, 0,
            "{}: {allocations} allocations in {COUNTED_ITERATIONS} pipeline iterations",
            case.stem
        );
        println!(
            "{}: 0 allocations in {COUNTED_ITERATIONS} iterations ({warm:?})",
            case.stem
        );
    }
    strict_decode_allocates_nothing_once_warm();
}
