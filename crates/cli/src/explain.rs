//! `tierline explain ...`: why a ticket waits, why an agent gets no offers, in words.

use serde_json::json;
use tierline_proto::routing::{
    AgentExplanation, AgentVerdict, ExplainAgentRequest, ExplainTicketRequest, IneligibilityReason,
    RoutingStep, RoutingStepKind, TicketExplanation, TicketRoutingState,
};
use tierline_proto::ticket::Ticket;
use time::OffsetDateTime;
use tonic::Code;

use crate::agent::{loads_text, presence_text};
use crate::args::ExplainCommand;
use crate::ctx::Ctx;
use crate::enum_of;
use crate::error::{CliError, Service};
use crate::fmt;
use crate::json::to_json;
use crate::ticket::fetch;

/// Runs an `explain` subcommand.
pub async fn run(ctx: &Ctx, command: ExplainCommand) -> Result<(), CliError> {
    match command {
        ExplainCommand::Ticket { ticket } => explain_ticket(ctx, &ticket).await,
        ExplainCommand::Agent { agent } => {
            let mut client = ctx.routing().await?;
            let e = ctx
                .call(
                    Service::Routing,
                    client.explain_agent(ExplainAgentRequest { agent_id: agent }),
                )
                .await?;
            let now = OffsetDateTime::now_utc();
            ctx.print(|| format_agent_explanation(&e, now), || to_json(&e));
            Ok(())
        }
    }
}

async fn explain_ticket(ctx: &Ctx, reference: &str) -> Result<(), CliError> {
    // The router is asked by id; a number is looked up first (and the ticket is needed anyway
    // to explain a ticket the router no longer tracks).
    let ticket = fetch(ctx, reference).await?;
    let mut client = ctx.routing().await?;
    let explained = ctx
        .call(
            Service::Routing,
            client.explain_ticket(ExplainTicketRequest {
                ticket_id: ticket.id.clone(),
            }),
        )
        .await;
    let now = OffsetDateTime::now_utc();
    match explained {
        Ok(e) => {
            ctx.print(|| format_ticket_explanation(&e, now), || to_json(&e));
            Ok(())
        }
        // NOT_FOUND from the router means it does not track the ticket (not handed over yet,
        // or done): the ticket itself says which.
        Err(e) if e.code() == Some(Code::NotFound) => {
            ctx.print(
                || format_untracked(&ticket),
                || json!({ "routed": false, "ticket": to_json(&ticket) }),
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A ticket the router does not know.
pub fn format_untracked(t: &Ticket) -> String {
    let state = fmt::ticket_state(t.state);
    let why = match state.as_str() {
        "NEW" => "it has not been handed to the router yet (the ticket service retries)",
        "RESOLVED" | "CLOSED" | "MERGED" | "CANCELLED" => "it is finished as far as routing goes",
        _ => "the router does not track it now",
    };
    let agent = if t.assigned_agent_id.is_empty() {
        String::new()
    } else {
        format!(" (agent {})", t.assigned_agent_id)
    };
    format!("{} is {state}{agent}: {why}", t.number)
}

/// "not in step, away" from reasons.
pub fn reasons_text(reasons: &[i32], missing_skills: &[String]) -> String {
    reasons
        .iter()
        .map(|r| {
            let text = reason_text(*r);
            if *r == IneligibilityReason::MissingSkill as i32 && !missing_skills.is_empty() {
                format!("{text} ({})", missing_skills.join(", "))
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One reason in words.
pub fn reason_text(r: i32) -> String {
    let text = match IneligibilityReason::try_from(r) {
        Ok(IneligibilityReason::Offline) => "offline",
        Ok(IneligibilityReason::Disconnected) => "desktop disconnected (within the resume grace)",
        Ok(IneligibilityReason::Away) => "away",
        Ok(IneligibilityReason::Disabled) => "disabled",
        Ok(IneligibilityReason::AtCapacity) => "no free capacity on the channel",
        Ok(IneligibilityReason::VoiceTakesAll) => "voice takes all (a call, or busy for a call)",
        Ok(IneligibilityReason::NoChannelCapacity) => "no capacity at all for the channel",
        Ok(IneligibilityReason::Reserved) => "already has a pending offer",
        Ok(IneligibilityReason::NotInDepartment) => "does not serve the department",
        Ok(IneligibilityReason::MissingSkill) => "lacks a required skill",
        Ok(IneligibilityReason::NotInStep) => "not in the ticket's current routing step yet",
        Ok(IneligibilityReason::DeclinedBefore) => "declined or let expire an offer of it",
        Ok(IneligibilityReason::NotSelected) => "eligible, but another agent comes first",
        Ok(IneligibilityReason::HigherRankedTicket) => {
            "eligible, but gets a higher-ranked ticket first"
        }
        Ok(IneligibilityReason::NoWaitingTickets) => "no ticket waiting in its queues",
        Ok(IneligibilityReason::NoDepartments) => "serves no department",
        _ => return enum_of!(IneligibilityReason, r, "INELIGIBILITY_REASON_"),
    };
    text.to_owned()
}

fn step_text(s: &RoutingStep) -> String {
    let kind = enum_of!(RoutingStepKind, s.kind, "ROUTING_STEP_KIND_").replace('_', " ");
    format!(
        "{kind} {} from +{}",
        s.target,
        fmt::opt_duration(s.start_after.as_ref())
    )
}

/// Where a ticket stands and why each agent is or is not offered it.
pub fn format_ticket_explanation(e: &TicketExplanation, now: OffsetDateTime) -> String {
    let mut out = Vec::new();
    let t = e.ticket.clone().unwrap_or_default();
    let state = enum_of!(TicketRoutingState, t.state, "TICKET_ROUTING_STATE_");
    out.push(format!(
        "{} {} in {} · tier {} · {} · escalation {}",
        t.ticket_number,
        state,
        t.department,
        fmt::tier(t.tier),
        fmt::channel(t.channel),
        t.escalation_level
    ));
    if t.state == TicketRoutingState::Waiting as i32 {
        out.push(format!(
            "rank {} of {} waiting · pickup due {} · queued {}",
            e.rank,
            e.queue_length,
            fmt::time_and_relative(t.pickup_due_time.as_ref(), now),
            fmt::relative(t.enqueue_time.as_ref(), now)
        ));
    } else if !t.assigned_agent_id.is_empty() {
        out.push(format!("assigned to {}", t.assigned_agent_id));
    }
    if !e.steps.is_empty() {
        out.push("steps:".into());
        for (i, s) in e.steps.iter().enumerate() {
            let marker = if i64::try_from(i).ok() == Some(i64::from(e.current_step_index)) {
                "  ← current"
            } else {
                ""
            };
            out.push(format!("  {}. {}{marker}", i + 1, step_text(s)));
        }
        if e.next_step_time.is_some() {
            out.push(format!(
                "  next step {}",
                fmt::time_and_relative(e.next_step_time.as_ref(), now)
            ));
        }
    }
    if !t.required_skills.is_empty() {
        out.push(format!("requires {}", t.required_skills.join(", ")));
    }
    if let Some(o) = &e.pending_offer {
        out.push(format!(
            "offered to {} (reservation {}), expires {}",
            o.agent_id,
            o.reservation_id,
            fmt::relative(o.expire_time.as_ref(), now)
        ));
    }
    out.push(format!(
        "{} agent{} could be offered it now",
        e.eligible_agent_count,
        if e.eligible_agent_count == 1 { "" } else { "s" }
    ));
    if e.agents.is_empty() {
        out.push("no agent could ever reach it (nobody serves the department?)".into());
    } else {
        out.push(verdict_table(&e.agents));
    }
    out.join("\n")
}

fn verdict_table(agents: &[AgentVerdict]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|v| {
            let verdict = if v.eligible {
                format!("eligible #{}", v.selection_order)
            } else {
                "not eligible".to_owned()
            };
            vec![
                v.agent_id.clone(),
                v.display_name.clone(),
                verdict,
                reasons_text(&v.reasons, &v.missing_skills),
            ]
        })
        .collect();
    fmt::table(&["AGENT", "NAME", "VERDICT", "WHY"], &rows)
}

/// An agent's routing situation.
pub fn format_agent_explanation(e: &AgentExplanation, now: OffsetDateTime) -> String {
    let mut out = Vec::new();
    let a = e.agent.clone().unwrap_or_default();
    out.push(format!("{} {}", a.id, a.display_name));
    if let Some(s) = &a.status {
        let presence = s
            .presence
            .as_ref()
            .map_or_else(|| "-".to_owned(), presence_text);
        out.push(format!(
            "{presence} · {} · {} · {} parked",
            if s.connected {
                "desktop connected"
            } else {
                "no desktop connected"
            },
            loads_text(s),
            s.parked_ticket_count
        ));
        if s.idle_since_time.is_some() {
            out.push(format!(
                "idle since {}",
                fmt::relative(s.idle_since_time.as_ref(), now)
            ));
        }
        if !s.pending_reservation_id.is_empty() {
            out.push(format!("pending offer {}", s.pending_reservation_id));
        }
    }
    if e.receiving_offers {
        out.push("receiving offers: yes".into());
    } else {
        out.push(format!(
            "receiving offers: no — {}",
            reasons_text(&e.reasons, &[])
        ));
    }
    if !e.queues.is_empty() {
        let rows: Vec<Vec<String>> = e
            .queues
            .iter()
            .map(|q| {
                vec![
                    q.department.clone(),
                    q.waiting_count.to_string(),
                    q.eligible_waiting_count.to_string(),
                    fmt::or_dash(&q.next_ticket_id).to_owned(),
                    if q.head_ticket_reasons.is_empty() {
                        "can take it".to_owned()
                    } else {
                        reasons_text(&q.head_ticket_reasons, &[])
                    },
                ]
            })
            .collect();
        out.push(fmt::table(
            &[
                "QUEUE",
                "WAITING",
                "ELIGIBLE",
                "NEXT TICKET",
                "HEAD OF QUEUE",
            ],
            &rows,
        ));
    }
    if let Some(o) = &e.offers {
        out.push(format!(
            "offers over the last {}: {} made, {} accepted, {} declined, {} expired, {} cancelled",
            fmt::opt_duration(e.counter_window.as_ref()),
            o.offered,
            o.accepted,
            o.declined,
            o.expired,
            o.cancelled
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common::{Channel, Tier};
    use tierline_proto::routing::{
        Agent, AgentPresence, AgentPresenceState, AgentQueueView, AgentStatus, RoutingTicket,
    };

    #[test]
    fn a_waiting_ticket_shows_rank_steps_and_one_line_per_agent() {
        let e = TicketExplanation {
            ticket: Some(RoutingTicket {
                ticket_number: "T-4821-7730".into(),
                state: TicketRoutingState::Waiting as i32,
                department: "quality_assurance".into(),
                tier: Tier::A as i32,
                channel: Channel::Voice as i32,
                required_skills: vec!["language:de".into()],
                ..Default::default()
            }),
            rank: 2,
            queue_length: 5,
            steps: vec![
                RoutingStep {
                    kind: RoutingStepKind::AccountManager as i32,
                    target: "agent-7".into(),
                    start_after: Some(prost_types::Duration::default()),
                    start_time: None,
                },
                RoutingStep {
                    kind: RoutingStepKind::Department as i32,
                    target: "quality_assurance".into(),
                    start_after: Some(prost_types::Duration {
                        seconds: 180,
                        nanos: 0,
                    }),
                    start_time: None,
                },
            ],
            current_step_index: 0,
            eligible_agent_count: 0,
            agents: vec![
                AgentVerdict {
                    agent_id: "agent-7".into(),
                    display_name: "Ana Silva".into(),
                    reasons: vec![IneligibilityReason::Away as i32],
                    ..Default::default()
                },
                AgentVerdict {
                    agent_id: "agent-9".into(),
                    display_name: "Bo Chen".into(),
                    reasons: vec![
                        IneligibilityReason::NotInStep as i32,
                        IneligibilityReason::MissingSkill as i32,
                    ],
                    missing_skills: vec!["language:de".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = format_ticket_explanation(&e, OffsetDateTime::UNIX_EPOCH);
        assert!(
            text.starts_with(
                "T-4821-7730 waiting in quality_assurance · tier A · voice · escalation 0\nrank 2 of 5"
            ),
            "{text}"
        );
        assert!(
            text.contains("  1. account manager agent-7 from +0s  ← current"),
            "{text}"
        );
        assert!(
            text.contains("  2. department quality_assurance from +3m 00s"),
            "{text}"
        );
        assert!(text.contains("0 agents could be offered it now"), "{text}");
        assert!(
            text.contains("agent-7  Ana Silva  not eligible  away"),
            "{text}"
        );
        assert!(
            text.contains(
                "not in the ticket's current routing step yet; lacks a required skill (language:de)"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_agent_explanation_says_why_no_offers_come() {
        let e = AgentExplanation {
            agent: Some(Agent {
                id: "agent-7".into(),
                display_name: "Ana Silva".into(),
                status: Some(AgentStatus {
                    presence: Some(AgentPresence {
                        state: AgentPresenceState::Available as i32,
                        ..Default::default()
                    }),
                    connected: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            receiving_offers: false,
            reasons: vec![IneligibilityReason::NoWaitingTickets as i32],
            queues: vec![AgentQueueView {
                department: "hr".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = format_agent_explanation(&e, OffsetDateTime::UNIX_EPOCH);
        assert!(
            text.contains("available · desktop connected · no capacity · 0 parked"),
            "{text}"
        );
        assert!(
            text.contains("receiving offers: no — no ticket waiting in its queues"),
            "{text}"
        );
        assert!(
            text.contains("hr     0        0         -            can take it"),
            "{text}"
        );
    }

    #[test]
    fn a_finished_ticket_is_explained_from_its_state() {
        let t = Ticket {
            number: "T-1".into(),
            state: tierline_proto::ticket::TicketState::Resolved as i32,
            assigned_agent_id: "agent-7".into(),
            ..Default::default()
        };
        assert_eq!(
            format_untracked(&t),
            "T-1 is RESOLVED (agent agent-7): it is finished as far as routing goes"
        );
    }
}
