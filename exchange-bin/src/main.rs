//! rtb-exchange (work in progress).
fn main() {}
