//! Supervisor and IVR questions: queue statistics, explanations, wait estimates.
//!
//! Every answer is read from the live state in a fixed number of batched calls (one pipeline
//! for the statistics of all departments, one HMGET for every agent concerned, one for their
//! offers, queue heads read concurrently), never one call per agent or per ticket, and judged by
//! the same domain rules the router dispatches with ([`Snapshot`]), so an explanation says what
//! the router would do now.
//!
//! Choices where the proto is silent:
//! - "Waiting" counts tickets with a pending offer everywhere (as `TierQueueStats` defines it):
//!   `TicketExplanation.queue_length` and `AgentQueueView.waiting_count` are the department's
//!   waiting tickets of all tiers, the same number as `QueueStats.total.waiting_count`. A rank is
//!   the position among tickets without a pending offer (the queue proper), as SyncTicket's.
//! - `AgentCounts`: a disconnected agent (within the resume grace) counts as offline whatever
//!   their presence; an AVAILABLE agent holding a pending offer counts as available if a channel
//!   has free capacity (the proto names capacity only). Disabled agents, and agents known only
//!   from an assignment (no record in the live state), are not counted.
//! - GetQueueStats with no departments reports every department that ever had a waiting ticket
//!   (the live state's department set); a department with agents but no ticket yet is left out.
//! - Every call answers UNAVAILABLE while the router rebuilds its live state, like the desktop
//!   calls; [`estimate_for`] then gives no estimate instead.
//! - EstimateWait checks each required skill like agent records (`<kind>:<value>`), so a
//!   misspelt skill is an error rather than a silent "nobody can take it".

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::Stream;
use futures::future::try_join_all;
use tierline_proto::prost_types;
use tierline_proto::routing as pb;
use tierline_runtime::{Violations, wire};
use tierline_types::{Channel, Tier};
use tonic::Status;

use crate::agents::agent_to_proto;
use crate::agents::convert::{agent_id, check_skill};
use crate::api::convert::{
    MAX_REQUIRED_SKILLS, offer_to_proto, offline_status, parse_agent_id, status_to_proto,
    step_to_wire, tier_to_wire,
};
use crate::domain::agent::{AgentState, IneligibilityReason, Presence};
use crate::domain::explain;
use crate::domain::queue::{RankKey, TicketRef};
use crate::domain::select::Snapshot;
use crate::domain::wait::{self, PickupHistory, WaitEstimate, WaitQuery};
use crate::error::{Error, Result};
use crate::live::LiveError;
use crate::live::model::{LiveAgent, LiveTicket, OutcomeCounts, TicketData, time_to_ms};
use crate::live::scripts::WINDOW_MINUTES;
use crate::live::state::{DeptWaiting, LiveState, RoutingState, TicketSync, TierWaiting};
use crate::router::{Router, live_record};

/// Agents read per department or team index. The router's own dispatch reads at most
/// `router.dispatch_agents` ready agents (itself at most 10 000); explanations and statistics
/// read every agent of the index, offline ones included.
const STAFF_LIMIT: usize = 10_000;

/// The staff index lists team members under "\u{1}<team>" (see the scripts' `depts_of`).
const TEAM_INDEX_PREFIX: char = '\u{1}';

/// WatchQueueStats' interval when the request leaves it unset.
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest interval WatchQueueStats accepts.
const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest interval WatchQueueStats accepts.
const MAX_WATCH_INTERVAL: Duration = Duration::from_secs(60);

/// The largest `google.protobuf.Duration` (10 000 years).
const MAX_PROTO_DURATION_SECS: u64 = 315_576_000_000;

// ---------------------------------------------------------------------------------------------
// EstimateWait
// ---------------------------------------------------------------------------------------------

/// The estimated wait of a ticket just synced (SyncTicket's reply): EstimateWait for its
/// department, tier, channel and skills, with the ticket itself left out of the queue ahead of
/// it. `None` if it is not waiting, no estimate can be made, or the live state is being rebuilt.
pub async fn estimate_for(
    router: &Router,
    sync: &TicketSync,
) -> Result<Option<prost_types::Duration>> {
    if sync.state != RoutingState::Waiting
        || sync.department.is_empty()
        || router.check_built().is_err()
    {
        return Ok(None);
    }
    let query = WaitQuery {
        department: sync.department.clone(),
        tier: sync.tier,
        channel: sync.channel,
        required_skills: sync.data.required_skills.clone(),
    };
    let estimate = estimate(router, &query, Some(&sync.id), false).await?;
    Ok(estimate.wait.map(duration))
}

/// EstimateWait.
pub async fn estimate_wait(
    router: &Router,
    req: &pb::EstimateWaitRequest,
) -> Result<pb::EstimateWaitResponse> {
    let query = parse_wait_query(req)?;
    router.check_built()?;
    let estimate = estimate(router, &query, None, true).await?;
    Ok(pb::EstimateWaitResponse {
        estimated_wait: estimate.wait.map(duration),
        position: count(estimate.position),
        available_agents: count(estimate.available_agents),
    })
}

/// Parses an EstimateWaitRequest: department and tier required, channel defaulting to voice,
/// at most 20 well-formed skills.
fn parse_wait_query(req: &pb::EstimateWaitRequest) -> Result<WaitQuery> {
    let mut v = Violations::default();
    let department = v.take("department", department_id(&req.department));
    let tier = match Tier::from_wire(req.tier) {
        Ok(Some(tier)) => Some(tier),
        Ok(None) => {
            v.add("tier", "required");
            None
        }
        Err(e) => {
            v.add("tier", e);
            None
        }
    };
    let channel = match Channel::from_wire(req.channel) {
        Ok(channel) => Some(channel.unwrap_or(Channel::Voice)),
        Err(e) => {
            v.add("channel", e);
            None
        }
    };
    if req.required_skills.len() > MAX_REQUIRED_SKILLS {
        v.add(
            "required_skills",
            format!(
                "at most {MAX_REQUIRED_SKILLS}, got {}",
                req.required_skills.len()
            ),
        );
    } else {
        for (i, skill) in req.required_skills.iter().enumerate() {
            v.take(&format!("required_skills[{i}]"), check_skill(skill));
        }
    }
    match (department, tier, channel) {
        (Some(department), Some(tier), Some(channel)) if v.is_empty() => Ok(WaitQuery {
            department,
            tier,
            channel,
            required_skills: req.required_skills.iter().cloned().collect(),
        }),
        _ => Err(Error::InvalidArgument(v)),
    }
}

/// The domain's estimate over the department's queue head and staff. `own`: a ticket already
/// in the live state that asks for itself; it is left out of the queue, and the agent holding
/// its pending offer counts as free for it.
/// Ready agents read first for a SyncTicket's estimate, which only needs to know whether one
/// of them could take the ticket (the wait is then zero); all of them only if none could.
const FIRST_READY: usize = 64;

/// The wait estimate of a new ticket (`own`: the ticket just synced, left out of the queue
/// ahead of it). With `count_all`, every ready agent is read to count those available
/// (EstimateWait answers the count); without, reading stops at the first that could take it.
async fn estimate(
    router: &Router,
    query: &WaitQuery,
    own: Option<&str>,
    count_all: bool,
) -> Result<WaitEstimate> {
    let live = router.live();
    let now = router.now();
    let now_ms = time_to_ms(now);
    // The new ticket's rank score: its position is one after every queued ticket scored at or
    // before it (ties in score go by enqueue time, and every queued ticket was enqueued by
    // now), counted over the whole queue, not only its head.
    let due = wait::pickup_due_of_new(&router.config().targets, query.tier, now);
    let score = RankKey::new(0, due, now, "").score() as i64;
    let own_entry = async {
        match own {
            Some(id) => live.ticket(id).await,
            None => Ok(None),
        }
    };
    // Only ready agents can be available now (eligibility needs what readiness means), so
    // the department's ready index is read, not every agent serving it. The staffed count
    // this leaves out only matters with an average handle time, which is not kept.
    let first = if count_all { STAFF_LIMIT } else { FIRST_READY };
    let (ahead, ready, stats, own_entry) = futures::try_join!(
        live.queued_before(&query.department, score),
        live.ready_agents(&query.department, first),
        live.department_stats(&query.department),
        own_entry,
    )?;
    // A ticket is not ahead of itself.
    let own_ahead = match (own, &own_entry) {
        (Some(id), Some(t)) if t.st == "queued" => t
            .to_ref(id, None)
            .is_ok_and(|r| r.rank_key().score() as i64 <= score),
        _ => false,
    };
    let position = u32::try_from(ahead.saturating_sub(u64::from(own_ahead)).saturating_add(1))
        .unwrap_or(u32::MAX);
    let own_offer = own_entry
        .filter(|t| t.st == "offered")
        .and_then(|t| t.offer);
    // The agent holding the ticket's own offer could take it (it is not in the ready index
    // while the offer is pending).
    let offer_holder = match &own_offer {
        Some(rid) => live.offer(rid).await?.map(|o| o.agent),
        None => None,
    };
    let history = PickupHistory {
        pickups: OutcomeCounts::sum(&stats.b, now_ms).accepted,
        window: counter_window(),
        average_handle_time: None,
    };
    let judge = |ids: Vec<String>| {
        let own_offer = own_offer.clone();
        let offer_holder = offer_holder.clone();
        async move {
            let mut ids = ids;
            if let Some(holder) = offer_holder
                && !ids.contains(&holder)
            {
                ids.push(holder);
            }
            let agents = live.agents(&ids).await?;
            let states: Vec<AgentState> = agents
                .iter()
                .map(|(id, a)| {
                    // The reservation stands in for its ticket: it only has to block other
                    // tickets.
                    let pending = a
                        .offer
                        .clone()
                        .filter(|rid| Some(rid) != own_offer.as_ref());
                    a.to_state(id, pending, now_ms)
                })
                .collect();
            let snapshot = Snapshot::new(router.config(), &states, &[], now);
            Ok::<_, LiveError>(wait::estimate_wait_at(&snapshot, query, &history, position))
        }
    };
    let more = ready.len() >= first;
    let mut estimate = judge(ready).await?;
    if !count_all && estimate.available_agents == 0 && more {
        // None of the first could take it: look at every ready agent.
        estimate = judge(live.ready_agents(&query.department, STAFF_LIMIT).await?).await?;
    }
    Ok(estimate)
}

// ---------------------------------------------------------------------------------------------
// Queue statistics
// ---------------------------------------------------------------------------------------------

/// GetQueueStats.
pub async fn queue_stats(
    router: &Router,
    departments: &[String],
) -> Result<pb::QueueStatsSnapshot> {
    let departments = parse_departments(departments)?;
    stats_snapshot(router, &departments).await
}

/// WatchQueueStats.
///
/// The stream polls on the client's demand: a snapshot at once, then one per interval (a slow
/// client delays the next one rather than getting a burst). It runs no task of its own, so it
/// stops as soon as tonic drops it (the client went away); a failed snapshot is sent as the
/// last item.
pub fn watch_queue_stats(
    router: Router,
    req: pb::WatchQueueStatsRequest,
) -> Result<impl Stream<Item = Result<pb::QueueStatsSnapshot, Status>> + Send + 'static> {
    let interval = parse_interval(req.interval.as_ref())?;
    let departments = parse_departments(&req.departments)?;
    struct Watch {
        router: Router,
        departments: Vec<String>,
        interval: Duration,
        ticker: Option<tokio::time::Interval>,
        done: bool,
    }
    let watch = Watch {
        router,
        departments,
        interval,
        ticker: None,
        done: false,
    };
    Ok(futures::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        let period = w.interval;
        // Made on first poll, inside the runtime; its first tick is immediate.
        let ticker = w.ticker.get_or_insert_with(|| {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        ticker.tick().await;
        match stats_snapshot(&w.router, &w.departments).await {
            Ok(snapshot) => Some((Ok(snapshot), w)),
            Err(e) => {
                w.done = true;
                Some((Err(Status::from(e)), w))
            }
        }
    }))
}

/// Parses WatchQueueStats' interval: unset is 5 s, else 1-60 s.
fn parse_interval(raw: Option<&prost_types::Duration>) -> Result<Duration> {
    let Some(d) = raw else {
        return Ok(DEFAULT_WATCH_INTERVAL);
    };
    let invalid = || Error::invalid("interval", "must be between 1 and 60 seconds");
    let seconds = u64::try_from(d.seconds).map_err(|_| invalid())?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(invalid)?;
    let interval = Duration::new(seconds, nanos);
    if (MIN_WATCH_INTERVAL..=MAX_WATCH_INTERVAL).contains(&interval) {
        Ok(interval)
    } else {
        Err(invalid())
    }
}

/// Parses the departments of a statistics request: each an id like an agent id, field
/// `departments[i]`. Sorted, without repeats.
fn parse_departments(raw: &[String]) -> Result<Vec<String>> {
    let mut v = Violations::default();
    let mut departments = BTreeSet::new();
    for (i, department) in raw.iter().enumerate() {
        if let Some(d) = v.take(&format!("departments[{i}]"), department_id(department)) {
            departments.insert(d);
        }
    }
    if v.is_empty() {
        Ok(departments.into_iter().collect())
    } else {
        Err(Error::InvalidArgument(v))
    }
}

fn department_id(raw: &str) -> Result<String, String> {
    agent_id(raw).map_err(|e| format!("{e} (a department id)"))
}

/// One snapshot: the per-tier waiting counts and counters of every department in one
/// pipeline, their staff lists concurrently, and every staff agent in one HMGET.
async fn stats_snapshot(router: &Router, requested: &[String]) -> Result<pb::QueueStatsSnapshot> {
    router.check_built()?;
    let live = router.live();
    let departments = if requested.is_empty() {
        live.departments().await?
    } else {
        requested.to_vec()
    };
    let now = router.now();
    let now_ms = time_to_ms(now);
    let at_risk_ms = millis(router.settings().at_risk_window);
    let (waiting, staff) = futures::try_join!(
        live.waiting(&departments, now, at_risk_ms),
        try_join_all(departments.iter().map(|d| live.staff(d, STAFF_LIMIT))),
    )?;
    let ids: Vec<String> = staff
        .iter()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let activities: BTreeMap<String, Activity> = live
        .agents(&ids)
        .await?
        .into_iter()
        .filter_map(|(id, a)| {
            // A pending offer does not change the classification (see the module comment).
            activity(&a.to_state(&id, None, now_ms)).map(|act| (id, act))
        })
        .collect();
    let queues = departments
        .iter()
        .zip(&waiting)
        .zip(&staff)
        .map(|((department, w), members)| {
            let agents = agent_counts(members.iter().filter_map(|id| activities.get(id).copied()));
            queue_entry(department, w, agents, now_ms)
        })
        .collect();
    Ok(pb::QueueStatsSnapshot {
        queues,
        stats_time: Some(wire::timestamp(now)),
        counter_window: Some(duration(counter_window())),
    })
}

/// What an agent is doing, for `AgentCounts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Available,
    Busy,
    Away,
    Offline,
}

/// Classifies an agent per `AgentCounts`; `None` for a disabled agent (which includes one the
/// live state knows only from an assignment, with no record: `LiveAgent::to_state` disables
/// it).
fn activity(agent: &AgentState) -> Option<Activity> {
    if agent.disabled {
        return None;
    }
    Some(match agent.presence {
        Presence::Offline => Activity::Offline,
        // Disconnected within the resume grace period.
        _ if !agent.connected => Activity::Offline,
        Presence::Away(_) => Activity::Away,
        Presence::Available if has_free_capacity(agent) => Activity::Available,
        Presence::Available => Activity::Busy,
    })
}

/// Whether some channel could take one more ticket (an active call takes all capacity; a call
/// needs an agent with nothing active), as the scripts' `free_for`.
fn has_free_capacity(agent: &AgentState) -> bool {
    Channel::ALL
        .iter()
        .any(|channel| agent.capacity_blocks(*channel).is_empty())
}

fn agent_counts(activities: impl IntoIterator<Item = Activity>) -> pb::AgentCounts {
    let mut counts = pb::AgentCounts::default();
    for a in activities {
        let slot = match a {
            Activity::Available => &mut counts.available,
            Activity::Busy => &mut counts.busy,
            Activity::Away => &mut counts.away,
            Activity::Offline => &mut counts.offline,
        };
        *slot = slot.saturating_add(1);
    }
    counts
}

/// One department's entry: tiers A, B, C, their total, agents and offer counters.
fn queue_entry(
    department: &str,
    w: &DeptWaiting,
    agents: pb::AgentCounts,
    now_ms: i64,
) -> pb::QueueStats {
    pb::QueueStats {
        department: department.to_owned(),
        total: Some(tier_stats(None, &total(&w.tiers), now_ms)),
        tiers: Tier::ALL
            .iter()
            .zip(&w.tiers)
            .map(|(tier, tw)| tier_stats(Some(*tier), tw, now_ms))
            .collect(),
        agents: Some(agents),
        offers: Some(offer_counts(OutcomeCounts::sum(&w.stats.b, now_ms))),
    }
}

/// The all-tier total: counts summed, the oldest enqueue time of all.
fn total(tiers: &[TierWaiting]) -> TierWaiting {
    tiers
        .iter()
        .fold(TierWaiting::default(), |sum, t| TierWaiting {
            waiting: sum.waiting.saturating_add(t.waiting),
            offered: sum.offered.saturating_add(t.offered),
            oldest_enqueue_ms: match (sum.oldest_enqueue_ms, t.oldest_enqueue_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            at_risk: sum.at_risk.saturating_add(t.at_risk),
            past_due: sum.past_due.saturating_add(t.past_due),
        })
}

fn tier_stats(tier: Option<Tier>, w: &TierWaiting, now_ms: i64) -> pb::TierQueueStats {
    let oldest_wait = w.oldest_enqueue_ms.map_or(Duration::ZERO, |enqueued| {
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(enqueued)).unwrap_or(0))
    });
    pb::TierQueueStats {
        tier: tier_to_wire(tier),
        waiting_count: count(w.waiting),
        offered_count: count(w.offered),
        oldest_wait: Some(duration(oldest_wait)),
        at_risk_count: count(w.at_risk),
        past_due_count: count(w.past_due),
    }
}

/// All tiers' waiting tickets of a department, pending offers included.
fn waiting_total(w: &DeptWaiting) -> u64 {
    total(&w.tiers).waiting
}

fn offer_counts(c: OutcomeCounts) -> pb::OfferCounts {
    pb::OfferCounts {
        offered: count(c.offered),
        accepted: count(c.accepted),
        declined: count(c.declined),
        expired: count(c.expired),
        cancelled: count(c.cancelled),
    }
}

// ---------------------------------------------------------------------------------------------
// ExplainTicket
// ---------------------------------------------------------------------------------------------

/// ExplainTicket.
pub async fn explain_ticket(router: &Router, ticket_id: &str) -> Result<pb::TicketExplanation> {
    let id = wire::uuid(ticket_id)
        .map_err(|e| Error::invalid("ticket_id", e))?
        .to_string();
    router.check_built()?;
    let live = router.live();
    let not_found = || Error::NotFound {
        what: "ticket",
        id: id.clone(),
    };
    let entry = live
        .ticket(&id)
        .await?
        .filter(|t| t.st != "removed")
        .ok_or_else(not_found)?;
    let now = router.now();
    let now_ms = time_to_ms(now);
    let at_risk_ms = millis(router.settings().at_risk_window);
    let ticket = routing_ticket(&id, &entry)?;
    let departments: Vec<String> = entry
        .dept
        .iter()
        .filter(|d| !d.is_empty())
        .cloned()
        .collect();

    if !matches!(entry.st.as_str(), "queued" | "offered") {
        // ACTIVE or PARKED: no longer routed.
        let waiting = live.waiting(&departments, now, at_risk_ms).await?;
        return Ok(pb::TicketExplanation {
            ticket: Some(ticket),
            rank: 0,
            queue_length: count(waiting.iter().map(waiting_total).sum::<u64>()),
            steps: Vec::new(),
            current_step_index: -1,
            next_step_time: None,
            pending_offer: None,
            eligible_agent_count: 0,
            agents: Vec::new(),
            explain_time: Some(wire::timestamp(now)),
        });
    }

    let offered = entry.st == "offered";
    let own_offer = async {
        match entry.offer.as_deref() {
            Some(rid) if offered => Ok(live.offer(rid).await?.map(|o| (rid.to_owned(), o))),
            _ => Ok::<_, LiveError>(None),
        }
    };
    let rank = async {
        if offered {
            Ok(None)
        } else {
            live.rank(&entry).await
        }
    };
    let ((head, staff), own_offer, rank, waiting) = futures::try_join!(
        read_queues(router, &departments),
        own_offer,
        rank,
        live.waiting(&departments, now, at_risk_ms),
    )?;
    let pending = own_offer.filter(|(_, o)| matches!(o.st.as_str(), "pending" | "accepting"));

    // The department's queue head (the tickets a dispatch round weighs against this one) and
    // the ticket itself, which is not in the queue while offered, nor beyond the head.
    let mut tickets: Vec<TicketRef> = queued_refs(&head)
        .into_iter()
        .filter(|t| t.id != id)
        .collect();
    tickets.push(entry.to_ref(&id, pending.as_ref().map(|(_, o)| o.agent.clone()))?);

    // Everyone the ticket could reach: the department's staff and the teams (read above), the
    // account manager, preferred agent, offer holder and decliners; and the agents the other
    // tickets name, whose presence shapes those tickets' ladders in the dispatch round.
    let mut ids = staff;
    for t in &tickets {
        ids.extend(named_agents(t));
    }
    let agents = read_agents(live, &ids).await?;
    let offer_tickets = read_offer_tickets(live, &agents).await?;
    let states = agent_states(&agents, &offer_tickets, now_ms);
    let snapshot = Snapshot::new(router.config(), &states, &tickets, now);
    let explanation = explain::explain_ticket(&snapshot, &id).ok_or_else(not_found)?;
    Ok(ticket_explanation(
        ticket,
        &explanation,
        rank.unwrap_or(0),
        waiting.iter().map(waiting_total).sum(),
        pending.map(|(rid, o)| offer_to_proto(&rid, &o)),
    ))
}

/// The proto explanation of a waiting ticket from the domain's. `rank` is the live queue rank
/// (0 while offered), `queue_length` the department's waiting tickets.
fn ticket_explanation(
    ticket: pb::RoutingTicket,
    e: &explain::TicketExplanation,
    rank: u64,
    queue_length: u64,
    pending_offer: Option<pb::Offer>,
) -> pb::TicketExplanation {
    pb::TicketExplanation {
        ticket: Some(ticket),
        rank: count(rank),
        queue_length: count(queue_length.max(rank)),
        steps: e
            .steps
            .iter()
            .map(|s| pb::RoutingStep {
                kind: step_to_wire(s.step.kind) as i32,
                target: s.step.target.clone(),
                start_after: Some(duration(s.step.start_after)),
                start_time: s.start_time.map(wire::timestamp),
            })
            .collect(),
        // -1 also when no step has started yet (none can reach anybody).
        current_step_index: e.current_step_index.map_or(-1, count),
        next_step_time: e.next_step_time.map(wire::timestamp),
        pending_offer,
        eligible_agent_count: count(e.eligible_agent_count),
        agents: e
            .agents
            .iter()
            .map(|v| pb::AgentVerdict {
                agent_id: v.agent_id.clone(),
                display_name: v.display_name.clone(),
                eligible: v.eligible,
                selection_order: count(v.selection_order),
                reasons: reasons_to_proto(&v.reasons),
                missing_skills: v.missing_skills.clone(),
            })
            .collect(),
        explain_time: Some(wire::timestamp(e.explain_time)),
    }
}

/// A `RoutingTicket` rebuilt from the live entry and its data.
fn routing_ticket(id: &str, t: &LiveTicket) -> Result<pb::RoutingTicket, LiveError> {
    let data: Option<TicketData> = t.data(id)?;
    let d = data.as_ref();
    let state = match t.st.as_str() {
        "queued" | "offered" => pb::TicketRoutingState::Waiting,
        "active" => pb::TicketRoutingState::Active,
        "parked" => pb::TicketRoutingState::Parked,
        _ => pb::TicketRoutingState::Done,
    };
    let text = |f: fn(&TicketData) -> &String| d.map(|d| f(d).clone()).unwrap_or_default();
    let agent =
        |f: fn(&TicketData) -> &Option<String>| d.and_then(|d| f(d).clone()).unwrap_or_default();
    Ok(pb::RoutingTicket {
        ticket_id: id.to_owned(),
        ticket_number: text(|d| &d.number),
        ticket_version: t.version()?,
        state: state as i32,
        department: t.dept.clone().unwrap_or_default(),
        channel: t
            .chan
            .as_deref()
            .and_then(Channel::from_db)
            .map_or(0, |c| c.to_wire() as i32),
        tier: tier_to_wire(t.tier.as_deref().and_then(Tier::from_db)),
        key_account: d.is_some_and(|d| d.key_account),
        account_manager_id: agent(|d| &d.account_manager_id),
        customer_id: text(|d| &d.customer_id),
        customer_display_name: text(|d| &d.customer_name),
        subject: text(|d| &d.subject),
        category: text(|d| &d.category),
        priority: d.map_or(0, |d| d.priority),
        escalation_level: d.map_or(0, |d| count(d.escalation_level)),
        enqueue_time: d.map(|d| wire::timestamp(d.enqueue_time)),
        pickup_due_time: d.map(|d| wire::timestamp(d.pickup_due)),
        required_skills: d
            .map(|d| d.required_skills.iter().cloned().collect())
            .unwrap_or_default(),
        preferred_agent_id: agent(|d| &d.preferred_agent_id),
        assigned_agent_id: t.agent.clone().unwrap_or_default(),
        reservation_id: t.rid.clone().unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------------
// ExplainAgent
// ---------------------------------------------------------------------------------------------

/// ExplainAgent.
pub async fn explain_agent(router: &Router, agent_id: &str) -> Result<pb::AgentExplanation> {
    let id = parse_agent_id("agent_id", agent_id)?;
    router.check_built()?;
    let record = router.record(&id).await?;
    let live = router.live();
    let entry = live.agent(&id).await?;
    let now = router.now();
    let now_ms = time_to_ms(now);

    // No live entry: an agent who never connected, offline. An entry without a record (known
    // only from an assignment) takes the durable one, so its departments are explained.
    let mut me = entry.clone().unwrap_or_else(offline_agent);
    if me.rec.is_none() {
        me.rec = Some(live_record(&record));
    }
    let departments: Vec<String> = me
        .rec
        .as_ref()
        .map(|r| r.depts.keys().cloned().collect())
        .unwrap_or_default();

    let ((head, staff), waiting) = if departments.is_empty() {
        Default::default()
    } else {
        let at_risk_ms = millis(router.settings().at_risk_window);
        futures::try_join!(
            read_queues(router, &departments),
            live.waiting(&departments, now, at_risk_ms),
        )?
    };
    let tickets = queued_refs(&head);
    // The agent, the other agents of its departments (who may come first for a ticket) and the
    // agents the tickets name.
    let mut ids = staff;
    for t in &tickets {
        ids.extend(named_agents(t));
    }
    ids.remove(&id);
    let mut agents = read_agents(live, &ids).await?;
    agents.insert(id.clone(), me);
    let offer_tickets = read_offer_tickets(live, &agents).await?;
    let states = agent_states(&agents, &offer_tickets, now_ms);
    let snapshot = Snapshot::new(router.config(), &states, &tickets, now);
    let explanation =
        explain::explain_agent(&snapshot, &id).ok_or_else(|| Error::agent_not_found(&id))?;

    let waiting: BTreeMap<&str, u64> = departments
        .iter()
        .map(String::as_str)
        .zip(waiting.iter().map(waiting_total))
        .collect();
    let status = entry
        .as_ref()
        .map_or_else(offline_status, |a| status_to_proto(a, now_ms));
    let offers = entry
        .as_ref()
        .map(|a| a.offer_counts(now_ms))
        .unwrap_or_default();
    Ok(agent_explanation(
        agent_to_proto(&record, Some(status)),
        &explanation,
        &waiting,
        offers,
    ))
}

/// The proto explanation of an agent from the domain's; `waiting` holds each department's
/// waiting tickets (pending offers included).
fn agent_explanation(
    agent: pb::Agent,
    e: &explain::AgentExplanation,
    waiting: &BTreeMap<&str, u64>,
    offers: OutcomeCounts,
) -> pb::AgentExplanation {
    pb::AgentExplanation {
        agent: Some(agent),
        receiving_offers: e.receiving_offers,
        reasons: reasons_to_proto(&e.reasons),
        queues: e
            .queues
            .iter()
            .map(|q| pb::AgentQueueView {
                department: q.department.clone(),
                waiting_count: count(
                    waiting
                        .get(q.department.as_str())
                        .copied()
                        .unwrap_or(0)
                        .max(u64::from(q.waiting_count)),
                ),
                eligible_waiting_count: count(q.eligible_waiting_count),
                next_ticket_id: q.next_ticket_id.clone().unwrap_or_default(),
                head_ticket_reasons: reasons_to_proto(&q.head_ticket_reasons),
            })
            .collect(),
        offers: Some(offer_counts(offers)),
        counter_window: Some(duration(counter_window())),
        explain_time: Some(wire::timestamp(e.explain_time)),
    }
}

/// The live entry of an agent the live state does not know: offline, no session, nothing
/// assigned or pending.
fn offline_agent() -> LiveAgent {
    LiveAgent {
        rec: None,
        pres: "offline".into(),
        why: None,
        note: None,
        ps: None,
        sess: None,
        conn: false,
        lease: None,
        idle: None,
        la: None,
        cnt: 0.0,
        offer: None,
        missed: 0.0,
        tk: BTreeMap::new(),
        oc: BTreeMap::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared reads and conversions
// ---------------------------------------------------------------------------------------------

/// The queued tickets at the head of each of `departments` (as many as a dispatch round
/// weighs), and the agents indexed under the departments and under the configured teams. The
/// queue heads and staff lists are read concurrently, then the tickets in one HMGET.
async fn read_queues(
    router: &Router,
    departments: &[String],
) -> Result<(Vec<(String, LiveTicket)>, BTreeSet<String>), LiveError> {
    let live = router.live();
    let n = router.settings().dispatch_tickets;
    let indexes: Vec<String> = departments
        .iter()
        .cloned()
        .chain(
            router
                .config()
                .steps
                .team_ids()
                .into_iter()
                .map(|team| format!("{TEAM_INDEX_PREFIX}{team}")),
        )
        .collect();
    let (heads, staff) = futures::try_join!(
        try_join_all(departments.iter().map(|d| live.queue_head(d, n))),
        try_join_all(indexes.iter().map(|i| live.staff(i, STAFF_LIMIT))),
    )?;
    let ids: Vec<String> = heads.into_iter().flat_map(|(ids, _)| ids).collect();
    let tickets = live.tickets(&ids).await?;
    Ok((tickets, staff.into_iter().flatten().collect()))
}

/// The queued ones of `tickets` as the domain sees them (no pending offer). An entry that
/// changed since its queue was read (offered, assigned) is left out, and so is one that does
/// not decode, with a warning: one bad entry should not stop an explanation of the others.
fn queued_refs(tickets: &[(String, LiveTicket)]) -> Vec<TicketRef> {
    tickets
        .iter()
        .filter(|(_, t)| t.st == "queued")
        .filter_map(|(id, t)| match t.to_ref(id, None) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(ticket = %id, error = %e, "queued ticket skipped");
                None
            }
        })
        .collect()
}

/// The agents a ticket names: account manager, preferred agent, offer holder, decliners.
fn named_agents(t: &TicketRef) -> impl Iterator<Item = String> + '_ {
    t.account_manager_id
        .iter()
        .chain(&t.preferred_agent_id)
        .chain(&t.offered_to)
        .chain(&t.declined_by)
        .filter(|id| !id.is_empty())
        .cloned()
}

/// The live entries of `ids`, in one HMGET; unknown agents are left out.
async fn read_agents(
    live: &dyn LiveState,
    ids: &BTreeSet<String>,
) -> Result<BTreeMap<String, LiveAgent>, LiveError> {
    let ids: Vec<String> = ids.iter().cloned().collect();
    Ok(live.agents(&ids).await?.into_iter().collect())
}

/// The ticket of each agent's pending offer, by reservation, in one HMGET.
async fn read_offer_tickets(
    live: &dyn LiveState,
    agents: &BTreeMap<String, LiveAgent>,
) -> Result<BTreeMap<String, String>, LiveError> {
    let rids: Vec<String> = agents
        .values()
        .filter_map(|a| a.offer.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(live
        .offers(&rids)
        .await?
        .into_iter()
        .map(|(rid, o)| (rid, o.ticket))
        .collect())
}

/// The agents as the domain sees them, each with the ticket of its pending offer (the
/// reservation id itself if the offer could not be read: the agent stays reserved).
fn agent_states(
    agents: &BTreeMap<String, LiveAgent>,
    offer_tickets: &BTreeMap<String, String>,
    now_ms: i64,
) -> Vec<AgentState> {
    agents
        .iter()
        .map(|(id, a)| {
            let pending = a
                .offer
                .as_ref()
                .map(|rid| offer_tickets.get(rid).unwrap_or(rid).clone());
            a.to_state(id, pending, now_ms)
        })
        .collect()
}

/// An ineligibility reason on the wire.
fn reason_to_proto(reason: IneligibilityReason) -> pb::IneligibilityReason {
    use IneligibilityReason as R;
    use pb::IneligibilityReason as P;
    match reason {
        R::Offline => P::Offline,
        R::Disconnected => P::Disconnected,
        R::Away => P::Away,
        R::Disabled => P::Disabled,
        R::AtCapacity => P::AtCapacity,
        R::VoiceTakesAll => P::VoiceTakesAll,
        R::NoChannelCapacity => P::NoChannelCapacity,
        R::Reserved => P::Reserved,
        R::NotInDepartment => P::NotInDepartment,
        R::MissingSkill => P::MissingSkill,
        R::NotInStep => P::NotInStep,
        R::DeclinedBefore => P::DeclinedBefore,
        R::NotSelected => P::NotSelected,
        R::HigherRankedTicket => P::HigherRankedTicket,
        R::NoWaitingTickets => P::NoWaitingTickets,
        R::NoDepartments => P::NoDepartments,
    }
}

fn reasons_to_proto(reasons: &[IneligibilityReason]) -> Vec<i32> {
    reasons.iter().map(|r| reason_to_proto(*r) as i32).collect()
}

/// The rolling window of the offer counters.
fn counter_window() -> Duration {
    Duration::from_secs(u64::try_from(WINDOW_MINUTES).unwrap_or(0) * 60)
}

/// A wire duration, capped at the largest the type allows.
fn duration(d: Duration) -> prost_types::Duration {
    if d.as_secs() >= MAX_PROTO_DURATION_SECS {
        return prost_types::Duration {
            seconds: i64::try_from(MAX_PROTO_DURATION_SECS).unwrap_or(i64::MAX),
            nanos: 0,
        };
    }
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A count on the wire, saturating.
fn count(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{AwayReason, ChannelCounts};
    use tierline_runtime::ServiceError;
    use time::OffsetDateTime;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-03-02 09:00 UTC);

    fn t0_ms() -> i64 {
        time_to_ms(T0)
    }

    fn fields(err: &Error) -> Vec<String> {
        err.field_violations()
            .iter()
            .map(|f| f.field.clone())
            .collect()
    }

    fn secs(seconds: i64, nanos: i32) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos }
    }

    #[test]
    fn every_domain_reason_maps_to_the_proto_reason_of_the_same_name_and_number() {
        use IneligibilityReason as R;
        let all = [
            R::Offline,
            R::Disconnected,
            R::Away,
            R::Disabled,
            R::AtCapacity,
            R::VoiceTakesAll,
            R::NoChannelCapacity,
            R::Reserved,
            R::NotInDepartment,
            R::MissingSkill,
            R::NotInStep,
            R::DeclinedBefore,
            R::NotSelected,
            R::HigherRankedTicket,
            R::NoWaitingTickets,
            R::NoDepartments,
        ];
        for (i, reason) in all.into_iter().enumerate() {
            let wire = reason_to_proto(reason);
            assert_eq!(wire as usize, i + 1, "{reason} keeps its wire number");
            assert_eq!(
                wire.as_str_name(),
                format!("INELIGIBILITY_REASON_{}", reason.as_str().to_uppercase()),
            );
        }
        assert_eq!(
            reasons_to_proto(&[R::Offline, R::Disabled]),
            [
                pb::IneligibilityReason::Offline as i32,
                pb::IneligibilityReason::Disabled as i32
            ]
        );
    }

    fn tier(
        waiting: u64,
        offered: u64,
        oldest: Option<i64>,
        at_risk: u64,
        past_due: u64,
    ) -> TierWaiting {
        TierWaiting {
            waiting,
            offered,
            oldest_enqueue_ms: oldest.map(|min| t0_ms() - min * 60_000),
            at_risk,
            past_due,
        }
    }

    #[test]
    fn the_total_sums_the_tiers_and_takes_the_longest_wait() {
        let tiers = [
            tier(2, 1, Some(3), 1, 0),
            tier(0, 0, None, 0, 0),
            tier(5, 0, Some(40), 0, 2),
        ];
        let sum = total(&tiers);
        assert_eq!(sum, tier(7, 1, Some(40), 1, 2));
        assert_eq!(total(&[]), TierWaiting::default());

        let stats = tier_stats(None, &sum, t0_ms());
        assert_eq!(stats.tier, 0, "the total has tier UNSPECIFIED");
        assert_eq!(stats.waiting_count, 7);
        assert_eq!(stats.offered_count, 1);
        assert_eq!(stats.oldest_wait, Some(secs(40 * 60, 0)));
        assert_eq!((stats.at_risk_count, stats.past_due_count), (1, 2));
        let empty = tier_stats(Some(Tier::B), &TierWaiting::default(), t0_ms());
        assert_eq!(empty.oldest_wait, Some(secs(0, 0)), "zero if none waits");
        assert_eq!(empty.tier, tierline_proto::common::Tier::B as i32);
        // A clock behind the enqueue time (another router's) never gives a negative wait.
        let ahead = tier(1, 0, Some(-2), 0, 0);
        assert_eq!(
            tier_stats(None, &ahead, t0_ms()).oldest_wait,
            Some(secs(0, 0))
        );
    }

    #[test]
    fn a_queue_entry_has_tiers_a_b_c_a_total_and_the_windowed_offer_counts() {
        let minute = t0_ms().div_euclid(60_000);
        let stats = serde_json::from_value(serde_json::json!({
            "b": {
                minute.to_string(): {"o": 3, "a": 1, "d": 1},
                (minute - 20).to_string(): {"o": 9},
            },
            "off": {"A": 1},
        }))
        .expect("stats");
        let w = DeptWaiting {
            tiers: [
                tier(1, 1, Some(2), 1, 0),
                TierWaiting::default(),
                tier(4, 0, Some(90), 0, 0),
            ],
            stats,
        };
        let agents = agent_counts([Activity::Available, Activity::Away, Activity::Away]);
        let q = queue_entry("billing", &w, agents, t0_ms());
        assert_eq!(q.department, "billing");
        let tiers: Vec<(i32, i32)> = q.tiers.iter().map(|t| (t.tier, t.waiting_count)).collect();
        use tierline_proto::common::Tier as W;
        assert_eq!(
            tiers,
            [(W::A as i32, 1), (W::B as i32, 0), (W::C as i32, 4)]
        );
        let total = q.total.expect("total");
        assert_eq!(
            (total.tier, total.waiting_count, total.offered_count),
            (0, 5, 1)
        );
        assert_eq!(total.oldest_wait, Some(secs(90 * 60, 0)));
        assert_eq!(
            q.agents,
            Some(pb::AgentCounts {
                available: 1,
                busy: 0,
                away: 2,
                offline: 0
            })
        );
        assert_eq!(
            q.offers,
            Some(pb::OfferCounts {
                offered: 3,
                accepted: 1,
                declined: 1,
                expired: 0,
                cancelled: 0
            }),
            "buckets older than the window do not count"
        );
    }

    fn agent(presence: Presence, connected: bool) -> AgentState {
        AgentState {
            departments: BTreeSet::from(["billing".to_owned()]),
            capacity: ChannelCounts::of(&[(Channel::Chat, 2), (Channel::Voice, 1)]),
            presence,
            connected,
            ..AgentState::new("a", "A", T0)
        }
    }

    #[test]
    fn agents_are_classified_as_agent_counts_defines() {
        let available = agent(Presence::Available, true);
        assert_eq!(activity(&available), Some(Activity::Available));

        let mut one_chat = available.clone();
        one_chat.assign(Channel::Chat, T0);
        assert_eq!(
            activity(&one_chat),
            Some(Activity::Available),
            "chat has room even if voice does not"
        );
        let mut full = one_chat.clone();
        full.assign(Channel::Chat, T0);
        assert_eq!(activity(&full), Some(Activity::Busy));
        let mut on_call = available.clone();
        on_call.assign(Channel::Voice, T0);
        assert_eq!(activity(&on_call), Some(Activity::Busy), "voice takes all");
        let no_capacity = AgentState {
            capacity: ChannelCounts::default(),
            ..available.clone()
        };
        assert_eq!(activity(&no_capacity), Some(Activity::Busy));
        let mut reserved = available.clone();
        reserved.offer("t");
        assert_eq!(activity(&reserved), Some(Activity::Available));

        let away = agent(Presence::Away(AwayReason::Break), true);
        assert_eq!(activity(&away), Some(Activity::Away));
        assert_eq!(
            activity(&agent(Presence::Offline, false)),
            Some(Activity::Offline)
        );
        assert_eq!(
            activity(&agent(Presence::Available, false)),
            Some(Activity::Offline),
            "disconnected within the grace period"
        );
        assert_eq!(
            activity(&agent(Presence::Away(AwayReason::Meal), false)),
            Some(Activity::Offline)
        );
        let disabled = AgentState {
            disabled: true,
            ..available.clone()
        };
        assert_eq!(activity(&disabled), None);

        // An entry known only from an assignment has no record: not counted.
        let orphan: LiveAgent = serde_json::from_str(
            r#"{"pres":"available","sess":"s","conn":true,"lease":9999999999999,"tk":{},"oc":{}}"#,
        )
        .expect("parses");
        assert_eq!(activity(&orphan.to_state("x", None, t0_ms())), None);

        let counts = agent_counts(
            [
                &available,
                &full,
                &away,
                &disabled,
                &agent(Presence::Offline, false),
            ]
            .into_iter()
            .filter_map(activity),
        );
        assert_eq!(
            counts,
            pb::AgentCounts {
                available: 1,
                busy: 1,
                away: 1,
                offline: 1
            }
        );
    }

    #[test]
    fn the_watch_interval_defaults_to_5s_and_must_be_1_to_60s() {
        assert_eq!(
            parse_interval(None).expect("default"),
            Duration::from_secs(5)
        );
        assert_eq!(
            parse_interval(Some(&secs(1, 0))).expect("1s"),
            Duration::from_secs(1)
        );
        assert_eq!(
            parse_interval(Some(&secs(60, 0))).expect("60s"),
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_interval(Some(&secs(2, 500_000_000))).expect("2.5s"),
            Duration::from_millis(2_500)
        );
        for bad in [
            secs(0, 0),
            secs(0, 999_999_999),
            secs(60, 1),
            secs(61, 0),
            secs(-5, 0),
            secs(5, -1),
            secs(5, 1_000_000_000),
        ] {
            let err = parse_interval(Some(&bad)).expect_err("out of range");
            assert_eq!(fields(&err), ["interval"], "{bad:?}");
        }
    }

    #[test]
    fn departments_are_validated_sorted_and_deduplicated() {
        let ok =
            parse_departments(&["sales".into(), "billing".into(), "sales".into()]).expect("valid");
        assert_eq!(ok, ["billing", "sales"]);
        assert!(parse_departments(&[]).expect("valid").is_empty());
        let err = parse_departments(&["billing".into(), String::new(), "a b".into()])
            .expect_err("invalid");
        assert_eq!(fields(&err), ["departments[1]", "departments[2]"]);
    }

    #[test]
    fn a_wait_query_needs_department_and_tier_and_defaults_to_voice() {
        let req = pb::EstimateWaitRequest {
            department: "support".into(),
            tier: tierline_proto::common::Tier::A as i32,
            channel: 0,
            required_skills: vec!["language:de".into()],
        };
        let q = parse_wait_query(&req).expect("valid");
        assert_eq!(q.channel, Channel::Voice);
        assert_eq!(q.tier, Tier::A);
        assert_eq!(
            q.required_skills,
            BTreeSet::from(["language:de".to_owned()])
        );

        let err = parse_wait_query(&pb::EstimateWaitRequest {
            channel: 99,
            required_skills: vec!["German".into()],
            ..Default::default()
        })
        .expect_err("invalid");
        assert_eq!(
            fields(&err),
            ["department", "tier", "channel", "required_skills[0]"]
        );
        let err = parse_wait_query(&pb::EstimateWaitRequest {
            required_skills: (0..21).map(|i| format!("skill:s{i}")).collect(),
            ..req
        })
        .expect_err("too many");
        assert_eq!(fields(&err), ["required_skills"]);
    }

    fn live_ticket(json: serde_json::Value) -> LiveTicket {
        serde_json::from_value(json).expect("ticket")
    }

    fn data_json() -> String {
        serde_json::json!({
            "number": "T-1", "key_account": true, "account_manager_id": "am",
            "preferred_agent_id": null, "required_skills": ["product:fibre", "language:de"],
            "escalation_level": 1, "enqueue_time": "2026-03-02T08:50:00Z",
            "pickup_due": "2026-03-02T09:05:00Z", "subject": "No signal", "category": "outage",
            "priority": 2, "customer_id": "c-1", "customer_name": "Acme"
        })
        .to_string()
    }

    #[test]
    fn a_routing_ticket_is_rebuilt_from_the_live_entry() {
        let id = "0192f000-0000-7000-8000-000000000001";
        let waiting = live_ticket(serde_json::json!({
            "v": "7", "st": "offered", "dept": "support", "tier": "A", "chan": "chat",
            "d": data_json(), "offer": "r1", "dec": {}
        }));
        let t = routing_ticket(id, &waiting).expect("valid");
        assert_eq!(t.ticket_id, id);
        assert_eq!(t.ticket_version, 7);
        assert_eq!(t.state, pb::TicketRoutingState::Waiting as i32);
        assert_eq!(t.tier, tierline_proto::common::Tier::A as i32);
        assert_eq!(t.channel, tierline_proto::common::Channel::Chat as i32);
        assert_eq!(t.ticket_number, "T-1");
        assert!(t.key_account);
        assert_eq!(t.account_manager_id, "am");
        assert_eq!(t.preferred_agent_id, "");
        assert_eq!(t.customer_display_name, "Acme");
        assert_eq!(t.escalation_level, 1);
        assert_eq!(t.required_skills, ["language:de", "product:fibre"]);
        assert_eq!(
            t.pickup_due_time,
            Some(wire::timestamp(datetime!(2026-03-02 09:05 UTC)))
        );
        assert_eq!(t.assigned_agent_id, "");

        let parked = live_ticket(serde_json::json!({
            "v": "9", "st": "parked", "dept": "support", "tier": "B", "chan": "email",
            "d": data_json(), "agent": "ana", "rid": "r1", "at": 1.0
        }));
        let t = routing_ticket(id, &parked).expect("valid");
        assert_eq!(t.state, pb::TicketRoutingState::Parked as i32);
        assert_eq!(
            (t.assigned_agent_id.as_str(), t.reservation_id.as_str()),
            ("ana", "r1")
        );

        let bad = live_ticket(serde_json::json!({"v": "x", "st": "active"}));
        assert!(
            routing_ticket(id, &bad).is_err(),
            "a corrupt version is an error"
        );
    }

    #[test]
    fn a_ticket_explanation_maps_steps_verdicts_and_the_live_rank() {
        use crate::domain::agent::IneligibilityReason as R;
        use crate::domain::steps::{Step, StepKind};
        let e = explain::TicketExplanation {
            ticket_id: "t".into(),
            rank: 9,
            queue_length: 9,
            pickup_due: T0,
            steps: vec![
                explain::StepTiming {
                    step: Step {
                        kind: StepKind::AccountManager,
                        target: "am".into(),
                        start_after: Duration::ZERO,
                    },
                    start_time: Some(T0),
                },
                explain::StepTiming {
                    step: Step {
                        kind: StepKind::Department,
                        target: "support".into(),
                        start_after: Duration::from_secs(180),
                    },
                    start_time: Some(T0 + time::Duration::minutes(3)),
                },
            ],
            current_step_index: Some(0),
            next_step_time: Some(T0 + time::Duration::minutes(3)),
            offered_to: None,
            would_offer_to: Some("am".into()),
            eligible_agent_count: 1,
            agents: vec![
                explain::AgentVerdict {
                    agent_id: "am".into(),
                    display_name: "Manager".into(),
                    eligible: true,
                    selection_order: 1,
                    reasons: vec![],
                    missing_skills: vec![],
                },
                explain::AgentVerdict {
                    agent_id: "bo".into(),
                    display_name: "Bo".into(),
                    eligible: false,
                    selection_order: 0,
                    reasons: vec![R::MissingSkill, R::NotInStep],
                    missing_skills: vec!["language:de".into()],
                },
            ],
            explain_time: T0,
        };
        let p = ticket_explanation(pb::RoutingTicket::default(), &e, 2, 5, None);
        assert_eq!(
            (p.rank, p.queue_length),
            (2, 5),
            "the live rank, not the snapshot's"
        );
        assert_eq!(p.current_step_index, 0);
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.steps[1].kind, pb::RoutingStepKind::Department as i32);
        assert_eq!(p.steps[1].start_after, Some(secs(180, 0)));
        assert_eq!(
            p.next_step_time,
            Some(wire::timestamp(T0 + time::Duration::minutes(3)))
        );
        assert_eq!(p.eligible_agent_count, 1);
        assert_eq!(p.agents[0].selection_order, 1);
        assert!(p.agents[0].reasons.is_empty());
        assert_eq!(
            p.agents[1].reasons,
            [
                pb::IneligibilityReason::MissingSkill as i32,
                pb::IneligibilityReason::NotInStep as i32
            ]
        );
        assert_eq!(p.agents[1].missing_skills, ["language:de"]);

        let none_started = explain::TicketExplanation {
            current_step_index: None,
            ..e
        };
        let p = ticket_explanation(pb::RoutingTicket::default(), &none_started, 0, 0, None);
        assert_eq!(p.current_step_index, -1);
    }

    #[test]
    fn pending_offers_resolve_to_their_ticket_or_keep_the_agent_reserved() {
        let entry = |offer: Option<&str>| {
            let mut a = offline_agent();
            a.offer = offer.map(str::to_owned);
            a
        };
        let agents = BTreeMap::from([
            ("a".to_owned(), entry(Some("r1"))),
            ("b".to_owned(), entry(Some("gone"))),
            ("c".to_owned(), entry(None)),
        ]);
        let tickets = BTreeMap::from([("r1".to_owned(), "t1".to_owned())]);
        let pending: Vec<Option<String>> = agent_states(&agents, &tickets, t0_ms())
            .into_iter()
            .map(|s| s.pending_offer)
            .collect();
        assert_eq!(pending, [Some("t1".into()), Some("gone".into()), None]);
    }

    #[test]
    fn wire_durations_are_capped_and_counts_saturate() {
        assert_eq!(duration(Duration::from_millis(1_500)), secs(1, 500_000_000));
        assert_eq!(duration(Duration::MAX), secs(315_576_000_000, 0));
        assert_eq!(count(u64::MAX), i32::MAX);
        assert_eq!(count(3usize), 3);
        assert_eq!(counter_window(), Duration::from_secs(15 * 60));
    }
}
