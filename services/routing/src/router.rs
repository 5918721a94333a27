//! The router: the domain's decisions applied to the live state.
//!
//! - Dispatch ([`Router::dispatch`]): read a department's queue head and ready agents (one
//!   script), let [`Snapshot::dispatch`] decide, make the offers (one script, which checks each
//!   again, so routers racing on the same Redis never offer a ticket twice).
//! - Background ([`Router::run`]): a change notice on the pub/sub channel (`d:<department>`)
//!   dispatches that department at once; every `tick` expires offers, signs out lapsed
//!   sessions and dispatches every department (routing steps that start with time); a lost
//!   live state is rebuilt from the ticket service.
//! - Offers: accept (held, recorded in the ticket service, then confirmed), decline, expiry.
//!
//! Every router process runs the same loop against the same Redis; there is no leader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::agents::{AgentRecord, AgentStore};
use crate::config::RouterSettings;
use crate::domain::agent::AgentState;
use crate::domain::config::RoutingConfig;
use crate::domain::queue::TicketRef;
use crate::domain::select::Snapshot;
use crate::error::{Error, Result};
use crate::leases::{LeaseHold, SessionLeases};
use crate::live::LiveError;
use crate::live::model::{LiveAgent, LiveOffer, LiveRecord, LiveTicket, time_to_ms};
use crate::live::state::{
    AgentRead, Claim, Ended, LiveState, NewOffer, Outcome, Peeked, Synced, TicketSync,
};
use crate::tickets::{AssignError, Tickets};

/// Where the time comes from: the system clock, or a test's.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved: tests of routing steps and expiries use it.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    /// A clock at `start`.
    pub fn new(start: OffsetDateTime) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.0
            .lock()
            .map(|now| *now)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The desktop sessions of this process, by agent: each agent's own channel of change
/// notices, so a notice wakes only that agent's sessions. (One broadcast to every session cost
/// O(sessions) task wake-ups per notice, and every offer makes two notices: with thousands of
/// desktops that was most of the router's CPU.) The value counts notices; only changes matter.
type Watchers = Mutex<HashMap<String, watch::Sender<u64>>>;

/// The change notices of one agent (offer, assignment, presence, session), for a desktop
/// session of this process. Dropping it unregisters the session.
#[derive(Debug)]
pub struct AgentNotices {
    agent: String,
    rx: watch::Receiver<u64>,
    watchers: Arc<Watchers>,
}

impl AgentNotices {
    /// Waits until a notice for the agent arrives after the last wait (or since subscribing).
    pub async fn changed(&mut self) {
        // The sender lives in the map while this receiver does, so this cannot fail; if it
        // ever did, waiting forever is right: the session still refreshes every heartbeat.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for AgentNotices {
    fn drop(&mut self) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        // The last session of the agent in this process: forget the agent.
        if watchers
            .get(&self.agent)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            watchers.remove(&self.agent);
        }
    }
}

/// Ready agents a dispatch round reads per ticket it found, per index (department, team),
/// before widening (see `Router::dispatch_rounds`).
pub const ROUND_AGENTS_PER_TICKET: usize = 8;

/// Ready agents a dispatch round reads per index at least: up to this many ready agents,
/// the choice among them is exact (every one is read).
pub const ROUND_AGENTS_AT_LEAST: usize = 64;

/// What one dispatch round came to.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Offers made.
    offers: usize,
    /// Whether another round may find more (a full queue head, offers lost to a race).
    more: bool,
    /// A ticket got no offer while an index had more ready agents than the round read.
    unmatched_in_window: bool,
}

/// The outcome of an accept.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The offer, as accepted.
    pub offer: LiveOffer,
    /// The ticket version after the assignment.
    pub ticket_version: i64,
    /// When it was assigned (Unix ms).
    pub assigned_ms: i64,
}

/// The router of one process. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    live: Arc<dyn LiveState>,
    agents: Arc<dyn AgentStore>,
    tickets: Tickets,
    config: RoutingConfig,
    settings: RouterSettings,
    clock: Arc<dyn Clock>,
    watchers: Arc<Watchers>,
    /// The desktop sessions of this process whose leases the background loop renews.
    leases: Arc<SessionLeases>,
    /// Departments changed since the dispatcher's last pass.
    marked: Arc<Marked>,
    /// Set once the live state is known to be complete.
    built: watch::Sender<bool>,
    /// Set when the server begins to shut down: streams end, the background loop stops.
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("live", &self.inner.live)
            .field("agents", &self.inner.agents)
            .finish()
    }
}

impl Router {
    /// A router over its parts.
    pub fn new(
        live: Arc<dyn LiveState>,
        agents: Arc<dyn AgentStore>,
        tickets: Tickets,
        config: RoutingConfig,
        settings: RouterSettings,
        clock: Arc<dyn Clock>,
    ) -> Router {
        let (built, _) = watch::channel(false);
        let (stopping, _) = watch::channel(false);
        Router {
            inner: Arc::new(Inner {
                live,
                agents,
                tickets,
                config,
                settings,
                clock,
                watchers: Arc::default(),
                leases: SessionLeases::new(settings.heartbeat_interval / 2),
                marked: Arc::default(),
                built,
                stopping,
            }),
        }
    }

    /// The live state.
    pub fn live(&self) -> &dyn LiveState {
        self.inner.live.as_ref()
    }

    /// The agent records.
    pub fn agents(&self) -> &dyn AgentStore {
        self.inner.agents.as_ref()
    }

    /// The routing rules.
    pub fn config(&self) -> &RoutingConfig {
        &self.inner.config
    }

    /// Session and timing settings.
    pub fn settings(&self) -> &RouterSettings {
        &self.inner.settings
    }

    /// Now, by the router's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Begins the shutdown: desktop streams end (their sessions keep their grace period, so
    /// desktops resume on another router) and the background loop stops.
    pub fn stop(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Becomes true when the shutdown begins.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// The change notices of `agent`, for a desktop session of this process.
    pub fn notices_of(&self, agent: &str) -> AgentNotices {
        let mut watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let rx = watchers
            .entry(agent.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        AgentNotices {
            agent: agent.to_owned(),
            rx,
            watchers: Arc::clone(&self.inner.watchers),
        }
    }

    /// Renews the lease of `session` (of `agent`) while the hold lives: a desktop session of
    /// this process holds it while its stream is open (see [`crate::leases`]).
    pub fn hold_lease(&self, agent: &str, session: &str) -> LeaseHold {
        self.inner.leases.hold(agent, session)
    }

    /// Wakes the desktop sessions of `agent` in this process, to read its live entry again.
    fn notify(&self, agent: &str) {
        let watchers = self
            .inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = watchers.get(agent) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Fails with UNAVAILABLE while the live state is being rebuilt after a loss.
    pub fn check_built(&self) -> Result<()> {
        if *self.inner.built.borrow() {
            Ok(())
        } else {
            Err(Error::LiveUnavailable(
                "the router is rebuilding its live state; retry shortly".into(),
            ))
        }
    }

    /// SyncTicket: applies the change and marks its department for the dispatcher (which runs
    /// in [`Router::run`]).
    pub async fn sync_ticket(&self, sync: &TicketSync) -> Result<Synced> {
        let synced = self.inner.live.sync(sync, self.now()).await?;
        if synced.applied && !sync.department.is_empty() {
            // The dispatcher takes it from here, with every other change since its last pass:
            // a dispatch per call, at 1,000 calls a second, raced each other for the same
            // queue head and agents.
            self.inner.marked.mark(&sync.department);
        }
        Ok(synced)
    }

    /// Dispatches after a change in `department`: a round over that department and every other
    /// department its ready agents serve (so an agent in several departments still takes the
    /// best-ranked ticket across all of them). Returns the offers made.
    pub async fn dispatch(&self, department: &str) -> Result<usize> {
        self.dispatch_rounds(vec![department.to_owned()], true)
            .await
    }

    /// Dispatches every department in one round.
    pub async fn dispatch_all(&self) -> Result<usize> {
        let departments = self.inner.live.departments().await?;
        self.dispatch_rounds(departments, false).await
    }

    /// Rounds until nothing more matches: a round whose offers all went through may leave more
    /// (queues longer than their head); one whose offers lost races to another router re-reads.
    /// Bounded: the next notice or tick carries on.
    ///
    /// A round first reads a window of each index's ready agents in proportion to the tickets
    /// it found ([`ROUND_AGENTS_PER_TICKET`], at least [`ROUND_AGENTS_AT_LEAST`]); only if a
    /// ticket is left without an offer while an index had more ready agents than that does
    /// the next round read up to `dispatch_agents` of them. With a few tickets a change and
    /// thousands of ready agents, reading hundreds of agents per round was most of Redis's
    /// work and of the bytes it sent.
    async fn dispatch_rounds(&self, departments: Vec<String>, expand: bool) -> Result<usize> {
        let mut made = 0;
        let mut widen = false;
        for _ in 0..4 {
            let round = self.dispatch_round(&departments, expand, widen).await?;
            made += round.offers;
            if round.unmatched_in_window && !widen {
                widen = true;
                continue;
            }
            if round.offers == 0 || !round.more {
                break;
            }
        }
        Ok(made)
    }

    /// One round: read the queue heads and ready agents of `departments` (and, with `expand`,
    /// of the other departments those agents serve), decide with [`Snapshot::dispatch`] over
    /// all of them at once (tickets in rank order across queues), and make the offers, one
    /// script per department. `widen`: read up to `dispatch_agents` ready agents per index
    /// rather than a window in proportion to the tickets (see `Router::dispatch_rounds`).
    async fn dispatch_round(
        &self,
        departments: &[String],
        expand: bool,
        widen: bool,
    ) -> Result<Round> {
        let s = &self.inner.settings;
        let teams = self.inner.config.steps.team_ids();
        // A window starting anywhere in each index, so that with more ready agents than are
        // read every one of them is as likely to be considered (the index is in id order).
        let rotation = fastrand::u32(..);
        let agent_read = AgentRead {
            most: s.dispatch_agents,
            per_ticket: if widen { 0 } else { ROUND_AGENTS_PER_TICKET },
            least: ROUND_AGENTS_AT_LEAST,
            rotation,
        };
        let mut read: BTreeSet<String> = BTreeSet::new();
        let mut tickets: Vec<(String, LiveTicket)> = Vec::new();
        let mut agents: BTreeMap<String, LiveAgent> = BTreeMap::new();
        let mut full_head = false;
        let mut partial = false;
        let mut pending: Vec<String> = departments.to_vec();
        while !pending.is_empty() {
            let batch: Vec<String> = pending
                .drain(..)
                .filter(|d| read.insert(d.clone()))
                .collect();
            let peeks = futures::future::join_all(batch.iter().map(|d| {
                self.inner
                    .live
                    .peek_round(d, s.dispatch_tickets, agent_read, &teams)
            }))
            .await;
            for peeked in peeks {
                let Peeked {
                    tickets: t,
                    agents: a,
                    partial: p,
                } = peeked?;
                full_head |= t.len() >= s.dispatch_tickets;
                partial |= p;
                tickets.extend(t);
                for (id, agent) in a {
                    if expand && let Some(rec) = &agent.rec {
                        pending.extend(rec.depts.keys().filter(|d| !read.contains(*d)).cloned());
                    }
                    agents.insert(id, agent);
                }
            }
        }
        if tickets.is_empty() || agents.is_empty() {
            return Ok(Round {
                offers: 0,
                more: false,
                unmatched_in_window: !tickets.is_empty() && partial,
            });
        }
        let now = self.now();
        let now_ms = time_to_ms(now);
        let refs: Vec<TicketRef> = tickets
            .iter()
            .map(|(id, t)| t.to_ref(id, None))
            .collect::<Result<_, LiveError>>()?;
        let by_id: BTreeMap<&str, &LiveTicket> =
            tickets.iter().map(|(id, t)| (id.as_str(), t)).collect();
        let states: Vec<AgentState> = agents
            .iter()
            .map(|(id, a)| a.to_state(id, a.offer.clone(), now_ms))
            .collect();
        let snapshot = Snapshot::new(&self.inner.config, &states, &refs, now);
        let mut by_department: BTreeMap<String, Vec<NewOffer>> = BTreeMap::new();
        for m in snapshot.dispatch() {
            let Some(ticket) = by_id.get(m.ticket_id.as_str()) else {
                continue;
            };
            by_department
                .entry(ticket.dept.clone().unwrap_or_default())
                .or_default()
                .push(NewOffer {
                    ticket_id: m.ticket_id.clone(),
                    ticket_version: ticket.v.clone(),
                    agent_id: m.agent_id.clone(),
                    reservation_id: uuid::Uuid::new_v4().to_string(),
                    step: m.step_kind,
                });
        }
        let matched: usize = by_department.values().map(Vec::len).sum();
        let unmatched_in_window = partial && matched < tickets.len();
        if by_department.is_empty() {
            return Ok(Round {
                offers: 0,
                more: false,
                unmatched_in_window,
            });
        }
        let expire = self
            .inner
            .config
            .offers
            .expire_time(now)
            .unwrap_or(now + Duration::from_secs(20));
        let results = futures::future::join_all(
            by_department
                .iter()
                .map(|(d, offers)| self.inner.live.reserve(d, offers, now, expire)),
        )
        .await;
        let mut made = 0;
        let mut lost = false;
        for (result, offers) in results.into_iter().zip(by_department.values()) {
            let reserved = result?;
            lost |= reserved.len() < offers.len();
            made += reserved.len();
        }
        Ok(Round {
            offers: made,
            more: full_head || lost,
            unmatched_in_window,
        })
    }

    /// Expires offers past their time (and accept holds of routers that died mid-accept).
    pub async fn expire_offers(&self) -> Result<usize> {
        let now = self.now();
        let due = self.inner.live.due_offers(now, 200).await?;
        let mut expired = 0;
        for rid in due {
            let ended = self
                .inner
                .live
                .end_offer(
                    &rid,
                    Outcome::Expired,
                    None,
                    &["pending", "accepting"],
                    self.inner.config.offers.away_after_missed,
                    now,
                )
                .await?;
            if matches!(ended, Ended::Ended(_)) {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Signs out agents whose session lapsed, withdrawing their pending offers.
    pub async fn lapse_sessions(&self) -> Result<usize> {
        let now = self.now();
        let withdraw = self.inner.live.lapse_sessions(now, 200).await?;
        for rid in &withdraw {
            self.withdraw(rid, "presence_changed").await?;
        }
        Ok(withdraw.len())
    }

    /// Withdraws a pending offer (the agent went away, was disabled, the session lapsed).
    pub async fn withdraw(&self, reservation_id: &str, reason: &'static str) -> Result<()> {
        self.inner
            .live
            .end_offer(
                reservation_id,
                Outcome::Cancelled(reason),
                None,
                &["pending"],
                0,
                self.now(),
            )
            .await?;
        Ok(())
    }

    /// AcceptOffer.
    pub async fn accept(&self, agent_id: &str, reservation_id: &str) -> Result<Accepted> {
        let now = self.now();
        let hold = now + self.inner.settings.accept_hold;
        let subject = format!("reservations/{reservation_id}");
        let offer = match self
            .inner
            .live
            .claim(reservation_id, agent_id, now, hold)
            .await?
        {
            Claim::Claimed(offer) => offer,
            Claim::AlreadyAccepted(offer) => {
                let ticket = self.inner.live.ticket(&offer.ticket).await?;
                let version = ticket
                    .as_ref()
                    .filter(|t| t.rid.as_deref() == Some(reservation_id))
                    .map(LiveTicket::version)
                    .transpose()?
                    .unwrap_or(0);
                let assigned_ms = offer.ended.map_or(time_to_ms(now), |e| e as i64);
                return Ok(Accepted {
                    offer,
                    ticket_version: version,
                    assigned_ms,
                });
            }
            Claim::Missing => {
                return Err(Error::NotFound {
                    what: "reservation",
                    id: reservation_id.to_owned(),
                });
            }
            Claim::NotYours => {
                return Err(Error::precondition(
                    "OFFER_NOT_YOURS",
                    subject,
                    format!("reservation {reservation_id} was offered to another agent"),
                ));
            }
            Claim::NotPending(state) => {
                return Err(Error::precondition(
                    "OFFER_NOT_PENDING",
                    subject,
                    format!("reservation {reservation_id} is {state}, not pending"),
                ));
            }
        };
        match self
            .inner
            .tickets
            .assign(&offer.ticket, agent_id, reservation_id)
            .await
        {
            Ok(ticket) => {
                let assigned_ms = self
                    .inner
                    .live
                    .confirm(reservation_id, &offer, ticket.version, self.now())
                    .await?;
                Ok(Accepted {
                    offer,
                    ticket_version: ticket.version,
                    assigned_ms,
                })
            }
            Err(AssignError::Refused(why)) => {
                self.inner
                    .live
                    .end_offer(
                        reservation_id,
                        Outcome::Cancelled("assignment_refused"),
                        None,
                        &["accepting"],
                        0,
                        self.now(),
                    )
                    .await?;
                Err(Error::precondition(
                    "TICKET_NOT_ASSIGNABLE",
                    format!("tickets/{}", offer.ticket),
                    format!("the ticket service refused the assignment: {why}"),
                ))
            }
            Err(AssignError::Unavailable(why)) => {
                self.inner.live.unclaim(reservation_id).await?;
                Err(Error::DependencyUnavailable(format!(
                    "the ticket service did not record the assignment ({why}); the offer stays \
                     pending until it expires, retry"
                )))
            }
        }
    }

    /// DeclineOffer.
    pub async fn decline(&self, agent_id: &str, reservation_id: &str) -> Result<LiveOffer> {
        let subject = format!("reservations/{reservation_id}");
        match self
            .inner
            .live
            .end_offer(
                reservation_id,
                Outcome::Declined,
                Some(agent_id),
                &["pending"],
                0,
                self.now(),
            )
            .await?
        {
            Ended::Ended(offer) | Ended::Unchanged(offer) => Ok(offer),
            Ended::Missing => Err(Error::NotFound {
                what: "reservation",
                id: reservation_id.to_owned(),
            }),
            Ended::NotYours => Err(Error::precondition(
                "OFFER_NOT_YOURS",
                subject,
                format!("reservation {reservation_id} was offered to another agent"),
            )),
            Ended::NotPending(state) => Err(Error::precondition(
                "OFFER_NOT_PENDING",
                subject,
                format!("reservation {reservation_id} is {state}, not pending"),
            )),
        }
    }

    /// The agent's record, or NOT_FOUND.
    pub async fn record(&self, agent_id: &str) -> Result<AgentRecord> {
        self.inner
            .agents
            .get(agent_id)
            .await?
            .ok_or_else(|| Error::agent_not_found(agent_id))
    }

    /// Mirrors a record into the live state (after UpsertAgent), withdrawing a pending offer
    /// if the agent was disabled.
    pub async fn publish_record(&self, record: &AgentRecord) -> Result<()> {
        let withdraw = self
            .inner
            .live
            .put_record(&record.id, &live_record(record), self.now())
            .await?;
        if let Some(rid) = withdraw {
            self.withdraw(&rid, "presence_changed").await?;
        }
        Ok(())
    }

    /// The live entry of an agent.
    pub async fn live_agent(&self, agent_id: &str) -> Result<Option<LiveAgent>> {
        Ok(self.inner.live.agent(agent_id).await?)
    }

    /// Runs the background loop until `shutdown`: change notices, the tick, rebuilds.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let listener = tokio::spawn(self.clone().listen(shutdown.clone()));
        let renewer = tokio::spawn(self.clone().renew_leases(shutdown.clone()));
        let dispatcher = tokio::spawn(self.clone().dispatch_marked());
        let mut tick = tokio::time::interval(self.inner.settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purge_every = 0u32;
        let mut outage = Outage::new("router background work", "tick");
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            outage.note(&self.tick(&mut purge_every).await);
        }
        listener.abort();
        renewer.abort();
        dispatcher.abort();
    }

    /// Renews the leases of this process's desktop sessions, one slot every
    /// [`leases::TICK`](crate::leases::TICK), [`leases::BATCH`](crate::leases::BATCH) per
    /// call, until `shutdown`. A session not renewed (replaced, signed out, the live state lost)
    /// is woken to read its entry and act: end its stream, or register again.
    async fn renew_leases(self, mut shutdown: watch::Receiver<bool>) {
        let leases = Arc::clone(&self.inner.leases);
        let slots = leases.slot_count();
        let mut tick = tokio::time::interval(crate::leases::TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut slot = 0usize;
        let mut outage = Outage::new("session lease renewals", "slot");
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            let due = leases.slot(slot);
            slot = (slot + 1) % slots;
            for batch in due.chunks(crate::leases::BATCH) {
                let now = self.now();
                let lease_until = now + self.inner.settings.resume_grace;
                let renewed = self
                    .inner
                    .live
                    .renew_sessions(batch, now, lease_until)
                    .await
                    .map_err(Error::from);
                outage.note(&renewed);
                let Ok(stale) = renewed else { break };
                for agent in stale {
                    self.notify(&agent);
                }
            }
        }
    }

    async fn tick(&self, purge_every: &mut u32) -> Result<()> {
        if !self.inner.live.is_built().await? {
            self.inner.built.send_replace(false);
            self.rebuild().await?;
            return Ok(());
        }
        if !*self.inner.built.borrow() {
            self.inner.built.send_replace(true);
        }
        self.expire_offers().await?;
        self.lapse_sessions().await?;
        self.dispatch_all().await?;
        *purge_every += 1;
        if *purge_every >= 120 {
            *purge_every = 0;
            self.inner.live.purge(self.now(), 1000).await?;
        }
        Ok(())
    }

    /// Rebuilds the live state from the ticket service after it was lost: every open ticket is
    /// synced again (versioned, so concurrent relay calls are harmless). One router does it,
    /// under a lock; the others wait for the marker.
    pub async fn rebuild(&self) -> Result<()> {
        let owner = uuid::Uuid::new_v4().to_string();
        if !self.inner.live.lock_rebuild(&owner, 120_000).await? {
            return Ok(());
        }
        let result = self.rebuild_locked().await;
        self.inner.live.unlock_rebuild(&owner).await?;
        result
    }

    /// Pages the ticket service's open tickets into the live state: each page is one batch
    /// ([`LiveState::sync_many`]), and the next page is fetched while the batch runs, so the
    /// rebuild costs about one ListTickets and one Redis pipeline per 500 tickets, overlapped.
    async fn rebuild_locked(&self) -> Result<()> {
        // A page, read and parsed: the parsing of the next page overlaps the Redis pipeline of
        // this one too.
        let fetch = |token: String| {
            let tickets = self.inner.tickets.clone();
            async move {
                let (tickets, next) = tickets
                    .open_tickets(token)
                    .await
                    .map_err(Error::DependencyUnavailable)?;
                let mut syncs = Vec::with_capacity(tickets.len());
                for ticket in &tickets {
                    let routing = tierline_proto::routing_ticket::routing_ticket(ticket);
                    match crate::api::convert::parse_routing_ticket(&routing) {
                        Ok(sync) => syncs.push(sync),
                        Err(e) => {
                            tracing::warn!(ticket = %ticket.id, error = %e, "ticket skipped in rebuild")
                        }
                    }
                }
                Ok::<_, Error>((syncs, next))
            }
        };
        let mut page = fetch(String::new()).await?;
        let mut synced = 0usize;
        loop {
            let (syncs, next) = page;
            let prefetch = async {
                if next.is_empty() {
                    None
                } else {
                    Some(fetch(next.clone()).await)
                }
            };
            let (results, following) =
                futures::join!(self.inner.live.sync_many(&syncs, self.now()), prefetch);
            for result in results? {
                result?;
                synced += 1;
            }
            match following {
                Some(following) => page = following?,
                None => break,
            }
        }
        self.inner.live.mark_built(self.now()).await?;
        self.inner.built.send_replace(true);
        tracing::info!(
            tickets = synced,
            "live state rebuilt from the ticket service"
        );
        Ok(())
    }

    /// Listens to the change notices of every router sharing the live state; reconnects after
    /// a loss. An agent's notice wakes its sessions at once; a department's marks it for the
    /// dispatcher ([`Router::dispatch_marked`], a task of its own in [`Router::run`]), so that
    /// neither waits for the other.
    ///
    /// (The listener used to dispatch itself, after gathering notices until none came for
    /// 1 ms. Under a steady 1,000 tickets a second a notice always came within 1 ms, so it
    /// never dispatched: only the tick did, 256 offers per 500 ms, and the queue grew while
    /// hundreds of agents sat ready.)
    async fn listen(self, shutdown: watch::Receiver<bool>) {
        let marked = Arc::clone(&self.inner.marked);
        let mut logged = false;
        while !*shutdown.borrow() {
            let mut messages = match self.inner.live.notices().await {
                Ok(messages) => {
                    logged = false;
                    messages
                }
                Err(e) => {
                    if !logged {
                        tracing::warn!(error = %e, "change notices unavailable; retrying every second");
                        logged = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(payload) = messages.next().await {
                if let Some(department) = payload.strip_prefix("d:") {
                    marked.mark(department);
                } else if let Some(agent) = payload.strip_prefix("a:") {
                    self.notify(agent);
                }
            }
        }
    }

    /// Dispatches the departments marked by notices, for ever: each pass takes every department
    /// marked since the last, so the notices of a burst that came during one pass make one
    /// dispatch each in the next.
    async fn dispatch_marked(self) {
        let marked = Arc::clone(&self.inner.marked);
        loop {
            let departments = marked.take().await;
            if !*self.inner.built.borrow() {
                continue;
            }
            for department in departments {
                if let Err(e) = self.dispatch(&department).await {
                    tracing::warn!(%department, error = %tierline_runtime::error::DisplayChain(&e), "dispatch failed");
                }
            }
        }
    }
}

/// Logs a background loop's outage when it starts and when it ends, not on every failed turn
/// (those go to debug).
struct Outage {
    what: &'static str,
    turn: &'static str,
    failing: bool,
}

impl Outage {
    fn new(what: &'static str, turn: &'static str) -> Outage {
        Outage {
            what,
            turn,
            failing: false,
        }
    }

    fn note<T>(&mut self, result: &Result<T>) {
        let (what, turn) = (self.what, self.turn);
        match result {
            Ok(_) if self.failing => {
                tracing::info!("{what} running again");
                self.failing = false;
            }
            Ok(_) => {}
            Err(e) if !self.failing => {
                tracing::warn!(error = %tierline_runtime::error::DisplayChain(e), "{what} failing; retrying every {turn}");
                self.failing = true;
            }
            Err(e) => {
                tracing::debug!(error = %tierline_runtime::error::DisplayChain(e), "{what} failed again");
            }
        }
    }
}

/// Departments whose notices came since the dispatcher last took them.
#[derive(Debug, Default)]
struct Marked {
    departments: Mutex<BTreeSet<String>>,
    /// Holds a permit while departments are marked and not taken, so no mark is missed.
    wake: tokio::sync::Notify,
}

impl Marked {
    fn mark(&self, department: &str) {
        let mut departments = self.departments.lock().unwrap_or_else(|e| e.into_inner());
        if !departments.contains(department) {
            departments.insert(department.to_owned());
        }
        drop(departments);
        self.wake.notify_one();
    }

    /// Waits until a department is marked, and takes all of them.
    async fn take(&self) -> BTreeSet<String> {
        loop {
            self.wake.notified().await;
            let taken =
                std::mem::take(&mut *self.departments.lock().unwrap_or_else(|e| e.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
        }
    }
}

/// The live-state copy of an agent record.
pub fn live_record(record: &AgentRecord) -> LiveRecord {
    use tierline_types::Channel;
    LiveRecord {
        name: record.display_name.clone(),
        depts: record
            .departments
            .iter()
            .map(|d| (d.clone(), true))
            .collect(),
        team: record.team_id.clone(),
        skills: record.skills.iter().map(|s| (s.clone(), true)).collect(),
        cap: Channel::ALL
            .iter()
            .filter(|c| record.capacity.get(**c) > 0)
            .map(|c| (c.as_str().to_owned(), f64::from(record.capacity.get(*c))))
            .collect(),
        dis: record.disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_made_before_or_during_a_pass_are_taken_once_by_the_next() {
        let marked = Marked::default();
        marked.mark("billing");
        marked.mark("support");
        marked.mark("billing");
        let taken = marked.take().await;
        assert_eq!(
            taken.into_iter().collect::<Vec<_>>(),
            ["billing", "support"]
        );
        // Nothing marked since: the next take waits.
        let waiting = tokio::time::timeout(Duration::from_millis(20), marked.take()).await;
        assert!(waiting.is_err(), "nothing to take");
        marked.mark("sales");
        let taken = tokio::time::timeout(Duration::from_secs(1), marked.take())
            .await
            .expect("a mark wakes the dispatcher");
        assert_eq!(taken.into_iter().collect::<Vec<_>>(), ["sales"]);
    }
}
