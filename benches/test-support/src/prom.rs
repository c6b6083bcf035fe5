//! Owns reading samples out of a Prometheus text exposition page: one series by its exact
//! name and labels, the first series of a family, and the values of one label across a family.

/// The value of the sample line `series value` (exact name and labels), if present.
pub fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// [`value`], 0 when the series is absent (counters that were never incremented).
pub fn sample(page: &str, series: &str) -> f64 {
    value(page, series).unwrap_or(0.0)
}

/// `name{dsp="<dsp>"}`'s value, 0 when absent.
pub fn dsp_sample(page: &str, name: &str, dsp: &str) -> f64 {
    sample(page, &format!("{name}{{dsp=\"{dsp}\"}}"))
}

/// The value of the first sample line starting with `prefix` (a family name, or a name and
/// its first labels), if any.
pub fn first(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// For every line `<prefix><label value>"} <value>` (prefix ending in `label="`): the label
/// value and the sample, in page order.
pub fn by_label(page: &str, prefix: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter_map(|l| {
            let (label, value) = l.strip_prefix(prefix)?.split_once("\"} ")?;
            Some((label.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str =
        "# HELP a_total A.\n# TYPE a_total counter\na_total{dsp=\"x\",kind=\"t\"} 3\n\
                        a_total{dsp=\"x\",kind=\"u\"} 0\nb 1.5\n";

    #[test]
    fn reads_series_families_and_labels() {
        assert_eq!(value(PAGE, "b"), Some(1.5));
        assert_eq!(sample(PAGE, "a_total{dsp=\"x\",kind=\"t\"}"), 3.0);
        assert_eq!(sample(PAGE, "a_total{dsp=\"y\"}"), 0.0);
        assert_eq!(first(PAGE, "a_total"), Some(3.0));
        assert_eq!(first(PAGE, "c"), None);
        assert_eq!(
            by_label(PAGE, "a_total{dsp=\"x\",kind=\""),
            [("t".to_string(), 3.0), ("u".to_string(), 0.0)]
        );
    }
}
