//! The routing service: which agent gets which ticket, and when.
//!
//! Reading order: [`domain`] first: the routing algorithm as pure code; then [`live`]: the live
//! state in Redis (queues as sorted sets, changed only by atomic Lua scripts).
#![forbid(unsafe_code)]

pub mod domain;
pub mod live;
