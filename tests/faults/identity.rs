//! Faults of this group; see `main.rs`.

#[allow(unused_imports)]
use crate::common;
