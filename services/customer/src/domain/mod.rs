//! The customer domain: pure types and rules, no I/O.
//!
//! - [`identity`]: phone numbers (E.164), emails, external ids, parsed at the boundary.
//! - [`customer`]: the profile, its fields, and the rules that hold between them.
//! - [`tiering`]: the ABC tiering rule.
//! - [`timeline`]: interactions and satisfaction (C = b / a).

pub mod customer;
pub mod identity;
pub mod tiering;
pub mod timeline;

pub use customer::*;
pub use identity::*;
pub use tiering::*;
pub use timeline::*;
