//! `tierline ivr ...`: what an IVR does on a call — look the caller up, open the ticket
//! (idempotent on the call id), read back the number and the wait.

use serde_json::{Value, json};
use tierline_proto::common::{IdentityKind, IdentityRef};
use tierline_proto::customer::Customer;
use tierline_proto::routing::{EstimateWaitRequest, EstimateWaitResponse};
use tierline_proto::ticket::{
    Category, CreateTicketRequest, CreateTicketResponse, ListCategoriesRequest, Severity,
    TicketState, TicketType, create_ticket_request,
};

use crate::args::{IvrCall, IvrCommand, IvrWait};
use crate::ctx::{Ctx, as_actor};
use crate::customer::{customer_line, find};
use crate::enum_of;
use crate::error::{CliError, Service};
use crate::fmt;
use crate::json::{list, to_json};
use crate::ticket::routed_tier;

/// Runs an `ivr` subcommand.
pub async fn run(ctx: &Ctx, command: IvrCommand) -> Result<(), CliError> {
    match command {
        IvrCommand::Call(args) => call(ctx, args).await,
        IvrCommand::Wait(args) => wait(ctx, args).await,
        IvrCommand::Categories => categories(ctx).await,
    }
}

/// Who the lookup found, or why it found nobody.
#[derive(Debug)]
pub enum Caller {
    /// The holders of the number (several only for a shared number), most recent first.
    Known(Vec<Customer>),
    /// Nobody holds the number: the ticket service makes a prospect profile.
    Unknown,
    /// The customer-profile service could not be reached; the ticket is taken anyway and its
    /// customer resolved later.
    NotLookedUp(String),
}

async fn call(ctx: &Ctx, args: IvrCall) -> Result<(), CliError> {
    let identity = IdentityRef {
        kind: IdentityKind::Phone as i32,
        value: args.from.clone(),
        region_code: args.region.clone().unwrap_or_default(),
    };
    // The IVR's first step: who is calling? An unreachable profile service does not stop the
    // call (the ticket service takes it with the customer pending); anything else it says does.
    let caller = match find(ctx, identity.clone()).await {
        Ok(found) if found.is_empty() => Caller::Unknown,
        Ok(found) => Caller::Known(found),
        Err(e @ CliError::Unreachable { .. }) => Caller::NotLookedUp(e.render()),
        Err(e) => return Err(e),
    };
    if !ctx.json {
        crate::ctx::line(&format_caller(&args.from, &caller));
    }
    let call_id = args
        .call_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let actor = match &caller {
        Caller::Known(found) => found
            .first()
            .map_or_else(|| "customer".to_owned(), |c| format!("customer:{}", c.id)),
        _ => "customer".to_owned(),
    };
    let request = CreateTicketRequest {
        idempotency_key: call_id.clone(),
        customer: Some(create_ticket_request::Customer::CallerIdentity(identity)),
        channel: args.channel.wire(),
        category: args.category.clone().unwrap_or_default(),
        subject: args.subject.clone().unwrap_or_default(),
        description: args.description.clone(),
        language_code: args.language.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut client = ctx.tickets().await?;
    let reply = ctx
        .call(
            Service::Ticket,
            client.create_ticket(as_actor(request, &actor)?),
        )
        .await?;
    ctx.print(
        || format_call(&call_id, &reply),
        || {
            json!({
                "call_id": call_id,
                "callers": caller_json(&caller),
                "reply": to_json(&reply),
            })
        },
    );
    Ok(())
}

fn caller_json(caller: &Caller) -> Value {
    match caller {
        Caller::Known(found) => list(found),
        Caller::Unknown => json!([]),
        Caller::NotLookedUp(_) => Value::Null,
    }
}

/// What the IVR knows about the caller before the ticket is made.
pub fn format_caller(from: &str, caller: &Caller) -> String {
    let text = match caller {
        Caller::Known(found) => match found.as_slice() {
            [one] => customer_line(one),
            [first, rest @ ..] => format!(
                "{} (and {} other holder{} of this number)",
                customer_line(first),
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
            [] => format!("unknown caller {from}"),
        },
        Caller::Unknown => {
            format!("unknown caller {from}: a new prospect profile is made for them")
        }
        Caller::NotLookedUp(why) => format!(
            "not looked up ({}); the ticket is taken and its customer resolved later",
            why.lines()
                .next()
                .unwrap_or("customer-profile service unreachable")
                .trim_start_matches("error: ")
        ),
    };
    // Aligned with the ticket lines printed after it (their longest label is "department").
    format!("{:<10}  {text}", "caller")
}

/// What the IVR reads back: number, state, queue position and wait.
pub fn format_call(call_id: &str, reply: &CreateTicketResponse) -> String {
    let Some(t) = &reply.ticket else {
        return format!("call id     {call_id}\nthe ticket service answered without a ticket");
    };
    let mut f: Vec<(&str, String)> = vec![
        ("call id", call_id.to_owned()),
        ("ticket", t.number.clone()),
        ("id", t.id.clone()),
        ("state", {
            let state = fmt::ticket_state(t.state);
            if t.state == TicketState::New as i32 && reply.queue_position > 0 {
                // The reply carries the ticket as created; the router has already ranked it.
                format!("{state} (already in the router's queue)")
            } else {
                state
            }
        }),
        ("department", t.department.clone()),
        ("tier", routed_tier(t)),
    ];
    if reply.replayed {
        f.push((
            "replayed",
            "yes: this call id already made this ticket; nothing new was created".into(),
        ));
    }
    let waiting = t.state == TicketState::New as i32 || t.state == TicketState::Queued as i32;
    let queue = match (reply.queue_position, &reply.estimated_wait) {
        (p, Some(w)) if p > 0 => format!("position {p} · estimated wait {}", fmt::duration(w)),
        (p, None) if p > 0 => format!("position {p} · no wait estimate"),
        (_, Some(w)) => format!("estimated wait {}", fmt::duration(w)),
        (_, None) if waiting => format!(
            "not known yet (ask: tierline ivr wait --department {} --tier {})",
            t.department,
            routed_tier(t)
        ),
        (_, None) => "not waiting".into(),
    };
    f.push(("queue", queue));
    fmt::fields(&f)
}

async fn wait(ctx: &Ctx, args: IvrWait) -> Result<(), CliError> {
    let mut client = ctx.routing().await?;
    let reply = ctx
        .call(
            Service::Routing,
            client.estimate_wait(EstimateWaitRequest {
                department: args.department.clone(),
                tier: args.tier.wire(),
                channel: args.channel.wire(),
                required_skills: args.skills.clone(),
            }),
        )
        .await?;
    ctx.print(|| format_wait(&args.department, &reply), || to_json(&reply));
    Ok(())
}

/// The wait announcement.
pub fn format_wait(department: &str, reply: &EstimateWaitResponse) -> String {
    let wait = reply.estimated_wait.as_ref().map_or_else(
        || "no estimate (no agent on duty for the department?)".to_owned(),
        |w| format!("estimated wait {}", fmt::duration(w)),
    );
    format!(
        "{department}: position {} · {wait} · {} agent{} free now",
        reply.position,
        reply.available_agents,
        if reply.available_agents == 1 { "" } else { "s" }
    )
}

async fn categories(ctx: &Ctx) -> Result<(), CliError> {
    let mut client = ctx.tickets().await?;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = ctx
            .call(
                Service::Ticket,
                client.list_categories(ListCategoriesRequest {
                    page_size: 500,
                    page_token: token,
                    include_inactive: false,
                }),
            )
            .await?;
        all.extend(page.categories);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ctx.print(
        || format_categories(&all),
        || json!({ "categories": list(&all) }),
    );
    Ok(())
}

/// Categories as a table.
pub fn format_categories(categories: &[Category]) -> String {
    let rows: Vec<Vec<String>> = categories
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.display_name.clone(),
                c.department.clone(),
                enum_of!(TicketType, c.default_type, "TICKET_TYPE_"),
                enum_of!(Severity, c.default_severity, "SEVERITY_"),
                c.required_skills.join(","),
            ]
        })
        .collect();
    fmt::table(
        &[
            "CATEGORY",
            "NAME",
            "DEPARTMENT",
            "TYPE",
            "SEVERITY",
            "SKILLS",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common::Tier;
    use tierline_proto::ticket::{Ticket, TicketRouting};

    fn reply(position: i32, wait: Option<i64>) -> CreateTicketResponse {
        CreateTicketResponse {
            ticket: Some(Ticket {
                id: "0190-x".into(),
                number: "T-4821-7730".into(),
                state: TicketState::Queued as i32,
                department: "quality_assurance".into(),
                routing: Some(TicketRouting {
                    tier: Tier::B as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            replayed: false,
            estimated_wait: wait.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            queue_position: position,
        }
    }

    #[test]
    fn a_call_reads_back_number_state_department_tier_and_wait() {
        let text = format_call("call-1", &reply(2, Some(250)));
        assert_eq!(
            text,
            "call id     call-1\nticket      T-4821-7730\nid          0190-x\nstate       \
             QUEUED\ndepartment  quality_assurance\ntier        B\nqueue       position 2 · \
             estimated wait 4m 10s"
        );
    }

    #[test]
    fn without_a_position_the_ivr_is_told_how_to_ask() {
        let text = format_call("call-1", &reply(0, None));
        assert!(
            text.contains(
                "not known yet (ask: tierline ivr wait --department quality_assurance --tier B)"
            ),
            "{text}"
        );
        let mut replayed = reply(1, Some(0));
        replayed.replayed = true;
        assert!(format_call("c", &replayed).contains("replayed    yes"));
    }

    #[test]
    fn the_caller_is_named_or_said_to_be_new() {
        let ada = Customer {
            display_name: "Ada Okafor".into(),
            tier: Tier::A as i32,
            ..Default::default()
        };
        assert_eq!(
            format_caller("020", &Caller::Known(vec![ada.clone()])),
            "caller      Ada Okafor · tier A"
        );
        assert_eq!(
            format_caller("020", &Caller::Known(vec![ada.clone(), ada])),
            "caller      Ada Okafor · tier A (and 1 other holder of this number)"
        );
        assert!(format_caller("020", &Caller::Unknown).contains("unknown caller 020"));
    }

    #[test]
    fn a_wait_is_announced_with_the_free_agents() {
        let r = EstimateWaitResponse {
            estimated_wait: Some(prost_types::Duration {
                seconds: 0,
                nanos: 0,
            }),
            position: 1,
            available_agents: 1,
        };
        assert_eq!(
            format_wait("hr", &r),
            "hr: position 1 · estimated wait 0s · 1 agent free now"
        );
        let none = EstimateWaitResponse::default();
        assert!(format_wait("hr", &none).contains("no estimate"));
    }
}
