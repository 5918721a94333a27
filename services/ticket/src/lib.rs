//! The ticket service: the system of record for every complaint, question and request.
//!
//! Reading order: [`domain`] first: the state machine (`domain/state.rs`), the SLA clock
//! (`domain/sla.rs`), the priority rule and the catalog of categories and root causes.
#![forbid(unsafe_code)]

pub mod config;
pub mod customers;
pub mod domain;
pub mod error;
pub mod service;
pub mod store;
pub mod workers;
