//! `tierline ticket ...`: look tickets up, list them, resolve them, record follow-ups.

use serde_json::json;
use tierline_proto::ticket::{
    CustomerResolution, GetTicketRequest, ListTicketHistoryRequest, ListTicketsRequest,
    RecordFollowUpRequest, Severity, SlaStatus, Ticket, TicketEvent, TicketEventKind, TicketOrder,
    TicketState, TicketType, TransitionTicketRequest, get_ticket_request,
};
use time::OffsetDateTime;

use crate::args::{FollowUp, TicketCommand, TicketList};
use crate::ctx::{Ctx, agent_actor, as_actor};
use crate::enum_of;
use crate::error::{CliError, Service};
use crate::fmt;
use crate::json::{list, to_json};

/// Runs a `ticket` subcommand.
pub async fn run(ctx: &Ctx, command: TicketCommand) -> Result<(), CliError> {
    match command {
        TicketCommand::Get { ticket, history } => get(ctx, &ticket, history).await,
        TicketCommand::List(args) => list_tickets(ctx, args).await,
        TicketCommand::Resolve {
            ticket,
            agent,
            summary,
        } => {
            let t = resolve(ctx, &ticket, &agent, &summary).await?;
            ctx.print(|| format_resolved(&t), || to_json(&t));
            Ok(())
        }
        TicketCommand::FollowUp(args) => follow_up(ctx, args).await,
    }
}

/// How a ticket is named on the command line: its id, or its number in any of the accepted
/// forms ("T-4821-7730", "48217730").
pub fn key_of(reference: &str) -> get_ticket_request::Key {
    let trimmed = reference.trim();
    if uuid::Uuid::parse_str(trimmed).is_ok() {
        get_ticket_request::Key::TicketId(trimmed.to_owned())
    } else {
        get_ticket_request::Key::Number(trimmed.to_owned())
    }
}

/// Whether a word names a ticket (an id, or a number like "T-4821-7730" or "48217730").
pub fn looks_like_ticket(word: &str) -> bool {
    if uuid::Uuid::parse_str(word).is_ok() {
        return true;
    }
    let rest = word
        .strip_prefix("T-")
        .or_else(|| word.strip_prefix("t-"))
        .unwrap_or(word);
    let digits: String = rest.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit())
}

/// TicketService.GetTicket by id or number.
pub async fn fetch(ctx: &Ctx, reference: &str) -> Result<Ticket, CliError> {
    let mut client = ctx.tickets().await?;
    ctx.call(
        Service::Ticket,
        client.get_ticket(GetTicketRequest {
            key: Some(key_of(reference)),
        }),
    )
    .await
}

async fn get(ctx: &Ctx, reference: &str, history: bool) -> Result<(), CliError> {
    let ticket = fetch(ctx, reference).await?;
    let events = if history {
        let mut client = ctx.tickets().await?;
        let mut events = Vec::new();
        let mut token = String::new();
        loop {
            let page = ctx
                .call(
                    Service::Ticket,
                    client.list_ticket_history(ListTicketHistoryRequest {
                        ticket_id: ticket.id.clone(),
                        page_size: 500,
                        page_token: token,
                    }),
                )
                .await?;
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        events
    } else {
        Vec::new()
    };
    let now = OffsetDateTime::now_utc();
    ctx.print(
        || {
            let mut out = format_ticket(&ticket, now);
            if history {
                out.push_str("\n\n");
                out.push_str(&format_history(&events));
            }
            out
        },
        || {
            if history {
                json!({ "ticket": to_json(&ticket), "history": list(&events) })
            } else {
                to_json(&ticket)
            }
        },
    );
    Ok(())
}

async fn list_tickets(ctx: &Ctx, args: TicketList) -> Result<(), CliError> {
    let mut client = ctx.tickets().await?;
    let limit = args.limit as usize;
    let mut tickets = Vec::new();
    let mut token = String::new();
    loop {
        let want = (limit - tickets.len()).min(500);
        let page = ctx
            .call(
                Service::Ticket,
                client.list_tickets(ListTicketsRequest {
                    page_size: i32::try_from(want).unwrap_or(500),
                    page_token: token,
                    states: args.state.iter().map(|s| s.wire()).collect(),
                    tiers: args.tier.iter().map(|t| t.wire()).collect(),
                    departments: args.department.clone(),
                    assigned_agent_id: args.agent.clone().unwrap_or_default(),
                    customer_id: args.customer.clone().unwrap_or_default(),
                    order: if args.newest_first {
                        TicketOrder::CreateTimeDesc as i32
                    } else {
                        TicketOrder::CreateTimeAsc as i32
                    },
                    ..Default::default()
                }),
            )
            .await?;
        tickets.extend(page.tickets);
        if page.next_page_token.is_empty() || tickets.len() >= limit {
            break;
        }
        token = page.next_page_token;
    }
    tickets.truncate(limit);
    let now = OffsetDateTime::now_utc();
    ctx.print(
        || format_list(&tickets, now),
        || json!({ "tickets": list(&tickets) }),
    );
    Ok(())
}

/// Resolves a ticket for `agent`: IN_PROGRESS first if it is only ASSIGNED (the agent starts
/// work), then RESOLVED with the summary. A ticket already RESOLVED is left as it is.
pub async fn resolve(
    ctx: &Ctx,
    reference: &str,
    agent: &str,
    summary: &str,
) -> Result<Ticket, CliError> {
    let ticket = fetch(ctx, reference).await?;
    let actor = agent_actor(agent);
    let mut client = ctx.tickets().await?;
    if ticket.state == TicketState::Assigned as i32 {
        ctx.call(
            Service::Ticket,
            client.transition_ticket(as_actor(
                TransitionTicketRequest {
                    ticket_id: ticket.id.clone(),
                    target_state: TicketState::InProgress as i32,
                    ..Default::default()
                },
                &actor,
            )?),
        )
        .await?;
    }
    ctx.call(
        Service::Ticket,
        client.transition_ticket(as_actor(
            TransitionTicketRequest {
                ticket_id: ticket.id.clone(),
                target_state: TicketState::Resolved as i32,
                resolution_summary: summary.to_owned(),
                ..Default::default()
            },
            &actor,
        )?),
    )
    .await
}

async fn follow_up(ctx: &Ctx, args: FollowUp) -> Result<(), CliError> {
    let ticket = fetch(ctx, &args.ticket).await?;
    let mut client = ctx.tickets().await?;
    let updated = ctx
        .call(
            Service::Ticket,
            client.record_follow_up(as_actor(
                RecordFollowUpRequest {
                    ticket_id: ticket.id.clone(),
                    expected: args.expected,
                    perceived: args.perceived,
                    comment: args.comment.clone().unwrap_or_default(),
                    agent_id: args.agent.clone(),
                    close_ticket: args.close,
                    expected_version: None,
                },
                &agent_actor(&args.agent),
            )?),
        )
        .await?;
    ctx.print(|| format_follow_up(&updated), || to_json(&updated));
    Ok(())
}

/// "T-4821-7730 RESOLVED by agent-7: replaced the kettle".
pub fn format_resolved(t: &Ticket) -> String {
    format!(
        "{} {} by {}: {}",
        t.number,
        fmt::ticket_state(t.state),
        fmt::or_dash(&t.assigned_agent_id),
        fmt::clip(&t.resolution_summary, 80)
    )
}

/// The follow-up just recorded.
pub fn format_follow_up(t: &Ticket) -> String {
    match &t.follow_up {
        Some(f) if f.record_time.is_some() => format!(
            "{} followed up by {}: satisfaction {:.2} (expected {}, perceived {}){} · {}",
            t.number,
            f.recorded_by_agent_id,
            f.satisfaction,
            f.expected,
            f.perceived,
            if f.recorded_on_profile {
                ", on the customer's profile"
            } else {
                ", to be copied to the customer's profile"
            },
            fmt::ticket_state(t.state)
        ),
        _ => format!("{} has no follow-up recorded", t.number),
    }
}

/// Who a ticket is for, as far as the ticket knows.
pub fn ticket_customer(t: &Ticket) -> String {
    if t.customer_resolution == CustomerResolution::Pending as i32 {
        let caller = t
            .caller_identity
            .as_ref()
            .map_or_else(String::new, |i| format!(" (caller {})", i.value));
        return format!("not resolved yet{caller}");
    }
    match &t.customer {
        Some(c) => {
            let mut s = format!("{} · tier {}", c.display_name, fmt::tier(c.tier));
            if c.key_account {
                s.push_str(" · key account");
            }
            format!("{s} ({})", t.customer_id)
        }
        None => fmt::or_dash(&t.customer_id).to_owned(),
    }
}

/// The tier the ticket is routed by.
pub fn routed_tier(t: &Ticket) -> String {
    t.routing
        .as_ref()
        .map_or_else(|| "-".into(), |r| fmt::tier(r.tier))
}

/// A ticket, one labelled line per thing that is set.
pub fn format_ticket(t: &Ticket, now: OffsetDateTime) -> String {
    let mut f: Vec<(&str, String)> = vec![
        ("ticket", format!("{}  ({})", t.number, t.id)),
        ("state", state_line(t)),
        ("subject", t.subject.clone()),
        ("customer", ticket_customer(t)),
        (
            "routing",
            format!(
                "{} · {} · tier {} · priority {}",
                t.department,
                fmt::channel(t.channel),
                routed_tier(t),
                t.priority
            ),
        ),
        (
            "kind",
            format!(
                "{} · {} · category {}",
                enum_of!(TicketType, t.r#type, "TICKET_TYPE_"),
                enum_of!(Severity, t.severity, "SEVERITY_"),
                t.category
            ),
        ),
    ];
    if !t.assigned_agent_id.is_empty() || !t.handler_agent_ids.is_empty() {
        f.push((
            "agent",
            format!(
                "{} (handled by {})",
                fmt::or_dash(&t.assigned_agent_id),
                if t.handler_agent_ids.is_empty() {
                    "-".to_owned()
                } else {
                    t.handler_agent_ids.join(", ")
                }
            ),
        ));
    }
    if let Some(sla) = &t.sla {
        let mut s = format!(
            "{} · first response due {}",
            enum_of!(SlaStatus, sla.status, "SLA_STATUS_"),
            fmt::time(sla.first_response_due_time.as_ref())
        );
        if sla.first_response_time.is_some() {
            s.push_str(&format!(
                " (answered {})",
                fmt::time(sla.first_response_time.as_ref())
            ));
        }
        s.push_str(&format!(
            " · resolution due {}",
            fmt::time_and_relative(sla.resolution_due_time.as_ref(), now)
        ));
        if sla.escalation_level > 0 {
            s.push_str(&format!(" · escalated {}×", sla.escalation_level));
        }
        f.push(("sla", s));
    }
    if !t.required_skills.is_empty() {
        f.push(("skills", t.required_skills.join(", ")));
    }
    if !t.description.is_empty() {
        f.push(("description", fmt::clip(&t.description, 200)));
    }
    if !t.resolution_summary.is_empty() {
        f.push(("resolution", fmt::clip(&t.resolution_summary, 200)));
    }
    if let Some(fu) = &t.follow_up {
        if fu.record_time.is_some() {
            f.push((
                "follow-up",
                format!(
                    "satisfaction {:.2} (expected {}, perceived {}) by {}",
                    fu.satisfaction, fu.expected, fu.perceived, fu.recorded_by_agent_id
                ),
            ));
        } else if fu.due_time.is_some() {
            f.push((
                "follow-up",
                format!("due {}", fmt::time_and_relative(fu.due_time.as_ref(), now)),
            ));
        }
    }
    if !t.merged_into_ticket_id.is_empty() {
        f.push(("merged into", t.merged_into_ticket_id.clone()));
    }
    f.push((
        "created",
        format!(
            "{} ({}) · version {}",
            fmt::time(t.create_time.as_ref()),
            fmt::relative(t.create_time.as_ref(), now),
            t.version
        ),
    ));
    fmt::fields(&f)
}

fn state_line(t: &Ticket) -> String {
    let mut s = fmt::ticket_state(t.state);
    if !t.state_reason.is_empty() {
        s.push_str(&format!(" ({})", t.state_reason));
    }
    if !t.available_transitions.is_empty() {
        let next: Vec<String> = t
            .available_transitions
            .iter()
            .map(|s| fmt::ticket_state(*s))
            .collect();
        s.push_str(&format!(" · can go to {}", next.join(", ")));
    }
    s
}

/// Tickets as a table.
pub fn format_list(tickets: &[Ticket], now: OffsetDateTime) -> String {
    if tickets.is_empty() {
        return "no tickets match".into();
    }
    let rows: Vec<Vec<String>> = tickets
        .iter()
        .map(|t| {
            vec![
                t.number.clone(),
                fmt::ticket_state(t.state),
                routed_tier(t),
                t.department.clone(),
                t.priority.to_string(),
                fmt::or_dash(&t.assigned_agent_id).to_owned(),
                fmt::relative(t.create_time.as_ref(), now),
                fmt::clip(&t.subject, 40),
            ]
        })
        .collect();
    fmt::table(
        &[
            "NUMBER",
            "STATE",
            "TIER",
            "DEPARTMENT",
            "PRIO",
            "AGENT",
            "CREATED",
            "SUBJECT",
        ],
        &rows,
    )
}

/// A ticket's history, oldest first.
pub fn format_history(events: &[TicketEvent]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let actor = e.actor.as_ref().map_or_else(
                || "-".to_owned(),
                |a| {
                    let kind = enum_of!(tierline_proto::ticket::ActorKind, a.kind, "ACTOR_KIND_");
                    if a.id.is_empty() {
                        kind
                    } else {
                        format!("{kind}:{}", a.id)
                    }
                },
            );
            let change = if e.from_state == e.to_state {
                String::new()
            } else {
                format!(
                    "{} → {}",
                    fmt::ticket_state(e.from_state),
                    fmt::ticket_state(e.to_state)
                )
            };
            vec![
                fmt::time(e.event_time.as_ref()),
                enum_of!(TicketEventKind, e.kind, "TICKET_EVENT_KIND_"),
                actor,
                change,
                fmt::clip(&e.reason, 50),
            ]
        })
        .collect();
    fmt::table(&["WHEN", "EVENT", "BY", "STATE", "WHY"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common::{Channel, Tier};
    use tierline_proto::ticket::{CustomerSnapshot, FollowUp as WireFollowUp, TicketRouting};

    fn ticket() -> Ticket {
        Ticket {
            id: "0190a000-0000-7000-8000-000000000001".into(),
            number: "T-4821-7730".into(),
            customer_id: "c-1".into(),
            customer_resolution: CustomerResolution::Resolved as i32,
            customer: Some(CustomerSnapshot {
                tier: Tier::A as i32,
                key_account: true,
                display_name: "Ada Okafor".into(),
                ..Default::default()
            }),
            channel: Channel::Voice as i32,
            r#type: TicketType::Complaint as i32,
            category: "product_quality".into(),
            department: "quality_assurance".into(),
            severity: Severity::Medium as i32,
            priority: 320,
            subject: "Product quality".into(),
            state: TicketState::Resolved as i32,
            assigned_agent_id: "agent-7".into(),
            handler_agent_ids: vec!["agent-7".into()],
            routing: Some(TicketRouting {
                tier: Tier::A as i32,
                ..Default::default()
            }),
            resolution_summary: "replaced the kettle".into(),
            version: 6,
            ..Default::default()
        }
    }

    #[test]
    fn ids_and_numbers_are_told_apart() {
        assert!(matches!(
            key_of("0190a000-0000-7000-8000-000000000001"),
            get_ticket_request::Key::TicketId(_)
        ));
        assert!(matches!(
            key_of("T-4821-7730"),
            get_ticket_request::Key::Number(_)
        ));
        assert!(looks_like_ticket("T-4821-7730"));
        assert!(looks_like_ticket("48217730"));
        assert!(looks_like_ticket("0190a000-0000-7000-8000-000000000001"));
        assert!(!looks_like_ticket("replaced"));
        assert!(!looks_like_ticket("1234"));
    }

    #[test]
    fn a_ticket_shows_state_customer_routing_and_resolution() {
        let text = format_ticket(&ticket(), OffsetDateTime::UNIX_EPOCH);
        assert!(
            text.contains("ticket      T-4821-7730  (0190a000"),
            "{text}"
        );
        assert!(text.contains("state       RESOLVED"), "{text}");
        assert!(
            text.contains("customer    Ada Okafor · tier A · key account (c-1)"),
            "{text}"
        );
        assert!(
            text.contains("routing     quality_assurance · voice · tier A · priority 320"),
            "{text}"
        );
        assert!(
            text.contains("agent       agent-7 (handled by agent-7)"),
            "{text}"
        );
        assert!(text.contains("resolution  replaced the kettle"), "{text}");
        assert_eq!(
            format_resolved(&ticket()),
            "T-4821-7730 RESOLVED by agent-7: replaced the kettle"
        );
    }

    #[test]
    fn an_unresolved_customer_shows_the_caller() {
        let t = Ticket {
            customer_resolution: CustomerResolution::Pending as i32,
            caller_identity: Some(tierline_proto::common::IdentityRef {
                value: "020 7946 0018".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            ticket_customer(&t),
            "not resolved yet (caller 020 7946 0018)"
        );
    }

    #[test]
    fn a_list_is_a_table_and_an_empty_one_says_so() {
        let text = format_list(&[ticket()], OffsetDateTime::UNIX_EPOCH);
        let mut lines = text.lines();
        assert!(lines.next().is_some_and(|h| h.starts_with("NUMBER")));
        assert!(
            lines.next().is_some_and(
                |l| l.starts_with("T-4821-7730  RESOLVED  A     quality_assurance  320")
            )
        );
        assert_eq!(
            format_list(&[], OffsetDateTime::UNIX_EPOCH),
            "no tickets match"
        );
    }

    #[test]
    fn a_follow_up_reports_satisfaction() {
        let mut t = ticket();
        t.follow_up = Some(WireFollowUp {
            record_time: Some(prost_types::Timestamp::default()),
            expected: 5.0,
            perceived: 6.0,
            satisfaction: 1.2,
            recorded_by_agent_id: "agent-9".into(),
            recorded_on_profile: true,
            ..Default::default()
        });
        assert_eq!(
            format_follow_up(&t),
            "T-4821-7730 followed up by agent-9: satisfaction 1.20 (expected 5, perceived 6), \
             on the customer's profile · RESOLVED"
        );
    }
}
