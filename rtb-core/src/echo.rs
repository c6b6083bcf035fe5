//! Owns how hostile text is cut short before it is echoed into an error message or a log line:
//! a peer chooses its names and URLs, not how much of the logs they fill.

/// Longest name or URL echoed back in an error or a log line.
pub const ECHO_BYTES_MAX: usize = 128;

/// Cuts `text` to at most [`ECHO_BYTES_MAX`] bytes, on a char boundary.
pub fn truncate(text: &str) -> &str {
    truncate_to(text, ECHO_BYTES_MAX)
}

/// Cuts `text` to at most `bytes_max` bytes, on a char boundary.
pub fn truncate_to(text: &str, bytes_max: usize) -> &str {
    let mut end = text.len().min(bytes_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundary() {
        let s = "é".repeat(100);
        let t = truncate(&s);
        assert!(t.len() <= ECHO_BYTES_MAX && t.is_char_boundary(t.len()));
        assert_eq!(t.len(), ECHO_BYTES_MAX);
        assert_eq!(truncate("abc"), "abc");
        assert_eq!(truncate_to("aé", 2), "a");
    }
}
