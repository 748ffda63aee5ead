//! Benchmarks (filled by the performance work).
