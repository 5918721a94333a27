//! The parts of the load tools that both binaries share: latency statistics, the raw
//! PostgreSQL and Redis limits, CPU use by process, and the scale scenarios of
//! `tierline-scale`. `tierline-bench` (src/main.rs) keeps its own modules for the intake load.
#![forbid(unsafe_code)]

pub mod cpu;
pub mod limits;
pub mod scale;
pub mod stats;
