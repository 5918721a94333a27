//! The command line: global flags and every subcommand (clap derive). Values are parsed here
//! into what the requests need, so a malformed value is a usage error (exit status 2) before any
//! call is made.

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use tierline_proto::common::{Channel, Tier};
use tierline_proto::routing::{AgentPresenceState, AwayReason, DeclineReason};
use tierline_proto::ticket::TicketState;

/// Command-line client of the Tierline contact centre: take IVR calls, work offers from an agent
/// desktop in the terminal, look up customers and tickets, watch queues, explain routing.
///
/// Output is for people by default; `--json` prints the replies as JSON (proto field names,
/// enum names, RFC 3339 times). Exit status: 0 on success, 1 when a call fails, 2 on a usage
/// error, 3 when a service cannot be reached.
#[derive(Debug, Parser)]
#[command(
    name = "tierline",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Address of the customer-profile service.
    #[arg(
        long,
        global = true,
        env = "TIERLINE_CUSTOMER_ADDR",
        default_value = "http://127.0.0.1:50051",
        value_name = "URL"
    )]
    pub customer_addr: String,
    /// Address of the ticket service.
    #[arg(
        long,
        global = true,
        env = "TIERLINE_TICKET_ADDR",
        default_value = "http://127.0.0.1:50052",
        value_name = "URL"
    )]
    pub ticket_addr: String,
    /// Address of the routing service.
    #[arg(
        long,
        global = true,
        env = "TIERLINE_ROUTING_ADDR",
        default_value = "http://127.0.0.1:50053",
        value_name = "URL"
    )]
    pub routing_addr: String,
    /// Print replies as JSON: one document per command, one line per event for streams.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for a service to answer a call (and to connect), e.g. 10s, 1500ms.
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Act as the IVR: take a call, announce the wait.
    #[command(subcommand)]
    Ivr(IvrCommand),
    /// Agents: records, the desktop, offers and presence.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Look up customers.
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// Look up and work tickets.
    #[command(subcommand)]
    Ticket(TicketCommand),
    /// Live queue statistics.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Why a ticket waits, why an agent gets no offers.
    #[command(subcommand)]
    Explain(ExplainCommand),
    /// Run all three services in this process on embedded storage (SQLite files and an
    /// in-process routing state; no PostgreSQL or Redis), for trying Tierline and developing
    /// against it. Listens on the usual ports; Ctrl-C stops it.
    Dev(DevArgs),
}

/// `tierline dev`
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Directory of the SQLite files, created if missing; kept across restarts.
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".tierline-dev",
        conflicts_with = "in_memory"
    )]
    pub data_dir: std::path::PathBuf,
    /// Keep everything in memory instead: gone when the process stops.
    #[arg(long)]
    pub in_memory: bool,
    /// Do not load the demo customers and agents (loaded when the data directory is new).
    #[arg(long)]
    pub no_demo: bool,
    /// Configuration file: each service's settings under its name, e.g.
    /// `[routing.routing.steps]`, `[ticket.sla]`, `[customer.server] listen = "..."`.
    /// Environment variables work too: TIERLINE_ROUTING__ROUTER__TICK=200ms.
    #[arg(long, value_name = "FILE", env = "TIERLINE_DEV_CONFIG")]
    pub config: Option<std::path::PathBuf>,
}

/// `tierline ivr ...`
#[derive(Debug, Subcommand)]
pub enum IvrCommand {
    /// Take a call: look the caller up, open a ticket (idempotent on the call id), and read back
    /// the ticket number, queue position and estimated wait.
    Call(IvrCall),
    /// Estimate how long a new call would wait for an agent.
    Wait(IvrWait),
    /// List the categories a caller can choose from, and their departments.
    Categories,
}

/// `tierline ivr call`
#[derive(Debug, Clone, Args)]
pub struct IvrCall {
    /// The calling number, local ("020 7946 0018") or international ("+44 20 7946 0018").
    #[arg(long, value_name = "PHONE")]
    pub from: String,
    /// Region to read a local number in (ISO 3166-1 alpha-2); default: the service's.
    #[arg(long, value_name = "CODE")]
    pub region: Option<String>,
    /// Ticket category (see `tierline ivr categories`); default: the configured default.
    #[arg(long, value_name = "ID")]
    pub category: Option<String>,
    /// The channel the contact came in on.
    #[arg(long, value_enum, default_value_t = ChannelArg::Voice, ignore_case = true)]
    pub channel: ChannelArg,
    /// The call id, the ticket's idempotency key: repeating a call with it returns the same
    /// ticket. Default: a fresh UUID (printed).
    #[arg(long, value_name = "ID")]
    pub call_id: Option<String>,
    /// One-line subject; default: the category's name.
    #[arg(long)]
    pub subject: Option<String>,
    /// BCP-47 language the caller speaks ("de"); adds the skill language:<code>.
    #[arg(long, value_name = "CODE")]
    pub language: Option<String>,
    /// What the caller said.
    #[arg(value_name = "DESCRIPTION")]
    pub description: String,
}

/// `tierline ivr wait`
#[derive(Debug, Clone, Args)]
pub struct IvrWait {
    /// The department (queue) the call would go to.
    #[arg(long)]
    pub department: String,
    /// The caller's tier.
    #[arg(long, value_enum, ignore_case = true)]
    pub tier: TierArg,
    /// The channel.
    #[arg(long, value_enum, default_value_t = ChannelArg::Voice, ignore_case = true)]
    pub channel: ChannelArg,
    /// A skill the ticket would require, "<kind>:<value>"; repeatable.
    #[arg(long = "skill", value_parser = parse_skill, value_name = "KIND:VALUE")]
    pub skills: Vec<String>,
}

/// `tierline agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent, or change the given fields of an existing one.
    Upsert(AgentUpsert),
    /// Show an agent and its live status.
    Get {
        /// The agent's id.
        id: String,
    },
    /// List agents.
    List(AgentList),
    /// Be the agent's desktop: show offers, assignments and presence as they arrive, and take
    /// commands from standard input, one per line:
    ///
    ///   accept [RESERVATION]        accept the current offer (or wait for the next one)
    ///   decline [REASON] [NOTE…]    decline it (not-ready, lacks-skill, conflict, other)
    ///   resolve [TICKET] SUMMARY…   resolve a ticket (default: the latest assignment)
    ///   away REASON [NOTE…]         break, meal, meeting, training, wrap-up, other
    ///   available                   take offers again
    ///   quit                        sign out and leave (so does the end of the input)
    #[command(verbatim_doc_comment)]
    Desktop(Desktop),
    /// Accept an offer.
    Accept {
        /// The agent.
        agent: String,
        /// The offer's reservation id.
        reservation: String,
    },
    /// Decline an offer.
    Decline {
        /// The agent.
        agent: String,
        /// The offer's reservation id.
        reservation: String,
        /// Why.
        #[arg(long, value_enum)]
        reason: Option<DeclineReasonArg>,
        /// Free text, at most 200 characters.
        #[arg(long)]
        note: Option<String>,
    },
    /// Set an agent's presence: available (needs a connected desktop), away REASON, offline.
    Presence(PresenceArgs),
}

/// `tierline agent upsert`
#[derive(Debug, Clone, Args)]
pub struct AgentUpsert {
    /// The agent's id.
    #[arg(long)]
    pub id: String,
    /// Name shown to supervisors (required when creating).
    #[arg(long)]
    pub name: Option<String>,
    /// A department (queue) the agent serves; repeatable. Replaces the list.
    #[arg(long = "department", value_name = "DEPARTMENT")]
    pub departments: Vec<String>,
    /// The agent's team ("key-accounts").
    #[arg(long)]
    pub team: Option<String>,
    /// A skill held, "<kind>:<value>" ("language:de"); repeatable. Replaces the list.
    #[arg(long = "skill", value_parser = parse_skill, value_name = "KIND:VALUE")]
    pub skills: Vec<String>,
    /// Tickets of a channel worked at once, "<channel>=<n>" ("voice=1", "chat=3"); repeatable.
    /// Replaces the list.
    #[arg(long = "capacity", value_parser = parse_capacity, value_name = "CHANNEL=N")]
    pub capacities: Vec<Capacity>,
    /// Disable the agent (no offers, cannot connect).
    #[arg(long, conflicts_with = "enable")]
    pub disable: bool,
    /// Enable a disabled agent.
    #[arg(long)]
    pub enable: bool,
}

/// `tierline agent list`
#[derive(Debug, Clone, Args)]
pub struct AgentList {
    /// Only agents serving this department.
    #[arg(long)]
    pub department: Option<String>,
    /// Only agents of this team.
    #[arg(long)]
    pub team: Option<String>,
    /// Only agents in this presence; repeatable.
    #[arg(long, value_enum)]
    pub presence: Vec<PresenceArg>,
    /// Include disabled agents.
    #[arg(long)]
    pub include_disabled: bool,
}

/// `tierline agent desktop`
#[derive(Debug, Clone, Args)]
pub struct Desktop {
    /// The agent.
    pub id: String,
    /// Start AVAILABLE for offers (default: away, not ready, until `available`).
    #[arg(long)]
    pub available: bool,
    /// Read no commands: only show events, until interrupted or signed out elsewhere.
    #[arg(long)]
    pub no_input: bool,
}

/// `tierline agent presence`
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// The agent.
    pub agent: String,
    /// The presence to set.
    #[arg(value_enum)]
    pub state: PresenceArg,
    /// Why the agent is away (required with `away`).
    #[arg(value_enum, required_if_eq("state", "away"))]
    pub reason: Option<AwayReasonArg>,
    /// Free text, at most 200 characters.
    #[arg(long)]
    pub note: Option<String>,
}

/// `tierline customer ...`
#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Find the customers who hold a phone number, email address or external id.
    Lookup(CustomerLookup),
    /// Show a customer's profile.
    Get {
        /// The customer's id.
        id: String,
        /// Also show the most recent contacts on the customer's timeline.
        #[arg(long)]
        timeline: bool,
    },
}

/// `tierline customer lookup`
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("identity").required(true).args(["phone", "email", "external_id"])))]
pub struct CustomerLookup {
    /// A phone number, local or international.
    #[arg(long)]
    pub phone: Option<String>,
    /// An email address.
    #[arg(long)]
    pub email: Option<String>,
    /// An external or membership id.
    #[arg(long)]
    pub external_id: Option<String>,
    /// Region to read a local phone number in ("GB").
    #[arg(long, value_name = "CODE")]
    pub region: Option<String>,
}

/// `tierline ticket ...`
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Show a ticket, by id or number ("T-4821-7730", "48217730").
    Get {
        /// The ticket's id or number.
        ticket: String,
        /// Also show its history.
        #[arg(long)]
        history: bool,
    },
    /// List tickets, oldest first.
    List(TicketList),
    /// Resolve a ticket for an agent (starting work on it first if it is only assigned).
    Resolve {
        /// The ticket's id or number.
        ticket: String,
        /// The agent resolving it.
        #[arg(long)]
        agent: String,
        /// What was done.
        summary: String,
    },
    /// Record the follow-up of a resolved ticket: what the customer expected (a, above 0 up to
    /// 10) and perceived (b, 0 to 10); satisfaction is b / a.
    FollowUp(FollowUp),
}

/// `tierline ticket list`
#[derive(Debug, Clone, Args)]
pub struct TicketList {
    /// Only tickets in this state; repeatable.
    #[arg(long, value_enum)]
    pub state: Vec<StateArg>,
    /// Only tickets of this department; repeatable.
    #[arg(long)]
    pub department: Vec<String>,
    /// Only tickets assigned to this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only tickets of this customer.
    #[arg(long)]
    pub customer: Option<String>,
    /// Only tickets of this tier; repeatable.
    #[arg(long, value_enum, ignore_case = true)]
    pub tier: Vec<TierArg>,
    /// Newest first.
    #[arg(long)]
    pub newest_first: bool,
    /// At most this many tickets.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
}

/// `tierline ticket follow-up`
#[derive(Debug, Clone, Args)]
pub struct FollowUp {
    /// The ticket's id or number.
    pub ticket: String,
    /// The agent making the follow-up (not one who handled the ticket).
    #[arg(long)]
    pub agent: String,
    /// a: what the customer expected, above 0 and at most 10.
    #[arg(long, allow_negative_numbers = true)]
    pub expected: f64,
    /// b: what the customer perceived, 0 to 10.
    #[arg(long, allow_negative_numbers = true)]
    pub perceived: f64,
    /// The customer's words.
    #[arg(long)]
    pub comment: Option<String>,
    /// Also close the ticket.
    #[arg(long)]
    pub close: bool,
}

/// `tierline queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Waiting tickets per department and tier, agents, offers.
    Stats {
        /// Only this department; repeatable.
        #[arg(long)]
        department: Vec<String>,
        /// Keep printing a snapshot every interval, until interrupted.
        #[arg(long)]
        watch: bool,
        /// Time between snapshots with --watch, 1s to 60s.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "watch")]
        interval: Option<Duration>,
    },
}

/// `tierline explain ...`
#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// Where a ticket stands in routing, and why each agent is or is not offered it.
    Ticket {
        /// The ticket's id or number.
        ticket: String,
    },
    /// Why an agent is or is not receiving offers.
    Agent {
        /// The agent's id.
        agent: String,
    },
}

/// A customer tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TierArg {
    /// The most valuable customers.
    #[value(name = "A")]
    A,
    /// The middle.
    #[value(name = "B")]
    B,
    /// The many.
    #[value(name = "C")]
    C,
}

impl TierArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        match self {
            TierArg::A => Tier::A as i32,
            TierArg::B => Tier::B as i32,
            TierArg::C => Tier::C as i32,
        }
    }
}

/// A contact channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelArg {
    /// A phone call.
    Voice,
    /// A web form.
    Web,
    /// Email.
    Email,
    /// Live chat.
    Chat,
    /// In person.
    Counter,
    /// Another system.
    Api,
}

impl ChannelArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let c = match self {
            ChannelArg::Voice => Channel::Voice,
            ChannelArg::Web => Channel::Web,
            ChannelArg::Email => Channel::Email,
            ChannelArg::Chat => Channel::Chat,
            ChannelArg::Counter => Channel::Counter,
            ChannelArg::Api => Channel::Api,
        };
        c as i32
    }
}

/// A ticket state, for filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)]
pub enum StateArg {
    New,
    Queued,
    Assigned,
    #[value(alias = "in_progress")]
    InProgress,
    #[value(alias = "pending_customer")]
    PendingCustomer,
    #[value(alias = "on_hold")]
    OnHold,
    Resolved,
    Closed,
    Merged,
    Cancelled,
}

impl StateArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let s = match self {
            StateArg::New => TicketState::New,
            StateArg::Queued => TicketState::Queued,
            StateArg::Assigned => TicketState::Assigned,
            StateArg::InProgress => TicketState::InProgress,
            StateArg::PendingCustomer => TicketState::PendingCustomer,
            StateArg::OnHold => TicketState::OnHold,
            StateArg::Resolved => TicketState::Resolved,
            StateArg::Closed => TicketState::Closed,
            StateArg::Merged => TicketState::Merged,
            StateArg::Cancelled => TicketState::Cancelled,
        };
        s as i32
    }
}

/// An agent's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresenceArg {
    /// Ready for offers.
    Available,
    /// Taking no new offers.
    Away,
    /// Signed out.
    Offline,
}

impl PresenceArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let p = match self {
            PresenceArg::Available => AgentPresenceState::Available,
            PresenceArg::Away => AgentPresenceState::Away,
            PresenceArg::Offline => AgentPresenceState::Offline,
        };
        p as i32
    }
}

/// Why an agent goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AwayReasonArg {
    /// A short break.
    Break,
    /// A meal break.
    Meal,
    /// A meeting or coaching.
    Meeting,
    /// Training.
    Training,
    /// Finishing work on a contact.
    #[value(alias = "wrap_up", alias = "wrapup")]
    WrapUp,
    /// Anything else (say what in the note).
    Other,
}

impl AwayReasonArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let r = match self {
            AwayReasonArg::Break => AwayReason::Break,
            AwayReasonArg::Meal => AwayReason::Meal,
            AwayReasonArg::Meeting => AwayReason::Meeting,
            AwayReasonArg::Training => AwayReason::Training,
            AwayReasonArg::WrapUp => AwayReason::WrapUp,
            AwayReasonArg::Other => AwayReason::Other,
        };
        r as i32
    }
}

/// Why an agent declines an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeclineReasonArg {
    /// Not ready for another ticket now.
    #[value(alias = "not_ready")]
    NotReady,
    /// Lacks the knowledge or language.
    #[value(alias = "lacks_skill")]
    LacksSkill,
    /// Should not handle this customer.
    #[value(alias = "conflict_of_interest", alias = "conflict-of-interest")]
    Conflict,
    /// Anything else (say what in the note).
    Other,
}

impl DeclineReasonArg {
    /// The wire value.
    pub fn wire(self) -> i32 {
        let r = match self {
            DeclineReasonArg::NotReady => DeclineReason::NotReady,
            DeclineReasonArg::LacksSkill => DeclineReason::LacksSkill,
            DeclineReasonArg::Conflict => DeclineReason::ConflictOfInterest,
            DeclineReasonArg::Other => DeclineReason::Other,
        };
        r as i32
    }
}

/// A channel capacity, from "voice=1".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// The channel.
    pub channel: ChannelArg,
    /// Tickets of the channel worked at once.
    pub max_active_tickets: i32,
}

/// Parses "10s", "1500ms", "2m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} (write e.g. 10s, 500ms, 2m)"))
}

/// Parses "<channel>=<n>".
pub fn parse_capacity(s: &str) -> Result<Capacity, String> {
    let (channel, n) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: write <channel>=<n>, e.g. voice=1 or chat=3"))?;
    let channel = ChannelArg::from_str(channel.trim(), true).map_err(|_| {
        format!("{channel:?} is not a channel (voice, web, email, chat, counter, api)")
    })?;
    let max_active_tickets = n
        .trim()
        .parse::<i32>()
        .map_err(|_| format!("{n:?} is not a whole number"))?;
    Ok(Capacity {
        channel,
        max_active_tickets,
    })
}

/// Checks the "<kind>:<value>" shape of a skill; the service checks the rest.
pub fn parse_skill(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((kind, value)) if !kind.trim().is_empty() && !value.trim().is_empty() => {
            Ok(s.trim().to_owned())
        }
        _ => Err(format!("{s:?}: write <kind>:<value>, e.g. language:de")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tierline").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ivr_call_takes_the_caller_category_and_description_with_voice_and_defaults() {
        let cli = parse(&[
            "ivr",
            "call",
            "--from",
            "020 7946 0018",
            "--region",
            "GB",
            "--category",
            "product_quality",
            "the kettle leaks",
        ])
        .expect("parses");
        let Command::Ivr(IvrCommand::Call(call)) = cli.command else {
            panic!("not ivr call: {:?}", cli.command);
        };
        assert_eq!(call.from, "020 7946 0018");
        assert_eq!(call.region.as_deref(), Some("GB"));
        assert_eq!(call.category.as_deref(), Some("product_quality"));
        assert_eq!(call.channel, ChannelArg::Voice);
        assert_eq!(call.call_id, None);
        assert_eq!(call.description, "the kettle leaks");
        assert_eq!(cli.global.timeout, Duration::from_secs(10));
        assert_eq!(cli.global.ticket_addr, "http://127.0.0.1:50052");
        assert!(!cli.global.json);
    }

    #[test]
    fn global_flags_go_anywhere_on_the_line() {
        let cli = parse(&[
            "ticket",
            "get",
            "T-1234-5678",
            "--json",
            "--timeout",
            "1500ms",
            "--ticket-addr",
            "http://10.0.0.1:9",
        ])
        .expect("parses");
        assert!(cli.global.json);
        assert_eq!(cli.global.timeout, Duration::from_millis(1500));
        assert_eq!(cli.global.ticket_addr, "http://10.0.0.1:9");
    }

    #[test]
    fn a_missing_required_flag_is_a_usage_error() {
        let err = parse(&["ivr", "call", "the kettle leaks"]).expect_err("needs --from");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn agent_upsert_reads_repeated_departments_skills_and_capacities() {
        let cli = parse(&[
            "agent",
            "upsert",
            "--id",
            "agent-7",
            "--name",
            "Ana Silva",
            "--department",
            "quality_assurance",
            "--department",
            "hr",
            "--skill",
            "language:de",
            "--capacity",
            "voice=1",
            "--capacity",
            "Chat=3",
        ])
        .expect("parses");
        let Command::Agent(AgentCommand::Upsert(u)) = cli.command else {
            panic!("not agent upsert");
        };
        assert_eq!(u.departments, ["quality_assurance", "hr"]);
        assert_eq!(u.skills, ["language:de"]);
        assert_eq!(
            u.capacities,
            [
                Capacity {
                    channel: ChannelArg::Voice,
                    max_active_tickets: 1
                },
                Capacity {
                    channel: ChannelArg::Chat,
                    max_active_tickets: 3
                }
            ]
        );
    }

    #[test]
    fn malformed_capacities_skills_and_durations_are_refused() {
        assert!(parse_capacity("voice").is_err());
        assert!(parse_capacity("fax=1").is_err());
        assert!(parse_capacity("voice=one").is_err());
        assert!(parse_skill("german").is_err());
        assert!(parse_skill("language:").is_err());
        assert!(parse_duration("soon").is_err());
        let err = parse(&["agent", "upsert", "--id", "a", "--capacity", "fax=2"])
            .expect_err("bad capacity");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn presence_away_needs_a_reason_and_tiers_ignore_case() {
        assert!(parse(&["agent", "presence", "a1", "away"]).is_err());
        let cli = parse(&["agent", "presence", "a1", "away", "wrap_up"]).expect("parses");
        let Command::Agent(AgentCommand::Presence(p)) = cli.command else {
            panic!("not presence");
        };
        assert_eq!(p.reason, Some(AwayReasonArg::WrapUp));
        let cli = parse(&["ivr", "wait", "--department", "hr", "--tier", "a"]).expect("parses");
        let Command::Ivr(IvrCommand::Wait(w)) = cli.command else {
            panic!("not wait");
        };
        assert_eq!(w.tier, TierArg::A);
        assert_eq!(w.tier.wire(), Tier::A as i32);
    }

    #[test]
    fn customer_lookup_needs_exactly_one_identity() {
        assert!(parse(&["customer", "lookup"]).is_err());
        assert!(parse(&["customer", "lookup", "--phone", "1", "--email", "a@b.c"]).is_err());
        assert!(parse(&["customer", "lookup", "--email", "a@b.c"]).is_ok());
    }

    #[test]
    fn ticket_list_filters_repeat_and_accept_underscored_states() {
        let cli = parse(&[
            "ticket",
            "list",
            "--state",
            "in_progress",
            "--state",
            "queued",
            "--agent",
            "agent-7",
        ])
        .expect("parses");
        let Command::Ticket(TicketCommand::List(l)) = cli.command else {
            panic!("not list");
        };
        assert_eq!(l.state, [StateArg::InProgress, StateArg::Queued]);
        assert_eq!(l.agent.as_deref(), Some("agent-7"));
        assert_eq!(l.limit, 50);
    }

    #[test]
    fn queue_interval_needs_watch() {
        assert!(parse(&["queue", "stats", "--interval", "2s"]).is_err());
        assert!(parse(&["queue", "stats", "--watch", "--interval", "2s"]).is_ok());
    }
}
