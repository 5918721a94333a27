//! Whole stories against the real binaries, with agent desktops on `OpenSession` streams. Each
//! story runs twice (see [`stories!`] at the end): in the production layout (`tierline-customer`,
//! `tierline-ticket` and `tierline-routing` started as an operator runs them, each on a fresh
//! database, the router on a Redis key prefix of its own) and in dev mode (`tierline dev`, one
//! process on SQLite files and the in-process routing state). See `tierline_tests::Stack`.
//!
//! Each story drives only the public contracts (the protos) and waits for what it expects with
//! a bounded deadline, never a blind sleep; a story takes a few seconds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tierline_proto::common::{Channel, IdentityKind, IdentityRef, Tier};
use tierline_proto::customer as cpb;
use tierline_proto::prost_types::Timestamp;
use tierline_proto::routing as rpb;
use tierline_proto::routing::agent_desktop_service_client::AgentDesktopServiceClient;
use tierline_proto::routing::open_session_response::Event;
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;
use tierline_tests::{Mode, Stack, StackOptions};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::transport::Channel as GrpcChannel;

/// The longest a story waits for something the services should do at once (an offer, a
/// hand-over, a relay); they normally take milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// Tickets of category "billing" belong to this department (the default catalog).
const DEPARTMENT: &str = "customer_service";

// ---------------------------------------------------------------------------------------------
// Helpers: customers, calls, agents, ticket changes.

/// Creates a customer owning `phone`, with a manual tier `tier`; `manager` makes them a key
/// account with that account manager.
async fn customer(
    stack: &mut Stack,
    name: &str,
    phone: &str,
    tier: Tier,
    manager: Option<&str>,
) -> Result<cpb::Customer> {
    let created = stack
        .customers
        .create_customer(cpb::CreateCustomerRequest {
            customer: Some(cpb::Customer {
                display_name: name.into(),
                key_account: manager.is_some(),
                account_manager_id: manager.unwrap_or_default().into(),
                ..Default::default()
            }),
            identities: vec![cpb::Identity {
                kind: IdentityKind::Phone as i32,
                value: phone.into(),
                ..Default::default()
            }],
            idempotency_key: format!("story-customer-{phone}"),
        })
        .await
        .with_context(|| format!("CreateCustomer {name}"))?
        .into_inner();
    let tiered = stack
        .customers
        .set_tier_override(cpb::SetTierOverrideRequest {
            customer_id: created.id.clone(),
            tier: tier as i32,
            reason: "set by hand for the story".into(),
            expected_version: None,
        })
        .await
        .with_context(|| format!("SetTierOverride {name}"))?
        .into_inner();
    ensure!(tiered.tier == tier as i32, "tier in force: {tiered:?}");
    Ok(tiered)
}

/// A phone call through the IVR: a voice ticket for the calling number.
async fn call(
    mut tickets: TicketServiceClient<GrpcChannel>,
    call_id: &str,
    phone: &str,
) -> Result<tpb::Ticket> {
    tickets
        .create_ticket(tpb::CreateTicketRequest {
            idempotency_key: call_id.into(),
            customer: Some(tpb::create_ticket_request::Customer::CallerIdentity(
                IdentityRef {
                    kind: IdentityKind::Phone as i32,
                    value: phone.into(),
                    region_code: String::new(),
                },
            )),
            channel: Channel::Voice as i32,
            category: "billing".into(),
            description: format!("{call_id}: charged twice for one order"),
            ..Default::default()
        })
        .await
        .with_context(|| format!("CreateTicket {call_id}"))?
        .into_inner()
        .ticket
        .context("CreateTicket answered without a ticket")
}

/// Creates agent `id` serving `departments`, in `team` (may be empty), taking one call at a time.
async fn agent(stack: &mut Stack, id: &str, departments: &[&str], team: &str) -> Result<()> {
    stack
        .agents
        .upsert_agent(rpb::UpsertAgentRequest {
            agent: Some(rpb::Agent {
                id: id.into(),
                display_name: format!("Agent {id}"),
                departments: departments.iter().map(|d| (*d).to_owned()).collect(),
                team_id: team.into(),
                capacities: vec![rpb::ChannelCapacity {
                    channel: Channel::Voice as i32,
                    max_active_tickets: 1,
                }],
                ..Default::default()
            }),
            update_mask: None,
            expected_version: None,
        })
        .await
        .with_context(|| format!("UpsertAgent {id}"))?;
    Ok(())
}

async fn get_ticket(
    tickets: &mut TicketServiceClient<GrpcChannel>,
    id: &str,
) -> Result<tpb::Ticket> {
    Ok(tickets
        .get_ticket(tpb::GetTicketRequest {
            key: Some(tpb::get_ticket_request::Key::TicketId(id.into())),
        })
        .await
        .with_context(|| format!("GetTicket {id}"))?
        .into_inner())
}

/// A request made by agent `agent` (the `tierline-actor` metadata).
fn as_agent<T>(agent: &str, message: T) -> Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("tierline-actor", format!("agent:{agent}").parse()?);
    Ok(request)
}

/// The agent starts work on an assigned ticket and resolves it.
async fn work_and_resolve(stack: &mut Stack, ticket_id: &str, agent: &str) -> Result<tpb::Ticket> {
    stack
        .tickets
        .transition_ticket(as_agent(
            agent,
            tpb::TransitionTicketRequest {
                ticket_id: ticket_id.into(),
                target_state: tpb::TicketState::InProgress as i32,
                ..Default::default()
            },
        )?)
        .await
        .with_context(|| format!("{ticket_id} -> IN_PROGRESS"))?;
    Ok(stack
        .tickets
        .transition_ticket(as_agent(
            agent,
            tpb::TransitionTicketRequest {
                ticket_id: ticket_id.into(),
                target_state: tpb::TicketState::Resolved as i32,
                resolution_summary: "refunded the second charge".into(),
                ..Default::default()
            },
        )?)
        .await
        .with_context(|| format!("{ticket_id} -> RESOLVED"))?
        .into_inner())
}

/// What a poll found: done with a value, or still waiting (and what it saw).
enum Check<T> {
    Done(T),
    Waiting(String),
}

/// Polls `probe` every 100 ms until it is done, at most `within`; the error names `what` and
/// the last thing seen.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<Check<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        match probe().await? {
            Check::Done(value) => return Ok(value),
            Check::Waiting(seen) if Instant::now() >= deadline => {
                bail!("{what}: not within {within:?}; last seen: {seen}")
            }
            Check::Waiting(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Waits until the router has taken the ticket into its queue (QUEUED in the ticket service).
async fn queued(stack: &Stack, ticket_id: &str) -> Result<tpb::Ticket> {
    let mut tickets = stack.tickets.clone();
    eventually(&format!("ticket {ticket_id} QUEUED"), WAIT, async || {
        let t = get_ticket(&mut tickets, ticket_id).await?;
        Ok(if t.state == tpb::TicketState::Queued as i32 {
            Check::Done(t)
        } else {
            Check::Waiting(format!(
                "state {:?}, customer {:?}",
                t.state(),
                t.customer_resolution()
            ))
        })
    })
    .await
}

fn time_of(ts: Option<&Timestamp>, what: &str) -> Result<(i64, i32)> {
    let ts = ts.with_context(|| format!("{what} is unset"))?;
    Ok((ts.seconds, ts.nanos))
}

fn reason_of(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// An agent desktop: an OpenSession stream read by a task into a queue of events.

struct Desktop {
    agent: String,
    session_id: String,
    resumed: bool,
    client: AgentDesktopServiceClient<GrpcChannel>,
    events: mpsc::UnboundedReceiver<Event>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Desktop {
    fn drop(&mut self) {
        // Dropping the stream resets it: the router sees the desktop go away.
        self.reader.abort();
    }
}

impl Desktop {
    /// Signs `agent` in AVAILABLE with a new session.
    async fn sign_in(stack: &Stack, agent: &str) -> Result<Self> {
        Self::open(stack, agent, "", rpb::AgentPresenceState::Available).await
    }

    /// Opens a session (`session_id` empty for a new one) and reads its SessionStarted.
    async fn open(
        stack: &Stack,
        agent: &str,
        session_id: &str,
        presence: rpb::AgentPresenceState,
    ) -> Result<Self> {
        let mut client = stack.desktops.clone();
        let mut stream = client
            .open_session(rpb::OpenSessionRequest {
                agent_id: agent.into(),
                session_id: session_id.into(),
                initial_presence: presence as i32,
            })
            .await
            .with_context(|| format!("OpenSession {agent}"))?
            .into_inner();
        let first = tokio::time::timeout(WAIT, stream.next())
            .await
            .with_context(|| format!("{agent}: no first message"))?
            .with_context(|| format!("{agent}: the stream ended at once"))?
            .with_context(|| format!("{agent}: the stream failed"))?;
        let Some(Event::SessionStarted(started)) = first.event else {
            bail!("{agent}: the first message is not SessionStarted: {first:?}");
        };
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Some(event) = message.event
                    && tx.send(event).is_err()
                {
                    break;
                }
            }
        });
        Ok(Desktop {
            agent: agent.into(),
            session_id: started.session_id,
            resumed: started.resumed,
            client,
            events,
            reader,
        })
    }

    /// The next event `pick` accepts within `within`, skipping the others.
    async fn next<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(Event) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // The queue is read before the deadline is checked, so a zero wait still sees what
            // has already arrived.
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => {
                    if let Some(found) = pick(event) {
                        return Some(found);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every event until `done` holds for those received, within `within`.
    async fn until(
        &mut self,
        within: Duration,
        done: impl Fn(&[Event]) -> bool,
    ) -> Result<Vec<Event>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        while !done(&seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => seen.push(event),
                Ok(None) => bail!("{}: the stream ended; saw {seen:?}", self.agent),
                Err(_) => bail!("{}: not within {within:?}; saw {seen:?}", self.agent),
            }
        }
        Ok(seen)
    }

    async fn offer(&mut self, within: Duration) -> Result<rpb::Offer> {
        self.next(within, offer_of)
            .await
            .with_context(|| format!("no offer to {} within {within:?}", self.agent))
    }

    /// Fails if an offer arrives within `within` (or has arrived unread).
    async fn no_offer(&mut self, within: Duration) -> Result<()> {
        if let Some(offer) = self.next(within, offer_of).await {
            bail!("unexpected offer to {}: {offer:?}", self.agent);
        }
        Ok(())
    }

    async fn accept(&mut self, offer: &rpb::Offer) -> Result<rpb::Assignment> {
        Ok(self
            .client
            .accept_offer(rpb::AcceptOfferRequest {
                agent_id: self.agent.clone(),
                reservation_id: offer.reservation_id.clone(),
            })
            .await
            .with_context(|| format!("{} AcceptOffer", self.agent))?
            .into_inner())
    }

    async fn decline(&mut self, offer: &rpb::Offer) -> Result<rpb::Offer> {
        Ok(self
            .client
            .decline_offer(rpb::DeclineOfferRequest {
                agent_id: self.agent.clone(),
                reservation_id: offer.reservation_id.clone(),
                reason: rpb::DeclineReason::NotReady as i32,
                note: String::new(),
            })
            .await
            .with_context(|| format!("{} DeclineOffer", self.agent))?
            .into_inner())
    }
}

fn offer_of(event: Event) -> Option<rpb::Offer> {
    match event {
        Event::Offer(offer) => Some(offer),
        _ => None,
    }
}

/// The first offer to either desktop: which one (0 or 1) and the offer.
async fn first_offer(a: &mut Desktop, b: &mut Desktop) -> Result<(usize, rpb::Offer)> {
    tokio::select! {
        Some(offer) = a.next(WAIT, offer_of) => Ok((0, offer)),
        Some(offer) = b.next(WAIT, offer_of) => Ok((1, offer)),
        else => bail!("no offer to {} or {} within {WAIT:?}", a.agent, b.agent),
    }
}

async fn explain(stack: &mut Stack, ticket_id: &str) -> Result<rpb::TicketExplanation> {
    Ok(stack
        .routing
        .explain_ticket(rpb::ExplainTicketRequest {
            ticket_id: ticket_id.into(),
        })
        .await
        .with_context(|| format!("ExplainTicket {ticket_id}"))?
        .into_inner())
}

fn verdict<'a>(
    explanation: &'a rpb::TicketExplanation,
    agent: &str,
) -> Result<&'a rpb::AgentVerdict> {
    explanation
        .agents
        .iter()
        .find(|v| v.agent_id == agent)
        .with_context(|| format!("no verdict for {agent} in {explanation:?}"))
}

fn has_reason(verdict: &rpb::AgentVerdict, reason: rpb::IneligibilityReason) -> bool {
    verdict.reasons.contains(&(reason as i32))
}

// ---------------------------------------------------------------------------------------------
// The stories.

/// Callers of tiers A, B and C complain at about the same time while nobody is online; the one
/// agent who then signs in (one call at a time) is offered their calls by pickup deadline: A,
/// then (after resolving it) B, then C.
async fn callers_of_each_tier_complain_at_once_and_the_agent_gets_them_in_deadline_order(
    mode: Mode,
) -> Result<()> {
    let started = Instant::now();
    let mut stack = Stack::start_in(mode, StackOptions::default()).await?;
    let phones = [
        (Tier::A, "020 7946 0101"),
        (Tier::B, "020 7946 0102"),
        (Tier::C, "020 7946 0103"),
    ];
    let mut customers = Vec::new();
    for (tier, phone) in phones {
        customers.push(customer(&mut stack, &format!("Caller {tier:?}"), phone, tier, None).await?);
    }
    // The three call at once, C's call sent first.
    let (c, b, a) = tokio::try_join!(
        call(stack.tickets.clone(), "call-tier-c", phones[2].1),
        call(stack.tickets.clone(), "call-tier-b", phones[1].1),
        call(stack.tickets.clone(), "call-tier-a", phones[0].1),
    )?;
    for (ticket, tier, customer) in [
        (&a, Tier::A, &customers[0]),
        (&b, Tier::B, &customers[1]),
        (&c, Tier::C, &customers[2]),
    ] {
        let t = queued(&stack, &ticket.id).await?;
        assert_eq!(t.customer_id, customer.id, "{tier:?} caller recognised");
        assert_eq!(
            t.routing.as_ref().map(|r| r.tier),
            Some(tier as i32),
            "routed by the caller's tier: {t:?}"
        );
    }
    // In the queue, by deadline.
    for (rank, ticket) in [&a, &b, &c].into_iter().enumerate() {
        let explanation = explain(&mut stack, &ticket.id).await?;
        assert_eq!(explanation.rank, rank as i32 + 1, "{explanation:?}");
    }

    agent(&mut stack, "ana", &[DEPARTMENT], "").await?;
    let mut ana = Desktop::sign_in(&stack, "ana").await?;
    let mut offered = Vec::new();
    for _ in 0..3 {
        let offer = ana.offer(WAIT).await?;
        // One call at a time: nothing else while this one is pending.
        let assignment = ana.accept(&offer).await?;
        assert_eq!(assignment.ticket_id, offer.ticket_id);
        ana.no_offer(Duration::from_millis(300)).await?;
        work_and_resolve(&mut stack, &offer.ticket_id, "ana").await?;
        offered.push(offer);
    }
    let order: Vec<&str> = offered.iter().map(|o| o.ticket_id.as_str()).collect();
    assert_eq!(
        order,
        [&a.id, &b.id, &c.id],
        "offers in deadline order A, B, C"
    );
    let tiers: Vec<i32> = offered
        .iter()
        .map(|o| o.customer.as_ref().map_or(0, |c| c.tier))
        .collect();
    assert_eq!(tiers, [Tier::A as i32, Tier::B as i32, Tier::C as i32]);
    let deadlines = offered
        .iter()
        .map(|o| time_of(o.pickup_due_time.as_ref(), "pickup_due_time"))
        .collect::<Result<Vec<_>>>()?;
    assert!(
        deadlines.is_sorted(),
        "pickup deadlines ascending: {deadlines:?}"
    );

    drop(ana);
    stack.stop().await?;
    println!("story tiers-at-once: {:?}", started.elapsed());
    Ok(())
}

/// A key-account call goes to the account manager first; declined, it waits for the key-account
/// team's step (3 s here) rather than going to the team or the department at once, and then
/// goes to the team member (who serves another department).
async fn a_key_account_call_goes_to_the_account_manager_first_and_to_the_team_at_its_step(
    mode: Mode,
) -> Result<()> {
    let started = Instant::now();
    let mut stack = Stack::start_in(
        mode,
        StackOptions {
            routing_config: r#"
[routing.steps]
key_account = [
  { target = "account_manager", after = "0s" },
  { target = "team", team_id = "key-accounts", after = "3s" },
  { target = "department", after = "6s" },
]
"#
            .into(),
            ..Default::default()
        },
    )
    .await?;
    agent(&mut stack, "manager", &["sales"], "").await?;
    agent(&mut stack, "teammate", &["sales"], "key-accounts").await?;
    agent(&mut stack, "generalist", &[DEPARTMENT], "").await?;
    // The account manager must be online for the first step to be theirs.
    let mut manager = Desktop::sign_in(&stack, "manager").await?;
    let mut teammate = Desktop::sign_in(&stack, "teammate").await?;
    let mut generalist = Desktop::sign_in(&stack, "generalist").await?;
    let okafor = customer(
        &mut stack,
        "Okafor Holdings",
        "020 7946 0201",
        Tier::A,
        Some("manager"),
    )
    .await?;
    assert!(okafor.key_account);

    let ticket = call(stack.tickets.clone(), "call-key-account", "020 7946 0201").await?;
    let offer = manager.offer(WAIT).await?;
    assert_eq!(offer.ticket_id, ticket.id);
    assert_eq!(
        offer.step_kind,
        rpb::RoutingStepKind::AccountManager as i32,
        "{offer:?}"
    );
    let summary = offer.customer.clone().context("offer without customer")?;
    assert!(summary.key_account, "{summary:?}");
    assert_eq!(summary.account_manager_id, "manager");
    let declined = manager.decline(&offer).await?;
    assert_eq!(declined.status, rpb::OfferStatus::Declined as i32);

    // Still in the manager's step: the team and the department wait for theirs.
    let explanation = explain(&mut stack, &ticket.id).await?;
    let kinds: Vec<i32> = explanation.steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            rpb::RoutingStepKind::AccountManager as i32,
            rpb::RoutingStepKind::Team as i32,
            rpb::RoutingStepKind::Department as i32,
        ],
        "{explanation:?}"
    );
    let team_step = time_of(explanation.steps[1].start_time.as_ref(), "team step start")?;
    if explanation.current_step_index == 0 {
        assert!(has_reason(
            verdict(&explanation, "manager")?,
            rpb::IneligibilityReason::DeclinedBefore
        ));
        assert!(has_reason(
            verdict(&explanation, "teammate")?,
            rpb::IneligibilityReason::NotInStep
        ));
        assert!(has_reason(
            verdict(&explanation, "generalist")?,
            rpb::IneligibilityReason::NotInStep
        ));
    }

    let offer = teammate.offer(WAIT).await?;
    assert_eq!(offer.ticket_id, ticket.id);
    assert_eq!(
        offer.step_kind,
        rpb::RoutingStepKind::Team as i32,
        "{offer:?}"
    );
    let offered_at = time_of(offer.offer_time.as_ref(), "offer_time")?;
    assert!(
        offered_at >= team_step,
        "offered to the team at {offered_at:?}, before its step at {team_step:?}"
    );
    generalist.no_offer(Duration::ZERO).await?;
    manager.no_offer(Duration::ZERO).await?;
    let assignment = teammate.accept(&offer).await?;
    assert_eq!(assignment.ticket_id, ticket.id);
    let t = get_ticket(&mut stack.tickets, &ticket.id).await?;
    assert_eq!(t.state, tpb::TicketState::Assigned as i32);
    assert_eq!(t.assigned_agent_id, "teammate");
    generalist.no_offer(Duration::from_millis(300)).await?;

    drop((manager, teammate, generalist));
    stack.stop().await?;
    println!("story key-account: {:?}", started.elapsed());
    Ok(())
}

/// Declining passes the call to the next agent; the decliner is never offered it again, even
/// when nobody else takes it; a newcomer then gets it.
async fn a_declined_call_moves_to_the_next_agent_and_never_back_to_the_decliner(
    mode: Mode,
) -> Result<()> {
    let started = Instant::now();
    let mut stack = Stack::start_in(mode, StackOptions::default()).await?;
    agent(&mut stack, "ana", &[DEPARTMENT], "").await?;
    agent(&mut stack, "bo", &[DEPARTMENT], "").await?;
    agent(&mut stack, "cy", &[DEPARTMENT], "").await?;
    let mut desks = [
        Desktop::sign_in(&stack, "ana").await?,
        Desktop::sign_in(&stack, "bo").await?,
    ];
    let ticket = call(stack.tickets.clone(), "call-decline", "020 7946 0301").await?;

    let [x, y] = &mut desks;
    let (first, offer) = first_offer(x, y).await?;
    assert_eq!(offer.ticket_id, ticket.id);
    let second = 1 - first;
    desks[first].decline(&offer).await?;
    let next = desks[second].offer(WAIT).await?;
    assert_eq!(
        next.ticket_id, ticket.id,
        "the declined call goes to the other agent"
    );
    assert_ne!(next.reservation_id, offer.reservation_id);
    desks[first].no_offer(Duration::ZERO).await?;

    // The other agent declines too: nobody may be offered it now.
    desks[second].decline(&next).await?;
    let [x, y] = &mut desks;
    let quiet = tokio::try_join!(
        x.no_offer(Duration::from_millis(1500)),
        y.no_offer(Duration::from_millis(1500))
    );
    quiet?;
    let explanation = explain(&mut stack, &ticket.id).await?;
    assert_eq!(explanation.eligible_agent_count, 0, "{explanation:?}");
    for who in ["ana", "bo"] {
        assert!(
            has_reason(
                verdict(&explanation, who)?,
                rpb::IneligibilityReason::DeclinedBefore
            ),
            "{who}: {explanation:?}"
        );
    }

    // A third agent signs in and takes it.
    let mut cy = Desktop::sign_in(&stack, "cy").await?;
    let offer = cy.offer(WAIT).await?;
    assert_eq!(offer.ticket_id, ticket.id);
    cy.accept(&offer).await?;
    let t = get_ticket(&mut stack.tickets, &ticket.id).await?;
    assert_eq!(t.assigned_agent_id, "cy");
    for desk in &mut desks {
        desk.no_offer(Duration::ZERO).await?;
    }

    drop((desks, cy));
    stack.stop().await?;
    println!("story decline: {:?}", started.elapsed());
    Ok(())
}

/// An agent with an accepted call loses the desktop's connection and reconnects with the session
/// id within the grace period: the session resumes, presence is kept and the assignment is sent
/// again.
async fn an_agent_who_reconnects_within_the_grace_period_keeps_the_assignment(
    mode: Mode,
) -> Result<()> {
    let started = Instant::now();
    let mut stack = Stack::start_in(mode, StackOptions::default()).await?;
    agent(&mut stack, "ana", &[DEPARTMENT], "").await?;
    let mut ana = Desktop::sign_in(&stack, "ana").await?;
    let ticket = call(stack.tickets.clone(), "call-reconnect", "020 7946 0401").await?;
    let offer = ana.offer(WAIT).await?;
    assert_eq!(offer.ticket_id, ticket.id);
    ana.accept(&offer).await?;
    ana.until(WAIT, |seen| {
        seen.iter()
            .any(|e| matches!(e, Event::Assignment(a) if a.ticket_id == ticket.id))
    })
    .await?;
    let session_id = ana.session_id.clone();

    // The connection drops; the router notices.
    drop(ana);
    let mut agents = stack.agents.clone();
    eventually("ana disconnected", WAIT, async || {
        let a = agents
            .get_agent(rpb::GetAgentRequest {
                agent_id: "ana".into(),
            })
            .await?
            .into_inner();
        let status = a.status.unwrap_or_default();
        Ok(if status.connected {
            Check::Waiting(format!("{status:?}"))
        } else {
            Check::Done(())
        })
    })
    .await?;

    // Presence UNSPECIFIED: keep the resumed session's.
    let mut ana = Desktop::open(
        &stack,
        "ana",
        &session_id,
        rpb::AgentPresenceState::Unspecified,
    )
    .await?;
    assert!(ana.resumed, "resumed within the grace period");
    assert_eq!(ana.session_id, session_id);
    let has_assignment = |seen: &[Event]| {
        seen.iter().any(|e| {
            matches!(e, Event::Assignment(a) if a.ticket_id == ticket.id
                && a.status == rpb::AssignmentStatus::Active as i32)
        })
    };
    let has_presence = |seen: &[Event]| {
        seen.iter()
            .any(|e| matches!(e, Event::Presence(p) if p.state == rpb::AgentPresenceState::Available as i32))
    };
    let seen = ana
        .until(WAIT, |seen| has_assignment(seen) && has_presence(seen))
        .await?;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Offer(_))),
        "no offer re-sent for an accepted call: {seen:?}"
    );
    let t = get_ticket(&mut stack.tickets, &ticket.id).await?;
    assert_eq!(t.state, tpb::TicketState::Assigned as i32);
    assert_eq!(t.assigned_agent_id, "ana");
    let status = stack
        .agents
        .get_agent(rpb::GetAgentRequest {
            agent_id: "ana".into(),
        })
        .await?
        .into_inner()
        .status
        .unwrap_or_default();
    assert!(status.connected, "{status:?}");
    let voice = status
        .loads
        .iter()
        .find(|l| l.channel == Channel::Voice as i32)
        .context("voice load")?;
    assert_eq!(
        voice.active_tickets, 1,
        "the call still occupies her: {status:?}"
    );

    drop(ana);
    stack.stop().await?;
    println!("story reconnect: {:?}", started.elapsed());
    Ok(())
}

/// An agent who takes one call at a time gets the second waiting call only when the first is
/// resolved.
async fn resolving_a_call_frees_the_agent_for_the_next(mode: Mode) -> Result<()> {
    let started = Instant::now();
    let mut stack = Stack::start_in(mode, StackOptions::default()).await?;
    agent(&mut stack, "ana", &[DEPARTMENT], "").await?;
    let mut ana = Desktop::sign_in(&stack, "ana").await?;
    let first = call(stack.tickets.clone(), "call-free-1", "020 7946 0501").await?;
    let second = call(stack.tickets.clone(), "call-free-2", "020 7946 0502").await?;
    let ids = [first.id.clone(), second.id.clone()];

    let offer = ana.offer(WAIT).await?;
    assert!(ids.contains(&offer.ticket_id));
    ana.accept(&offer).await?;
    let taken = offer.ticket_id.clone();
    let waiting = ids
        .iter()
        .find(|id| **id != taken)
        .context("the other call")?
        .clone();
    // At capacity: the other call waits.
    queued(&stack, &waiting).await?;
    ana.no_offer(Duration::from_secs(1)).await?;

    let resolved = work_and_resolve(&mut stack, &taken, "ana").await?;
    assert_eq!(resolved.state, tpb::TicketState::Resolved as i32);
    assert_eq!(resolved.assigned_agent_id, "ana");
    assert_eq!(resolved.resolution_summary, "refunded the second charge");
    let seen = ana
        .until(WAIT, |seen| {
            seen.iter().any(|e| matches!(e, Event::Offer(_)))
                && seen.iter().any(|e| {
                    matches!(e, Event::Assignment(a) if a.ticket_id == taken
                        && a.status == rpb::AssignmentStatus::Ended as i32)
                })
        })
        .await?;
    let next = seen.into_iter().find_map(offer_of).context("offer")?;
    assert_eq!(
        next.ticket_id, waiting,
        "the waiting call, once she is free"
    );
    ana.accept(&next).await?;

    // The history names the agent who resolved it (the tierline-actor metadata).
    let history = stack
        .tickets
        .list_ticket_history(tpb::ListTicketHistoryRequest {
            ticket_id: taken.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let resolving = history
        .events
        .iter()
        .find(|e| e.to_state == tpb::TicketState::Resolved as i32)
        .context("a RESOLVED event")?;
    let actor = resolving.actor.clone().unwrap_or_default();
    assert_eq!(
        (actor.kind, actor.id.as_str()),
        (tpb::ActorKind::Agent as i32, "ana"),
        "{resolving:?}"
    );

    drop(ana);
    stack.stop().await?;
    println!("story resolve-frees: {:?}", started.elapsed());
    Ok(())
}

/// After resolution another agent follows the customer up: satisfaction C = b / a is stored on
/// the ticket and appears on the customer's profile, and the call is on their timeline.
async fn the_follow_up_satisfaction_shows_on_the_profile_and_the_call_on_the_timeline(
    mode: Mode,
) -> Result<()> {
    let started = Instant::now();
    let mut stack = Stack::start_in(mode, StackOptions::default()).await?;
    let okafor = customer(&mut stack, "Ada Okafor", "020 7946 0601", Tier::B, None).await?;
    agent(&mut stack, "ana", &[DEPARTMENT], "").await?;
    let mut ana = Desktop::sign_in(&stack, "ana").await?;
    let ticket = call(stack.tickets.clone(), "call-follow-up", "020 7946 0601").await?;
    assert_eq!(ticket.customer_id, okafor.id);
    let offer = ana.offer(WAIT).await?;
    assert_eq!(offer.ticket_id, ticket.id);
    ana.accept(&offer).await?;
    work_and_resolve(&mut stack, &ticket.id, "ana").await?;

    let follow_up = |agent: &str| tpb::RecordFollowUpRequest {
        ticket_id: ticket.id.clone(),
        expected: 8.0,
        perceived: 6.0,
        comment: "sorted, but it took two calls".into(),
        agent_id: agent.into(),
        close_ticket: false,
        expected_version: None,
    };
    // The agent who handled the call may not follow it up.
    let refused = stack
        .tickets
        .record_follow_up(as_agent("ana", follow_up("ana"))?)
        .await
        .expect_err("own follow-up");
    assert_eq!(
        (refused.code(), reason_of(&refused).as_str()),
        (tonic::Code::FailedPrecondition, "OWN_FOLLOW_UP"),
        "{refused:?}"
    );
    let followed = stack
        .tickets
        .record_follow_up(as_agent("fiona", follow_up("fiona"))?)
        .await
        .context("RecordFollowUp")?
        .into_inner();
    let recorded = followed.follow_up.clone().context("follow_up")?;
    assert!((recorded.satisfaction - 0.75).abs() < 1e-9, "{recorded:?}");
    assert_eq!(recorded.handling_agent_id, "ana");
    assert_eq!(recorded.recorded_by_agent_id, "fiona");

    // The ticket service relays to the profile in the background.
    let mut customers = stack.customers.clone();
    let profile = eventually("satisfaction on the profile", WAIT, async || {
        let c = customers
            .get_customer(cpb::GetCustomerRequest {
                id: okafor.id.clone(),
            })
            .await?
            .into_inner();
        let s = c.satisfaction.unwrap_or_default();
        Ok(if s.count >= 1 {
            Check::Done(c)
        } else {
            Check::Waiting(format!("{s:?}"))
        })
    })
    .await?;
    let s = profile.satisfaction.context("satisfaction")?;
    assert_eq!(s.count, 1, "{s:?}");
    assert!((s.last_satisfaction - 0.75).abs() < 1e-9, "{s:?}");
    assert!((s.mean_satisfaction - 0.75).abs() < 1e-9, "{s:?}");
    assert!((s.mean_expected - 8.0).abs() < 1e-9, "{s:?}");
    assert!((s.mean_perceived - 6.0).abs() < 1e-9, "{s:?}");
    let records = stack
        .customers
        .list_satisfaction_records(cpb::ListSatisfactionRecordsRequest {
            customer_id: okafor.id.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .records;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].ticket_id, ticket.id);
    assert_eq!(records[0].agent_id, "ana", "the agent who handled the call");
    assert!((records[0].satisfaction - 0.75).abs() < 1e-9, "{records:?}");

    let interactions = eventually("the call on the timeline", WAIT, async || {
        let found = customers
            .list_interactions(cpb::ListInteractionsRequest {
                customer_id: okafor.id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .interactions;
        Ok(if found.iter().any(|i| i.ticket_id == ticket.id) {
            Check::Done(found)
        } else {
            Check::Waiting(format!("{found:?}"))
        })
    })
    .await?;
    let the_call: Vec<_> = interactions
        .iter()
        .filter(|i| i.ticket_id == ticket.id)
        .collect();
    assert_eq!(
        the_call.len(),
        1,
        "one interaction per call: {interactions:?}"
    );
    assert_eq!(the_call[0].channel, Channel::Voice as i32);
    assert_eq!(the_call[0].direction, cpb::Direction::Inbound as i32);

    let mut tickets = stack.tickets.clone();
    eventually("follow-up marked as on the profile", WAIT, async || {
        let t = get_ticket(&mut tickets, &ticket.id).await?;
        let f = t.follow_up.unwrap_or_default();
        Ok(if f.recorded_on_profile {
            Check::Done(())
        } else {
            Check::Waiting(format!("{f:?}"))
        })
    })
    .await?;

    drop(ana);
    stack.stop().await?;
    println!("story follow-up: {:?}", started.elapsed());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Each story in both layouts.

/// Makes a `#[tokio::test]` of each story in module `production` and in module `dev`.
macro_rules! stories {
    ($($story:ident),* $(,)?) => {
        mod production {
            $(
                #[tokio::test]
                async fn $story() -> anyhow::Result<()> {
                    super::$story(tierline_tests::Mode::Production).await
                }
            )*
        }
        mod dev {
            $(
                #[tokio::test]
                async fn $story() -> anyhow::Result<()> {
                    super::$story(tierline_tests::Mode::Dev).await
                }
            )*
        }
    };
}

stories!(
    callers_of_each_tier_complain_at_once_and_the_agent_gets_them_in_deadline_order,
    a_key_account_call_goes_to_the_account_manager_first_and_to_the_team_at_its_step,
    a_declined_call_moves_to_the_next_agent_and_never_back_to_the_decliner,
    an_agent_who_reconnects_within_the_grace_period_keeps_the_assignment,
    resolving_a_call_frees_the_agent_for_the_next,
    the_follow_up_satisfaction_shows_on_the_profile_and_the_call_on_the_timeline,
);
