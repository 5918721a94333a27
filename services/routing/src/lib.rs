//! The routing service: which agent gets which ticket, and when.
//!
//! Reading order: [`domain`] first: the routing algorithm as pure code.
#![forbid(unsafe_code)]

pub mod domain;
