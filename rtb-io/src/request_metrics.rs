//! Owns a worker's HTTP request counters by route and status (`rtb_requests_total{route,
//! status}`): the routes are the binary's (counted by index), the statuses a fixed list of
//! the ones a server answers, any other counted as `other`. Single writer; summed over workers
//! on scrape, and only the pairs that were seen are rendered.

use std::fmt::Write as _;

use crate::{limits::Counter, metrics_text::header};

/// Statuses with their own counter; the rest count as "other".
pub const STATUSES: [u16; 14] = [
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 429, 500, 503, 507,
];

/// One worker's request counts for `ROUTES` routes.
#[derive(Debug)]
pub struct RequestCounts<const ROUTES: usize> {
    counts: [[Counter; STATUSES.len() + 1]; ROUTES],
}

impl<const ROUTES: usize> Default for RequestCounts<ROUTES> {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| Default::default()),
        }
    }
}

impl<const ROUTES: usize> RequestCounts<ROUTES> {
    /// Counts a request of route index `route` answered `status`. Owner thread only.
    pub fn count(&self, route: usize, status: u16) {
        let s = STATUSES.iter().position(|&k| k == status);
        self.counts[route][s.unwrap_or(STATUSES.len())].incr();
    }
}

/// `rtb_requests_total{route,status}` summed over `workers`; `routes` names the route indexes.
pub fn render<'a, const ROUTES: usize>(
    out: &mut String,
    routes: &[&str; ROUTES],
    workers: impl Iterator<Item = &'a RequestCounts<ROUTES>> + Clone,
) {
    let name = "rtb_requests_total";
    header(out, name, "counter", "HTTP requests by route and status.");
    for (r, route) in routes.iter().enumerate() {
        for s in 0..=STATUSES.len() {
            let n: u64 = workers.clone().map(|w| w.counts[r][s].get()).sum();
            if n > 0 {
                let status = STATUSES.get(s).map_or("other".to_string(), u16::to_string);
                let _ = writeln!(out, "{name}{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_with_other_statuses_together() {
        let (a, b) = (RequestCounts::<2>::default(), RequestCounts::default());
        a.count(0, 200);
        b.count(0, 200);
        a.count(1, 418);
        a.count(1, 599);
        let mut out = String::new();
        render(&mut out, &["x", "y"], [&a, &b].into_iter());
        let expected = "# HELP rtb_requests_total HTTP requests by route and status.\n\
                        # TYPE rtb_requests_total counter\n\
                        rtb_requests_total{route=\"x\",status=\"200\"} 2\n\
                        rtb_requests_total{route=\"y\",status=\"other\"} 2\n";
        assert_eq!(out, expected);
    }
}
