//! rtb-dsp (work in progress).
fn main() {}
