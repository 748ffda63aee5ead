//! mail (in progress)
