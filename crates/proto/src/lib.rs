//! The gRPC contracts of every Tierline service, generated from `proto/` at build time.
//!
//! Every other crate takes its contracts (and `tonic`/`prost`) from here, so there is one
//! definition of each message in the workspace.
#![forbid(unsafe_code)]

pub mod routing_ticket;

pub use prost;
pub use prost_types;
pub use tonic;

/// Encoded `FileDescriptorSet` of all Tierline protos, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tierline_descriptor.bin"));

// Module nesting mirrors the proto packages: generated code refers to other packages by
// relative `super::` paths.
#[allow(clippy::all, missing_docs)]
pub mod tierline {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("tierline.common.v1");
        }
    }
    pub mod customer {
        pub mod v1 {
            tonic::include_proto!("tierline.customer.v1");
        }
    }
    pub mod ticket {
        pub mod v1 {
            tonic::include_proto!("tierline.ticket.v1");
        }
    }
    pub mod routing {
        pub mod v1 {
            tonic::include_proto!("tierline.routing.v1");
        }
    }
}

pub use tierline::common::v1 as common;
pub use tierline::customer::v1 as customer;
pub use tierline::routing::v1 as routing;
pub use tierline::ticket::v1 as ticket;
