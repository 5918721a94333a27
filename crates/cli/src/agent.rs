//! `tierline agent ...` (except the desktop, in [`crate::desktop`]): agent records and the
//! one-shot offer and presence commands.

use serde_json::json;
use tierline_proto::routing::{
    AcceptOfferRequest, Agent, AgentPresence, AgentPresenceState, AgentStatus, Assignment,
    AwayReason, ChannelCapacity, DeclineOfferRequest, GetAgentRequest, ListAgentsRequest, Offer,
    SetPresenceRequest, UpsertAgentRequest,
};
use time::OffsetDateTime;

use crate::args::{AgentCommand, AgentList, AgentUpsert, PresenceArgs};
use crate::ctx::{Ctx, agent_actor, as_actor};
use crate::enum_of;
use crate::error::{CliError, Service};
use crate::fmt;
use crate::json::{list, to_json};

/// Runs an `agent` subcommand.
pub async fn run(ctx: &Ctx, command: AgentCommand) -> Result<(), CliError> {
    match command {
        AgentCommand::Upsert(args) => upsert(ctx, args).await,
        AgentCommand::Get { id } => {
            let mut client = ctx.agents().await?;
            let agent = ctx
                .call(
                    Service::Routing,
                    client.get_agent(GetAgentRequest { agent_id: id }),
                )
                .await?;
            let now = OffsetDateTime::now_utc();
            ctx.print(|| format_agent(&agent, now), || to_json(&agent));
            Ok(())
        }
        AgentCommand::List(args) => list_agents(ctx, args).await,
        AgentCommand::Desktop(args) => crate::desktop::run(ctx, args).await,
        AgentCommand::Accept { agent, reservation } => {
            let assignment = accept(ctx, &agent, &reservation).await?;
            ctx.print(|| format_assignment(&assignment), || to_json(&assignment));
            Ok(())
        }
        AgentCommand::Decline {
            agent,
            reservation,
            reason,
            note,
        } => {
            let offer = decline(
                ctx,
                &agent,
                &reservation,
                reason.map_or(0, |r| r.wire()),
                note.unwrap_or_default(),
            )
            .await?;
            ctx.print(
                || {
                    format!(
                        "declined {} ({})",
                        offer.ticket_number, offer.reservation_id
                    )
                },
                || to_json(&offer),
            );
            Ok(())
        }
        AgentCommand::Presence(args) => presence(ctx, args).await,
    }
}

/// The request of an upsert: only the fields given are changed (the update mask names them);
/// when the agent does not exist yet the mask is ignored and they are all it has.
pub fn upsert_request(args: &AgentUpsert) -> Result<UpsertAgentRequest, CliError> {
    let mut paths = Vec::new();
    let mut agent = Agent {
        id: args.id.clone(),
        ..Default::default()
    };
    if let Some(name) = &args.name {
        agent.display_name = name.clone();
        paths.push("display_name");
    }
    if !args.departments.is_empty() {
        agent.departments = args.departments.clone();
        paths.push("departments");
    }
    if let Some(team) = &args.team {
        agent.team_id = team.clone();
        paths.push("team_id");
    }
    if !args.skills.is_empty() {
        agent.skills = args.skills.clone();
        paths.push("skills");
    }
    if !args.capacities.is_empty() {
        agent.capacities = args
            .capacities
            .iter()
            .map(|c| ChannelCapacity {
                channel: c.channel.wire(),
                max_active_tickets: c.max_active_tickets,
            })
            .collect();
        paths.push("capacities");
    }
    if args.disable || args.enable {
        agent.disabled = args.disable;
        paths.push("disabled");
    }
    if paths.is_empty() {
        // An empty mask means "every field": it would clear what was not given.
        return Err(CliError::Usage(
            "nothing to set: give --name, --department, --team, --skill, --capacity, \
             --disable or --enable"
                .into(),
        ));
    }
    Ok(UpsertAgentRequest {
        agent: Some(agent),
        update_mask: Some(prost_types::FieldMask {
            paths: paths.into_iter().map(str::to_owned).collect(),
        }),
        expected_version: None,
    })
}

async fn upsert(ctx: &Ctx, args: AgentUpsert) -> Result<(), CliError> {
    let request = upsert_request(&args)?;
    let mut client = ctx.agents().await?;
    let agent = ctx
        .call(Service::Routing, client.upsert_agent(request))
        .await?;
    let now = OffsetDateTime::now_utc();
    ctx.print(
        || {
            format!(
                "{} agent {} (version {})\n{}",
                if agent.version <= 1 {
                    "created"
                } else {
                    "updated"
                },
                agent.id,
                agent.version,
                format_agent(&agent, now)
            )
        },
        || to_json(&agent),
    );
    Ok(())
}

async fn list_agents(ctx: &Ctx, args: AgentList) -> Result<(), CliError> {
    let mut client = ctx.agents().await?;
    let mut agents = Vec::new();
    let mut token = String::new();
    loop {
        let page = ctx
            .call(
                Service::Routing,
                client.list_agents(ListAgentsRequest {
                    page_size: 500,
                    page_token: token,
                    department: args.department.clone().unwrap_or_default(),
                    team_id: args.team.clone().unwrap_or_default(),
                    presence_states: args.presence.iter().map(|p| p.wire()).collect(),
                    include_disabled: args.include_disabled,
                }),
            )
            .await?;
        agents.extend(page.agents);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ctx.print(
        || format_agent_list(&agents),
        || json!({ "agents": list(&agents) }),
    );
    Ok(())
}

/// AgentDesktopService.AcceptOffer.
pub async fn accept(ctx: &Ctx, agent: &str, reservation: &str) -> Result<Assignment, CliError> {
    let mut client = ctx.desktop().await?;
    ctx.call(
        Service::Routing,
        client.accept_offer(as_actor(
            AcceptOfferRequest {
                agent_id: agent.to_owned(),
                reservation_id: reservation.to_owned(),
            },
            &agent_actor(agent),
        )?),
    )
    .await
}

/// AgentDesktopService.DeclineOffer.
pub async fn decline(
    ctx: &Ctx,
    agent: &str,
    reservation: &str,
    reason: i32,
    note: String,
) -> Result<Offer, CliError> {
    let mut client = ctx.desktop().await?;
    ctx.call(
        Service::Routing,
        client.decline_offer(as_actor(
            DeclineOfferRequest {
                agent_id: agent.to_owned(),
                reservation_id: reservation.to_owned(),
                reason,
                note,
            },
            &agent_actor(agent),
        )?),
    )
    .await
}

/// AgentDesktopService.SetPresence.
pub async fn set_presence(
    ctx: &Ctx,
    agent: &str,
    state: i32,
    away_reason: i32,
    note: String,
) -> Result<AgentPresence, CliError> {
    let mut client = ctx.desktop().await?;
    ctx.call(
        Service::Routing,
        client.set_presence(as_actor(
            SetPresenceRequest {
                agent_id: agent.to_owned(),
                state,
                away_reason,
                note,
            },
            &agent_actor(agent),
        )?),
    )
    .await
}

async fn presence(ctx: &Ctx, args: PresenceArgs) -> Result<(), CliError> {
    let p = set_presence(
        ctx,
        &args.agent,
        args.state.wire(),
        args.reason.map_or(0, |r| r.wire()),
        args.note.clone().unwrap_or_default(),
    )
    .await?;
    ctx.print(
        || format!("{}: {}", args.agent, presence_text(&p)),
        || to_json(&p),
    );
    Ok(())
}

/// "available", "away (break: back at 3)", "offline".
pub fn presence_text(p: &AgentPresence) -> String {
    let state = enum_of!(AgentPresenceState, p.state, "AGENT_PRESENCE_STATE_");
    let mut detail = Vec::new();
    if p.away_reason != 0 {
        detail.push(enum_of!(AwayReason, p.away_reason, "AWAY_REASON_"));
    }
    if !p.note.is_empty() {
        detail.push(p.note.clone());
    }
    if detail.is_empty() {
        state
    } else {
        format!("{state} ({})", detail.join(": "))
    }
}

/// "voice 0/1, chat 1/3".
pub fn loads_text(status: &AgentStatus) -> String {
    if status.loads.is_empty() {
        return "no capacity".into();
    }
    status
        .loads
        .iter()
        .map(|l| {
            format!(
                "{} {}/{}",
                fmt::channel(l.channel),
                l.active_tickets,
                l.max_active_tickets
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An agent record with its live status.
pub fn format_agent(a: &Agent, now: OffsetDateTime) -> String {
    let mut f: Vec<(&str, String)> = vec![
        ("agent", format!("{}  {}", a.id, a.display_name)),
        ("departments", list_or_dash(&a.departments)),
        ("team", fmt::or_dash(&a.team_id).to_owned()),
        ("skills", list_or_dash(&a.skills)),
        (
            "capacity",
            if a.capacities.is_empty() {
                "none (never offered anything)".to_owned()
            } else {
                a.capacities
                    .iter()
                    .map(|c| format!("{}={}", fmt::channel(c.channel), c.max_active_tickets))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
    ];
    if a.disabled {
        f.push(("DISABLED", "gets no offers and cannot connect".into()));
    }
    if let Some(s) = &a.status {
        let presence = s.presence.as_ref().map_or_else(
            || "-".to_owned(),
            |p| match &p.since_time {
                Some(since) => format!(
                    "{} since {}",
                    presence_text(p),
                    fmt::relative(Some(since), now)
                ),
                None => presence_text(p),
            },
        );
        f.push((
            "presence",
            format!(
                "{presence} · {}",
                if s.connected {
                    "desktop connected"
                } else {
                    "no desktop connected"
                }
            ),
        ));
        f.push((
            "load",
            format!("{} · {} parked", loads_text(s), s.parked_ticket_count),
        ));
        if s.idle_since_time.is_some() {
            f.push((
                "idle",
                format!("since {}", fmt::relative(s.idle_since_time.as_ref(), now)),
            ));
        }
        if !s.pending_reservation_id.is_empty() {
            f.push(("pending offer", s.pending_reservation_id.clone()));
        }
    }
    f.push(("version", a.version.to_string()));
    fmt::fields(&f)
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// Agents as a table.
pub fn format_agent_list(agents: &[Agent]) -> String {
    if agents.is_empty() {
        return "no agents match".into();
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let (presence, load, connected) = a.status.as_ref().map_or_else(
                || ("-".to_owned(), "-".to_owned(), ""),
                |s| {
                    (
                        s.presence
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), presence_text),
                        loads_text(s),
                        if s.connected { "yes" } else { "" },
                    )
                },
            );
            vec![
                a.id.clone(),
                a.display_name.clone(),
                if a.disabled {
                    "DISABLED".to_owned()
                } else {
                    presence
                },
                connected.to_owned(),
                load,
                a.departments.join(","),
                a.team_id.clone(),
            ]
        })
        .collect();
    fmt::table(
        &[
            "ID",
            "NAME",
            "PRESENCE",
            "DESKTOP",
            "LOAD",
            "DEPARTMENTS",
            "TEAM",
        ],
        &rows,
    )
}

/// "assigned T-4821-7730 to agent-7 (voice, active)".
pub fn format_assignment(a: &Assignment) -> String {
    format!(
        "assigned {} to {} ({}, {}) · reservation {}",
        a.ticket_number,
        a.agent_id,
        fmt::channel(a.channel),
        enum_of!(
            tierline_proto::routing::AssignmentStatus,
            a.status,
            "ASSIGNMENT_STATUS_"
        ),
        fmt::or_dash(&a.reservation_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Capacity, ChannelArg};
    use tierline_proto::common::Channel;
    use tierline_proto::routing::{AssignmentStatus, ChannelLoad};

    fn upsert_args() -> AgentUpsert {
        AgentUpsert {
            id: "agent-7".into(),
            name: None,
            departments: vec![],
            team: None,
            skills: vec![],
            capacities: vec![],
            disable: false,
            enable: false,
        }
    }

    #[test]
    fn an_upsert_changes_only_the_fields_given() {
        let mut args = upsert_args();
        args.name = Some("Ana Silva".into());
        args.capacities = vec![Capacity {
            channel: ChannelArg::Voice,
            max_active_tickets: 1,
        }];
        let r = upsert_request(&args).expect("valid");
        assert_eq!(
            r.update_mask.map(|m| m.paths),
            Some(vec!["display_name".to_owned(), "capacities".to_owned()])
        );
        let agent = r.agent.expect("agent");
        assert_eq!(agent.display_name, "Ana Silva");
        assert_eq!(agent.capacities[0].channel, Channel::Voice as i32);
    }

    #[test]
    fn an_upsert_with_nothing_to_set_is_refused_rather_than_clearing_everything() {
        assert!(matches!(
            upsert_request(&upsert_args()),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn presence_and_load_read_naturally() {
        let p = AgentPresence {
            state: AgentPresenceState::Away as i32,
            away_reason: AwayReason::Break as i32,
            note: "back at 3".into(),
            since_time: None,
        };
        assert_eq!(presence_text(&p), "away (break: back at 3)");
        let s = AgentStatus {
            loads: vec![
                ChannelLoad {
                    channel: Channel::Voice as i32,
                    active_tickets: 0,
                    max_active_tickets: 1,
                },
                ChannelLoad {
                    channel: Channel::Chat as i32,
                    active_tickets: 1,
                    max_active_tickets: 3,
                },
            ],
            ..Default::default()
        };
        assert_eq!(loads_text(&s), "voice 0/1, chat 1/3");
    }

    #[test]
    fn an_assignment_names_ticket_agent_and_reservation() {
        let a = Assignment {
            reservation_id: "r-1".into(),
            agent_id: "agent-7".into(),
            ticket_number: "T-4821-7730".into(),
            channel: Channel::Voice as i32,
            status: AssignmentStatus::Active as i32,
            ..Default::default()
        };
        assert_eq!(
            format_assignment(&a),
            "assigned T-4821-7730 to agent-7 (voice, active) · reservation r-1"
        );
    }

    #[test]
    fn an_agent_shows_its_record_and_live_status() {
        let a = Agent {
            id: "agent-7".into(),
            display_name: "Ana Silva".into(),
            departments: vec!["quality_assurance".into()],
            capacities: vec![ChannelCapacity {
                channel: Channel::Voice as i32,
                max_active_tickets: 1,
            }],
            status: Some(AgentStatus {
                presence: Some(AgentPresence {
                    state: AgentPresenceState::Available as i32,
                    ..Default::default()
                }),
                connected: true,
                ..Default::default()
            }),
            version: 1,
            ..Default::default()
        };
        let text = format_agent(&a, OffsetDateTime::UNIX_EPOCH);
        assert!(text.contains("agent        agent-7  Ana Silva"), "{text}");
        assert!(text.contains("capacity     voice=1"), "{text}");
        assert!(text.contains("desktop connected"), "{text}");
        let table = format_agent_list(&[a]);
        assert!(
            table.contains("agent-7  Ana Silva  available  yes"),
            "{table}"
        );
    }
}
