//! `tierline agent desktop`: an agent desktop in the terminal.
//!
//! It holds the agent's OpenSession stream open and prints what arrives (offers with the
//! customer's profile and history, assignments, presence changes, cancellations), while it reads
//! commands from standard input, one per line. Commands run in order; `accept` and `decline`
//! without a reservation answer the current offer or, if there is none yet, the next one, so a
//! script can pipe `accept`, `resolve …`, `quit` in before anything has been offered.
//!
//! If the stream breaks (or stays silent for three heartbeat intervals) the desktop reconnects
//! with its session id within the session's resume grace, and says so. `quit`, the end of the
//! input and Ctrl-C sign the agent out and exit 0.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead as _;
use std::time::Duration;

use clap::ValueEnum as _;
use serde_json::{Value, json};
use tierline_proto::customer::{Customer, GetCustomerRequest, Interaction};
use tierline_proto::routing::open_session_response::Event;
use tierline_proto::routing::{
    AgentPresence, AgentPresenceState, Assignment, AssignmentStatus, Offer, OfferCancelReason,
    OpenSessionRequest, OpenSessionResponse, RoutingStepKind, SessionCloseReason,
};
use tierline_proto::ticket::{ListTicketsRequest, Ticket, TicketOrder};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;
use tonic::codec::Streaming;

use crate::agent::{accept, decline, format_assignment, presence_text, set_presence};
use crate::args::{AwayReasonArg, DeclineReasonArg, Desktop};
use crate::ctx::Ctx;
use crate::customer::{customer_line, recent_interactions, satisfaction};
use crate::enum_of;
use crate::error::{CliError, Service};
use crate::fmt;
use crate::json::{list, to_json};
use crate::ticket::{format_resolved, looks_like_ticket, resolve};

/// A command typed at the desktop.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// Accept the offer with this reservation, or the current (or next) one.
    Accept(Option<String>),
    /// Decline the current (or next) offer.
    Decline {
        /// DeclineReason wire value (0: not given).
        reason: i32,
        /// Free text.
        note: String,
    },
    /// Resolve a ticket (default: the latest assignment).
    Resolve {
        /// The ticket's id or number.
        ticket: Option<String>,
        /// What was done.
        summary: String,
    },
    /// Go away.
    Away {
        /// AwayReason wire value.
        reason: i32,
        /// Free text.
        note: String,
    },
    /// Take offers.
    Available,
    /// Sign out and leave.
    Quit,
    /// Show the commands.
    Help,
}

/// The commands, for `help` and mistakes.
pub const HELP: &str = "commands: accept [RESERVATION] · decline [not-ready|lacks-skill|conflict|other] [NOTE…] · \
resolve [TICKET] SUMMARY… · away break|meal|meeting|training|wrap-up|other [NOTE…] · available · quit";

/// Reads one input line; `Ok(None)` for a blank line or a `#` comment.
pub fn parse_line(line: &str) -> Result<Option<Line>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(w, r)| (w, r.trim()));
    let parsed = match word.to_ascii_lowercase().as_str() {
        "accept" | "a" => Line::Accept(first_word(rest)),
        "decline" | "d" => {
            let (reason, note) = match rest.split_once(char::is_whitespace) {
                _ if rest.is_empty() => (0, String::new()),
                Some((w, note)) => match DeclineReasonArg::from_str(w, true) {
                    Ok(r) => (r.wire(), note.trim().to_owned()),
                    Err(_) => (DeclineReasonArg::Other.wire(), rest.to_owned()),
                },
                None => match DeclineReasonArg::from_str(rest, true) {
                    Ok(r) => (r.wire(), String::new()),
                    Err(_) => (DeclineReasonArg::Other.wire(), rest.to_owned()),
                },
            };
            Line::Decline { reason, note }
        }
        "resolve" | "r" => {
            let (first, after) = rest
                .split_once(char::is_whitespace)
                .map_or((rest, ""), |(w, r)| (w, r.trim()));
            let (ticket, summary) = if looks_like_ticket(first) {
                (Some(first.to_owned()), after.to_owned())
            } else {
                (None, rest.to_owned())
            };
            if summary.is_empty() {
                return Err("resolve needs a summary: resolve [TICKET] SUMMARY…".into());
            }
            Line::Resolve { ticket, summary }
        }
        "away" => {
            let (w, note) = rest
                .split_once(char::is_whitespace)
                .map_or((rest, ""), |(w, r)| (w, r.trim()));
            if w.is_empty() {
                return Err(
                    "away needs a reason: break, meal, meeting, training, wrap-up, other".into(),
                );
            }
            match AwayReasonArg::from_str(w, true) {
                Ok(r) => Line::Away {
                    reason: r.wire(),
                    note: note.to_owned(),
                },
                Err(_) => Line::Away {
                    reason: AwayReasonArg::Other.wire(),
                    note: rest.to_owned(),
                },
            }
        }
        "available" | "ready" => Line::Available,
        "quit" | "exit" | "q" => Line::Quit,
        "help" | "?" => Line::Help,
        other => return Err(format!("unknown command {other:?}; {HELP}")),
    };
    Ok(Some(parsed))
}

fn first_word(s: &str) -> Option<String> {
    s.split_whitespace().next().map(str::to_owned)
}

/// What the desktop knows from the stream.
#[derive(Debug, Default)]
pub struct DeskState {
    /// The session id, to resume with.
    pub session_id: String,
    /// How long the session survives a broken stream.
    pub resume_grace: Duration,
    /// The longest the server stays silent.
    pub heartbeat: Duration,
    /// The pending offer.
    pub offer: Option<Offer>,
    /// Ticket id → the agent's assignments (ACTIVE or PARKED).
    pub assignments: BTreeMap<String, Assignment>,
    /// The ticket of the latest assignment, for `resolve` without a ticket.
    pub latest: Option<String>,
    /// The agent's presence.
    pub presence: Option<AgentPresence>,
}

impl DeskState {
    /// Takes an event in.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::SessionStarted(s) => {
                self.session_id = s.session_id.clone();
                self.resume_grace = to_std(s.resume_grace.as_ref()).unwrap_or(self.resume_grace);
                self.heartbeat = to_std(s.heartbeat_interval.as_ref()).unwrap_or(self.heartbeat);
            }
            Event::Offer(o) => self.offer = Some(o.clone()),
            Event::OfferCancelled(c) => {
                if self
                    .offer
                    .as_ref()
                    .is_some_and(|o| o.reservation_id == c.reservation_id)
                {
                    self.offer = None;
                }
            }
            Event::Assignment(a) => {
                if self
                    .offer
                    .as_ref()
                    .is_some_and(|o| o.ticket_id == a.ticket_id)
                {
                    self.offer = None;
                }
                if a.status == AssignmentStatus::Ended as i32 {
                    self.assignments.remove(&a.ticket_id);
                    if self.latest.as_deref() == Some(a.ticket_id.as_str()) {
                        self.latest = self.assignments.keys().next_back().cloned();
                    }
                } else {
                    let mut a = a.clone();
                    if a.ticket_number.is_empty()
                        && let Some(known) = self.assignments.get(&a.ticket_id)
                    {
                        a.ticket_number = known.ticket_number.clone();
                    }
                    self.latest = Some(a.ticket_id.clone());
                    self.assignments.insert(a.ticket_id.clone(), a);
                }
            }
            Event::Presence(p) => {
                self.presence = Some(p.clone());
                if p.state != AgentPresenceState::Available as i32 {
                    // Going away or offline cancels the pending offer.
                    self.offer = None;
                }
            }
            Event::Heartbeat(_) | Event::SessionClosed(_) => {}
        }
    }

    /// Whether the agent is taking offers.
    pub fn available(&self) -> bool {
        self.presence
            .as_ref()
            .is_some_and(|p| p.state == AgentPresenceState::Available as i32)
    }

    /// The ticket number the desktop knows for a ticket id.
    fn number_of(&self, ticket_id: &str) -> Option<&str> {
        self.offer
            .as_ref()
            .filter(|o| o.ticket_id == ticket_id)
            .map(|o| o.ticket_number.as_str())
            .or_else(|| {
                self.assignments
                    .get(ticket_id)
                    .map(|a| a.ticket_number.as_str())
            })
    }
}

fn to_std(d: Option<&prost_types::Duration>) -> Option<Duration> {
    let d = d?;
    let nanos = u32::try_from(d.nanos).ok()?;
    u64::try_from(d.seconds)
        .ok()
        .map(|s| Duration::new(s, nanos))
        .filter(|d| !d.is_zero())
}

/// One event for people (before it is applied to `state`); `None` for heartbeats.
pub fn describe(event: &Event, state: &DeskState, now: OffsetDateTime) -> Option<String> {
    let text = match event {
        Event::SessionStarted(s) => {
            let who = s
                .agent
                .as_ref()
                .map_or_else(String::new, |a| format!(" for {} {}", a.id, a.display_name));
            format!(
                "session   {} {}{who} (survives a broken connection for {})",
                s.session_id,
                if s.resumed { "resumed" } else { "started" },
                fmt::opt_duration(s.resume_grace.as_ref())
            )
        }
        Event::Offer(o) => format_offer(o, now),
        Event::OfferCancelled(c) => {
            let number = state.number_of(&c.ticket_id).unwrap_or(&c.ticket_id);
            let why = match OfferCancelReason::try_from(c.reason) {
                Ok(OfferCancelReason::Expired) => "expired unanswered",
                Ok(OfferCancelReason::TicketGone) => "withdrawn: the ticket went elsewhere",
                Ok(OfferCancelReason::TicketChanged) => "withdrawn: the ticket changed",
                Ok(OfferCancelReason::PresenceChanged) => "withdrawn: presence changed",
                Ok(OfferCancelReason::AssignmentRefused) => {
                    "withdrawn: the ticket service refused the assignment"
                }
                _ => "withdrawn",
            };
            format!("offer     {number} {why}")
        }
        Event::Assignment(a) => {
            // An ENDED assignment may come without its number: the desktop remembers it.
            let number = if a.ticket_number.is_empty() {
                state.number_of(&a.ticket_id).unwrap_or(&a.ticket_id)
            } else {
                &a.ticket_number
            };
            match AssignmentStatus::try_from(a.status) {
                Ok(AssignmentStatus::Ended) => format!(
                    "done      {number} is no longer yours to work (resolved, cancelled, merged \
                     or returned)"
                ),
                Ok(AssignmentStatus::Parked) => {
                    format!("parked    {number} (waiting for the customer or on hold)")
                }
                _ => format!(
                    "assigned  {number} ({}) since {}",
                    fmt::channel(a.channel),
                    fmt::time(a.assign_time.as_ref())
                ),
            }
        }
        Event::Presence(p) => {
            let mut s = format!("presence  {}", presence_text(p));
            if p.state != AgentPresenceState::Available as i32 {
                s.push_str(" · type `available` to take offers");
            }
            s
        }
        Event::Heartbeat(_) => return None,
        Event::SessionClosed(c) => format!(
            "session   closed: {}",
            match SessionCloseReason::try_from(c.reason) {
                Ok(SessionCloseReason::Replaced) =>
                    "another desktop opened a session for this agent",
                Ok(SessionCloseReason::SignedOut) => "signed out",
                Ok(SessionCloseReason::AgentDisabled) => "the agent was disabled",
                _ => "by the server",
            }
        ),
    };
    Some(text)
}

/// An offer: ticket, subject, customer, step, expiry, how to answer.
pub fn format_offer(o: &Offer, now: OffsetDateTime) -> String {
    let customer = o.customer.as_ref().map_or_else(
        || "customer not known yet".to_owned(),
        |c| {
            let mut s = format!(
                "{} · tier {}",
                if c.display_name.is_empty() {
                    "(unresolved caller)"
                } else {
                    &c.display_name
                },
                fmt::tier(c.tier)
            );
            if c.key_account {
                s.push_str(" · key account");
            }
            s
        },
    );
    let step = enum_of!(RoutingStepKind, o.step_kind, "ROUTING_STEP_KIND_").replace('_', " ");
    format!(
        "offer     {}  {}\n          {} · {} · {} · priority {}\n          customer {customer}\n          \
         step {step} · expires {} · reservation {}\n          answer: accept | decline [reason]",
        o.ticket_number,
        o.subject,
        fmt::channel(o.channel),
        o.department,
        fmt::or_dash(&o.category),
        o.priority,
        fmt::time_and_relative(o.expire_time.as_ref(), now),
        o.reservation_id
    )
}

/// What the desktop fetched about an offer's customer.
#[derive(Debug, Default)]
pub struct OfferContext {
    /// The profile, when it could be read.
    pub customer: Option<Customer>,
    /// The newest contacts on their timeline.
    pub interactions: Vec<Interaction>,
    /// Their other recent tickets, newest first.
    pub tickets: Vec<Ticket>,
    /// What could not be read, and why.
    pub problems: Vec<String>,
}

/// The customer behind an offer: profile summary, recent contacts, recent tickets.
pub fn format_context(c: &OfferContext, now: OffsetDateTime) -> String {
    let pad = "          ";
    let mut out = Vec::new();
    if let Some(customer) = &c.customer {
        out.push(format!("profile   {}", customer_line(customer)));
        out.push(format!("{pad}satisfaction: {}", satisfaction(customer)));
        if customer.unreasonable {
            out.push(format!(
                "{pad}WARNING flagged unreasonable: {}",
                customer.unreasonable_note
            ));
        }
        if !customer.preferences.is_empty() {
            out.push(format!(
                "{pad}preferences: {}",
                customer.preferences.join("; ")
            ));
        }
        if !customer.observations.is_empty() {
            out.push(format!(
                "{pad}observations: {}",
                fmt::clip(&customer.observations, 120)
            ));
        }
    }
    if c.customer.is_some() && c.interactions.is_empty() {
        out.push("timeline  no contacts recorded yet".into());
    }
    for (i, item) in c.interactions.iter().enumerate() {
        out.push(format!(
            "{}{} {} {}: {}",
            if i == 0 { "timeline  " } else { pad },
            fmt::relative(item.occur_time.as_ref(), now),
            fmt::channel(item.channel),
            enum_of!(
                tierline_proto::customer::Direction,
                item.direction,
                "DIRECTION_"
            ),
            fmt::clip(&item.summary, 70)
        ));
    }
    if c.customer.is_some() && c.tickets.is_empty() {
        out.push("tickets   no other tickets".into());
    }
    for (i, t) in c.tickets.iter().enumerate() {
        out.push(format!(
            "{}{} {} {} {}",
            if i == 0 { "tickets   " } else { pad },
            t.number,
            fmt::ticket_state(t.state),
            fmt::relative(t.create_time.as_ref(), now),
            fmt::clip(&t.subject, 50)
        ));
    }
    for p in &c.problems {
        out.push(format!("{pad}({p})"));
    }
    out.join("\n")
}

/// Fetches the offer's customer: profile, five newest contacts, five newest other tickets.
async fn context_of(ctx: &Ctx, offer: &Offer) -> Option<OfferContext> {
    let customer_id = offer
        .customer
        .as_ref()
        .map(|c| c.customer_id.clone())
        .filter(|id| !id.is_empty())?;
    let mut c = OfferContext::default();
    let profile = async {
        let mut client = ctx.customers().await?;
        ctx.call(
            Service::Customer,
            client.get_customer(GetCustomerRequest {
                id: customer_id.clone(),
            }),
        )
        .await
    };
    match profile.await {
        Ok(p) => c.customer = Some(p),
        Err(e) => c
            .problems
            .push(format!("profile unavailable: {}", first_line(&e))),
    }
    match recent_interactions(ctx, &customer_id, 5).await {
        Ok(items) => c.interactions = items,
        Err(e) => c
            .problems
            .push(format!("timeline unavailable: {}", first_line(&e))),
    }
    let tickets = async {
        let mut client = ctx.tickets().await?;
        ctx.call(
            Service::Ticket,
            client.list_tickets(ListTicketsRequest {
                page_size: 6,
                customer_id: customer_id.clone(),
                order: TicketOrder::CreateTimeDesc as i32,
                ..Default::default()
            }),
        )
        .await
    };
    match tickets.await {
        Ok(page) => {
            c.tickets = page
                .tickets
                .into_iter()
                .filter(|t| t.id != offer.ticket_id)
                .take(5)
                .collect();
        }
        Err(e) => c
            .problems
            .push(format!("tickets unavailable: {}", first_line(&e))),
    }
    Some(c)
}

fn first_line(e: &CliError) -> String {
    e.render()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// How the main loop goes on after a step.
enum Flow {
    Continue,
    /// Leave with this result.
    Stop(Result<(), CliError>),
}

/// Runs the desktop until `quit`, the end of the input, Ctrl-C or the session's end.
pub async fn run(ctx: &Ctx, args: Desktop) -> Result<(), CliError> {
    let initial = if args.available {
        AgentPresenceState::Available as i32
    } else {
        AgentPresenceState::Unspecified as i32
    };
    let mut stream = open_at_start(ctx, &args.id, initial).await?;
    let mut state = DeskState {
        resume_grace: Duration::from_secs(30),
        heartbeat: Duration::from_secs(10),
        ..Default::default()
    };
    let mut lines = if args.no_input {
        None
    } else {
        Some(read_stdin())
    };
    let mut queue: VecDeque<Line> = VecDeque::new();
    let mut waiting_said = false;
    let mut last_heard = Instant::now();
    loop {
        // Run every queued command that can run now, in order.
        while let Some(next) = queue.front() {
            let needs_offer = matches!(next, Line::Accept(None) | Line::Decline { .. });
            if needs_offer && state.offer.is_none() {
                if !waiting_said {
                    ctx.note("waiting for an offer…");
                    waiting_said = true;
                }
                break;
            }
            waiting_said = false;
            let Some(line) = queue.pop_front() else { break };
            if let Flow::Stop(result) = execute(ctx, &args.id, &mut state, line).await {
                return result;
            }
        }
        if lines.is_none() && !args.no_input && queue.is_empty() {
            // The input ended and everything it asked for is done.
            return sign_out(ctx, &args.id).await;
        }
        let silence = state.heartbeat * 3;
        tokio::select! {
            message = stream.message() => {
                let broken = match message {
                    Ok(Some(m)) => {
                        last_heard = Instant::now();
                        if let Flow::Stop(result) = on_message(ctx, &mut state, m).await {
                            return result;
                        }
                        None
                    }
                    Ok(None) => Some("the routing service ended the stream".to_owned()),
                    Err(status) => Some(crate::error::render_status(&status).trim_start_matches("error: ").to_owned()),
                };
                if let Some(why) = broken {
                    stream = reconnect(ctx, &args.id, &state, &why).await?;
                    last_heard = Instant::now();
                }
            }
            line = recv(&mut lines) => match line {
                Some(text) => match parse_line(&text) {
                    Ok(Some(Line::Help)) => ctx.note(HELP),
                    Ok(Some(command)) => queue.push_back(command),
                    Ok(None) => {}
                    Err(e) => ctx.note(format!("error: {e}")),
                },
                None => lines = None,
            },
            () = tokio::time::sleep_until(last_heard + silence) => {
                let why = format!("nothing heard for {}", fmt::seconds(i64::try_from(silence.as_secs()).unwrap_or(i64::MAX)));
                stream = reconnect(ctx, &args.id, &state, &why).await?;
                last_heard = Instant::now();
            }
            _ = tokio::signal::ctrl_c() => return sign_out(ctx, &args.id).await,
        }
    }
}

async fn recv(lines: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match lines {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Standard input, line by line, read on a thread of its own (a blocking read cannot be
/// cancelled; the process exits without waiting for it). The channel closes at end of input.
fn read_stdin() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.blocking_send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

async fn on_message(ctx: &Ctx, state: &mut DeskState, m: OpenSessionResponse) -> Flow {
    let Some(event) = &m.event else {
        return Flow::Continue;
    };
    let now = OffsetDateTime::now_utc();
    let fresh_offer = match event {
        Event::Offer(o) => state
            .offer
            .as_ref()
            .is_none_or(|cur| cur.reservation_id != o.reservation_id),
        _ => false,
    };
    // What the desktop knows already is not shown again: an offer or assignment re-sent after
    // a reconnect (or after the desktop's own accept), a presence that did not change.
    let repeated = match event {
        Event::Offer(_) => !fresh_offer,
        Event::Assignment(a) => state
            .assignments
            .get(&a.ticket_id)
            .is_some_and(|known| known.status == a.status),
        Event::Presence(p) => state.presence.as_ref().is_some_and(|known| {
            (known.state, known.away_reason, &known.note) == (p.state, p.away_reason, &p.note)
        }),
        _ => false,
    };
    let shown = if repeated {
        None
    } else {
        describe(event, state, now)
    };
    if let Some(text) = shown {
        ctx.event(|| text, || json!({"type": "event", "event": to_json(&m)}));
    }
    state.apply(event);
    if let (true, Event::Offer(o)) = (fresh_offer, event)
        && let Some(c) = context_of(ctx, o).await
    {
        ctx.event(
            || format_context(&c, now),
            || {
                json!({
                    "type": "offer_context",
                    "reservation_id": o.reservation_id,
                    "customer": c.customer.as_ref().map_or(Value::Null, to_json),
                    "interactions": list(&c.interactions),
                    "tickets": list(&c.tickets),
                    "problems": c.problems,
                })
            },
        );
    }
    if let Event::SessionClosed(c) = event {
        return Flow::Stop(match SessionCloseReason::try_from(c.reason) {
            Ok(SessionCloseReason::SignedOut) => Ok(()),
            Ok(SessionCloseReason::Replaced) => Err(CliError::Failed(
                "another desktop took over this agent's session".into(),
            )),
            Ok(SessionCloseReason::AgentDisabled) => {
                Err(CliError::Failed("the agent was disabled".into()))
            }
            _ => Err(CliError::Failed(
                "the routing service closed the session".into(),
            )),
        });
    }
    Flow::Continue
}

async fn execute(ctx: &Ctx, agent: &str, state: &mut DeskState, line: Line) -> Flow {
    let result = match line {
        Line::Accept(reservation) => {
            let Some(reservation) =
                reservation.or_else(|| state.offer.as_ref().map(|o| o.reservation_id.clone()))
            else {
                return Flow::Continue;
            };
            let r = accept(ctx, agent, &reservation).await;
            if state
                .offer
                .as_ref()
                .is_some_and(|o| o.reservation_id == reservation)
            {
                // Accepted, or no longer acceptable: either way the offer is answered.
                state.offer = None;
            }
            r.map(|a| {
                state.latest = Some(a.ticket_id.clone());
                state.assignments.insert(a.ticket_id.clone(), a.clone());
                ctx.event(
                    || format!("accepted  {}", format_assignment(&a)),
                    || json!({"type": "accepted", "assignment": to_json(&a)}),
                );
            })
        }
        Line::Decline { reason, note } => {
            let Some(offer) = state.offer.take() else {
                return Flow::Continue;
            };
            decline(ctx, agent, &offer.reservation_id, reason, note)
                .await
                .map(|o| {
                    ctx.event(
                        || format!("declined  {}", o.ticket_number),
                        || json!({"type": "declined", "offer": to_json(&o)}),
                    );
                })
        }
        Line::Resolve { ticket, summary } => match ticket.or_else(|| state.latest.clone()) {
            None => Err(CliError::Usage(
                "no ticket to resolve: nothing is assigned; name one (resolve T-1234-5678 …)"
                    .into(),
            )),
            Some(ticket) => resolve(ctx, &ticket, agent, &summary).await.map(|t| {
                ctx.event(
                    || format!("resolved  {}", format_resolved(&t)),
                    || json!({"type": "resolved", "ticket": to_json(&t)}),
                );
            }),
        },
        Line::Away { reason, note } => {
            presence_change(ctx, agent, AgentPresenceState::Away as i32, reason, note).await
        }
        Line::Available => {
            presence_change(
                ctx,
                agent,
                AgentPresenceState::Available as i32,
                0,
                String::new(),
            )
            .await
        }
        Line::Quit => return Flow::Stop(sign_out(ctx, agent).await),
        Line::Help => {
            ctx.note(HELP);
            Ok(())
        }
    };
    if let Err(e) = result {
        // A failed command is reported; the desktop carries on.
        if ctx.json {
            eprintln!("{}", e.to_json());
        } else {
            eprintln!("{}", e.render());
        }
    }
    Flow::Continue
}

async fn presence_change(
    ctx: &Ctx,
    agent: &str,
    state: i32,
    reason: i32,
    note: String,
) -> Result<(), CliError> {
    // The stream reports the new presence; the command only has to succeed.
    set_presence(ctx, agent, state, reason, note)
        .await
        .map(|_| ())
}

/// Signs the agent out (OFFLINE, which also closes the session) so a pending offer goes to
/// someone else at once rather than after the resume grace.
async fn sign_out(ctx: &Ctx, agent: &str) -> Result<(), CliError> {
    match set_presence(
        ctx,
        agent,
        AgentPresenceState::Offline as i32,
        0,
        String::new(),
    )
    .await
    {
        Ok(_) => ctx.note(format!("signed out {agent}")),
        Err(e) => ctx.note(format!(
            "could not sign out ({}); the session lapses by itself",
            first_line(&e)
        )),
    }
    Ok(())
}

async fn open(
    ctx: &Ctx,
    agent: &str,
    session_id: &str,
    presence: i32,
) -> Result<Streaming<OpenSessionResponse>, CliError> {
    let mut client = ctx.desktop().await?;
    ctx.call(
        Service::Routing,
        client.open_session(OpenSessionRequest {
            agent_id: agent.to_owned(),
            session_id: session_id.to_owned(),
            initial_presence: presence,
        }),
    )
    .await
}

fn retryable(e: &CliError) -> bool {
    match e {
        CliError::Unreachable { .. } => true,
        CliError::Call { status, .. } => {
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        }
        _ => false,
    }
}

/// The first OpenSession: a router that is rebuilding its live state answers UNAVAILABLE for
/// a moment, so that is retried until the deadline; an unreachable service is not.
async fn open_at_start(
    ctx: &Ctx,
    agent: &str,
    presence: i32,
) -> Result<Streaming<OpenSessionResponse>, CliError> {
    let deadline = Instant::now() + ctx.timeout;
    loop {
        match open(ctx, agent, "", presence).await {
            Err(e)
                if e.code() == Some(Code::Unavailable)
                    && Instant::now() + Duration::from_millis(200) < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Opens the session again with its id, backing off, for as long as the session survives.
async fn reconnect(
    ctx: &Ctx,
    agent: &str,
    state: &DeskState,
    why: &str,
) -> Result<Streaming<OpenSessionResponse>, CliError> {
    ctx.note(format!(
        "connection lost ({why}); reconnecting with session {}",
        state.session_id
    ));
    let presence = if state.available() {
        AgentPresenceState::Available as i32
    } else {
        AgentPresenceState::Unspecified as i32
    };
    let deadline = Instant::now() + state.resume_grace.max(Duration::from_secs(5));
    let mut delay = Duration::from_millis(250);
    loop {
        match open(ctx, agent, &state.session_id, presence).await {
            Ok(stream) => {
                ctx.note("reconnected");
                return Ok(stream);
            }
            Err(e) if retryable(&e) && Instant::now() + delay < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                ctx.note("gave up reconnecting: the session's resume grace has passed");
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common::{Channel, Tier};
    use tierline_proto::routing::{CustomerSummary, OfferCancelled, SessionStarted};

    fn offer(reservation: &str) -> Offer {
        Offer {
            reservation_id: reservation.into(),
            agent_id: "agent-7".into(),
            ticket_id: "t-1".into(),
            ticket_number: "T-4821-7730".into(),
            channel: Channel::Voice as i32,
            department: "quality_assurance".into(),
            subject: "Product quality".into(),
            category: "product_quality".into(),
            priority: 320,
            customer: Some(CustomerSummary {
                customer_id: "c-1".into(),
                display_name: "Ada Okafor".into(),
                tier: Tier::A as i32,
                key_account: true,
                account_manager_id: String::new(),
            }),
            step_kind: RoutingStepKind::Department as i32,
            expire_time: Some(prost_types::Timestamp {
                seconds: 20,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn commands_are_read_with_their_arguments() {
        assert_eq!(parse_line("accept"), Ok(Some(Line::Accept(None))));
        assert_eq!(
            parse_line("  ACCEPT r-1 "),
            Ok(Some(Line::Accept(Some("r-1".into()))))
        );
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("# a comment"), Ok(None));
        assert_eq!(
            parse_line("decline lacks-skill no German"),
            Ok(Some(Line::Decline {
                reason: DeclineReasonArg::LacksSkill.wire(),
                note: "no German".into()
            }))
        );
        assert_eq!(
            parse_line("decline busy right now"),
            Ok(Some(Line::Decline {
                reason: DeclineReasonArg::Other.wire(),
                note: "busy right now".into()
            }))
        );
        assert_eq!(
            parse_line("decline"),
            Ok(Some(Line::Decline {
                reason: 0,
                note: String::new()
            }))
        );
        assert_eq!(
            parse_line("away wrap-up notes for T-1"),
            Ok(Some(Line::Away {
                reason: AwayReasonArg::WrapUp.wire(),
                note: "notes for T-1".into()
            }))
        );
        assert!(parse_line("away").is_err());
        assert_eq!(parse_line("available"), Ok(Some(Line::Available)));
        assert_eq!(parse_line("quit"), Ok(Some(Line::Quit)));
        assert!(parse_line("dance").is_err_and(|e| e.contains("unknown command")));
    }

    #[test]
    fn resolve_takes_a_ticket_only_when_the_first_word_is_one() {
        assert_eq!(
            parse_line("resolve T-4821-7730 replaced the kettle"),
            Ok(Some(Line::Resolve {
                ticket: Some("T-4821-7730".into()),
                summary: "replaced the kettle".into()
            }))
        );
        assert_eq!(
            parse_line("resolve replaced the kettle"),
            Ok(Some(Line::Resolve {
                ticket: None,
                summary: "replaced the kettle".into()
            }))
        );
        assert!(parse_line("resolve T-4821-7730").is_err());
        assert!(parse_line("resolve").is_err());
    }

    #[test]
    fn the_state_follows_offers_assignments_and_presence() {
        let mut s = DeskState::default();
        s.apply(&Event::SessionStarted(SessionStarted {
            session_id: "s-1".into(),
            resume_grace: Some(prost_types::Duration {
                seconds: 30,
                nanos: 0,
            }),
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 10,
                nanos: 0,
            }),
            ..Default::default()
        }));
        assert_eq!(s.session_id, "s-1");
        assert_eq!(s.heartbeat, Duration::from_secs(10));
        s.apply(&Event::Presence(AgentPresence {
            state: AgentPresenceState::Available as i32,
            ..Default::default()
        }));
        assert!(s.available());
        s.apply(&Event::Offer(offer("r-1")));
        assert_eq!(s.number_of("t-1"), Some("T-4821-7730"));
        // A cancellation of another reservation leaves the offer.
        s.apply(&Event::OfferCancelled(OfferCancelled {
            reservation_id: "r-0".into(),
            ticket_id: "t-0".into(),
            reason: OfferCancelReason::Expired as i32,
        }));
        assert!(s.offer.is_some());
        s.apply(&Event::Assignment(Assignment {
            ticket_id: "t-1".into(),
            ticket_number: "T-4821-7730".into(),
            status: AssignmentStatus::Active as i32,
            ..Default::default()
        }));
        assert!(s.offer.is_none());
        assert_eq!(s.latest.as_deref(), Some("t-1"));
        s.apply(&Event::Assignment(Assignment {
            ticket_id: "t-1".into(),
            status: AssignmentStatus::Ended as i32,
            ..Default::default()
        }));
        assert!(s.assignments.is_empty());
        assert_eq!(s.latest, None);
        s.apply(&Event::Offer(offer("r-2")));
        s.apply(&Event::Presence(AgentPresence {
            state: AgentPresenceState::Away as i32,
            ..Default::default()
        }));
        assert!(s.offer.is_none(), "going away cancels the offer");
    }

    #[test]
    fn an_offer_shows_ticket_customer_step_and_expiry() {
        let text = format_offer(&offer("r-1"), OffsetDateTime::UNIX_EPOCH);
        assert!(
            text.starts_with("offer     T-4821-7730  Product quality"),
            "{text}"
        );
        assert!(
            text.contains("voice · quality_assurance · product_quality · priority 320"),
            "{text}"
        );
        assert!(
            text.contains("customer Ada Okafor · tier A · key account"),
            "{text}"
        );
        assert!(
            text.contains(
                "step department · expires 1970-01-01 00:00:20Z (in 20s) · reservation r-1"
            ),
            "{text}"
        );
    }

    #[test]
    fn events_read_as_lines_and_heartbeats_are_silent() {
        let mut s = DeskState::default();
        s.apply(&Event::Offer(offer("r-1")));
        let now = OffsetDateTime::UNIX_EPOCH;
        let cancelled = Event::OfferCancelled(OfferCancelled {
            reservation_id: "r-1".into(),
            ticket_id: "t-1".into(),
            reason: OfferCancelReason::Expired as i32,
        });
        assert_eq!(
            describe(&cancelled, &s, now).as_deref(),
            Some("offer     T-4821-7730 expired unanswered")
        );
        assert_eq!(
            describe(&Event::Heartbeat(Default::default()), &s, now),
            None
        );
        s.apply(&Event::Assignment(Assignment {
            ticket_id: "t-1".into(),
            ticket_number: "T-4821-7730".into(),
            status: AssignmentStatus::Active as i32,
            ..Default::default()
        }));
        let ended = Event::Assignment(Assignment {
            ticket_id: "t-1".into(),
            status: AssignmentStatus::Ended as i32,
            ..Default::default()
        });
        assert!(
            describe(&ended, &s, now)
                .is_some_and(|t| t.starts_with("done      T-4821-7730 is no longer yours")),
            "the number is remembered"
        );
        let away = Event::Presence(AgentPresence {
            state: AgentPresenceState::Away as i32,
            away_reason: tierline_proto::routing::AwayReason::NotReady as i32,
            ..Default::default()
        });
        assert_eq!(
            describe(&away, &s, now).as_deref(),
            Some("presence  away (not_ready) · type `available` to take offers")
        );
    }

    #[test]
    fn the_offer_context_lists_profile_timeline_and_tickets() {
        let c = OfferContext {
            customer: Some(Customer {
                display_name: "Ada Okafor".into(),
                tier: Tier::A as i32,
                unreasonable: true,
                unreasonable_note: "shouts".into(),
                ..Default::default()
            }),
            interactions: vec![Interaction {
                channel: Channel::Voice as i32,
                direction: tierline_proto::customer::Direction::Inbound as i32,
                summary: "the kettle leaks".into(),
                ..Default::default()
            }],
            tickets: vec![Ticket {
                number: "T-1111-2222".into(),
                state: tierline_proto::ticket::TicketState::Closed as i32,
                subject: "Billing".into(),
                ..Default::default()
            }],
            problems: vec!["tickets unavailable: x".into()],
        };
        let text = format_context(&c, OffsetDateTime::UNIX_EPOCH);
        assert!(
            text.contains("profile   Ada Okafor · tier A · FLAGGED UNREASONABLE"),
            "{text}"
        );
        assert!(
            text.contains("WARNING flagged unreasonable: shouts"),
            "{text}"
        );
        assert!(
            text.contains("timeline  - voice inbound: the kettle leaks"),
            "{text}"
        );
        assert!(
            text.contains("tickets   T-1111-2222 CLOSED - Billing"),
            "{text}"
        );
        assert!(text.contains("(tickets unavailable: x)"), "{text}");
    }
}
