//! Configuration (in progress)
