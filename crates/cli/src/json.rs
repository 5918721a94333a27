//! `--json`: a reply message in the canonical proto3 JSON mapping, by way of the descriptor set
//! the proto crate embeds (the generated types derive no serde).
//!
//! Field names are the proto names (`queue_position`, as in the proto files), every field is
//! present (defaults included, so scripts need not guess), enums are their names
//! (`TICKET_STATE_QUEUED`), timestamps RFC 3339, durations "12.5s", 64-bit integers strings.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(tierline_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
});

/// A generated message type and its full proto name.
pub trait Proto: Message + Sized {
    /// "tierline.ticket.v1.Ticket".
    const NAME: &'static str;
}

macro_rules! proto_names {
    ($($ty:path => $name:literal),+ $(,)?) => {
        $(impl Proto for $ty { const NAME: &'static str = $name; })+
        /// Every name registered, for the test that checks them against the descriptors.
        #[cfg(test)]
        pub(crate) const ALL_NAMES: &[&str] = &[$($name),+];
    };
}

proto_names! {
    tierline_proto::customer::Customer => "tierline.customer.v1.Customer",
    tierline_proto::customer::Interaction => "tierline.customer.v1.Interaction",
    tierline_proto::customer::LookupCustomersResponse => "tierline.customer.v1.LookupCustomersResponse",
    tierline_proto::ticket::Ticket => "tierline.ticket.v1.Ticket",
    tierline_proto::ticket::TicketEvent => "tierline.ticket.v1.TicketEvent",
    tierline_proto::ticket::CreateTicketResponse => "tierline.ticket.v1.CreateTicketResponse",
    tierline_proto::ticket::Category => "tierline.ticket.v1.Category",
    tierline_proto::routing::Agent => "tierline.routing.v1.Agent",
    tierline_proto::routing::Assignment => "tierline.routing.v1.Assignment",
    tierline_proto::routing::Offer => "tierline.routing.v1.Offer",
    tierline_proto::routing::AgentPresence => "tierline.routing.v1.AgentPresence",
    tierline_proto::routing::OpenSessionResponse => "tierline.routing.v1.OpenSessionResponse",
    tierline_proto::routing::EstimateWaitResponse => "tierline.routing.v1.EstimateWaitResponse",
    tierline_proto::routing::QueueStatsSnapshot => "tierline.routing.v1.QueueStatsSnapshot",
    tierline_proto::routing::TicketExplanation => "tierline.routing.v1.TicketExplanation",
    tierline_proto::routing::AgentExplanation => "tierline.routing.v1.AgentExplanation",
}

/// The message as JSON. Never fails for the registered types; should the descriptors ever
/// disagree, the value says so instead of aborting the command.
pub fn to_json<M: Proto>(message: &M) -> Value {
    match encode(message) {
        Ok(v) => v,
        Err(e) => serde_json::json!({ "json_error": e }),
    }
}

/// A list of messages as a JSON array.
pub fn list<M: Proto>(messages: &[M]) -> Value {
    Value::Array(messages.iter().map(to_json).collect())
}

fn encode<M: Proto>(message: &M) -> Result<Value, String> {
    let pool = POOL.as_ref().map_err(Clone::clone)?;
    let descriptor = pool
        .get_message_by_name(M::NAME)
        .ok_or_else(|| format!("no descriptor for {}", M::NAME))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| e.to_string())?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::ticket::{CreateTicketResponse, Ticket, TicketState};

    #[test]
    fn every_registered_name_has_a_descriptor() {
        let pool = POOL.as_ref().expect("descriptor set decodes");
        for name in ALL_NAMES {
            assert!(pool.get_message_by_name(name).is_some(), "{name}");
        }
    }

    #[test]
    fn replies_use_proto_names_enum_names_and_keep_defaults() {
        let reply = CreateTicketResponse {
            ticket: Some(Ticket {
                number: "T-4821-7730".into(),
                state: TicketState::Queued as i32,
                version: 3,
                ..Default::default()
            }),
            replayed: false,
            estimated_wait: Some(prost_types::Duration {
                seconds: 90,
                nanos: 0,
            }),
            queue_position: 2,
        };
        let v = to_json(&reply);
        assert_eq!(v["ticket"]["number"], "T-4821-7730");
        assert_eq!(v["ticket"]["state"], "TICKET_STATE_QUEUED");
        assert_eq!(v["ticket"]["version"], "3");
        assert_eq!(v["queue_position"], 2);
        assert_eq!(v["estimated_wait"], "90s");
        assert_eq!(v["replayed"], false);
        assert_eq!(v["ticket"]["assigned_agent_id"], "");
    }
}
