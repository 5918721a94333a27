//! Benches of the routing domain's hot pure functions: queue ranking, agent selection and
//! dispatch rounds, and the key-account ladder.
//!
//! `cargo bench -p tierline-routing` measures them; `cargo test --all-targets` runs each once as
//! a test. Inputs are made deterministically (no random numbers), so every run measures the same
//! work. See docs/benchmarks.md, "Benches in the code".

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tierline_routing::domain::agent::{AgentState, AwayReason, ChannelCounts, Presence};
use tierline_routing::domain::config::RoutingConfig;
use tierline_routing::domain::queue::{RankKey, TicketRef, position_of_new};
use tierline_routing::domain::select::{SelectionPolicy, Snapshot, selection_order};
use tierline_types::{Channel, Tier};
use time::OffsetDateTime;
use time::macros::datetime;

/// The moment every snapshot is taken at.
const NOW: OffsetDateTime = datetime!(2026-03-02 11:00 UTC);

const DEPARTMENTS: [&str; 4] = ["billing", "support", "sales", "returns"];

/// A well-mixed number from an index (splitmix64), so inputs look varied without a generator.
fn mix(i: usize, salt: u64) -> u64 {
    let mut z = (i as u64)
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(items: &[T], i: usize, salt: u64) -> T {
    items[(mix(i, salt) % items.len() as u64) as usize]
}

/// `n` waiting tickets across four departments: mostly chat and email, a few voice; tiers
/// A/B/C about 1:3:6; enqueued over the last two hours; one in twenty escalated, one in ten
/// needing a language skill, one in ten with a pending offer. Every `key_account_every`-th
/// ticket (0: none) is a key account with an account manager among the first agents.
fn tickets(n: usize, key_account_every: usize) -> Vec<TicketRef> {
    let config = RoutingConfig::default();
    (0..n)
        .map(|i| {
            let tier = match mix(i, 1) % 10 {
                0 => Tier::A,
                1..=3 => Tier::B,
                _ => Tier::C,
            };
            let channel = pick(
                &[Channel::Chat, Channel::Chat, Channel::Email, Channel::Voice],
                i,
                2,
            );
            let waited = Duration::from_millis(mix(i, 3) % (2 * 3_600_000));
            let enqueue = NOW - waited;
            let due = config
                .targets
                .pickup_due(tier, enqueue)
                .expect("due time in range");
            let mut t = TicketRef::new(
                format!("0193b7c2-{i:06}"),
                pick(&DEPARTMENTS, i, 4),
                channel,
                tier,
                enqueue,
                due,
            );
            if mix(i, 5).is_multiple_of(20) {
                t.escalation_level = 1;
            }
            if mix(i, 6).is_multiple_of(10) {
                t.required_skills.insert("language:de".into());
            }
            if mix(i, 7).is_multiple_of(10) {
                t.offered_to = Some(format!("agent-{:04}", mix(i, 8) % 50));
            }
            if key_account_every > 0 && i % key_account_every == 0 {
                // Waited up to four minutes: the account manager, team and department steps
                // are each current for some of them.
                t.key_account = true;
                t.account_manager_id = Some(format!("agent-{:04}", mix(i, 9) % 10));
                t.offered_to = None;
                t.enqueue_time = NOW - Duration::from_secs(mix(i, 19) % 240);
                t.pickup_due = config
                    .targets
                    .pickup_due(tier, t.enqueue_time)
                    .expect("due time in range");
            }
            t
        })
        .collect()
}

/// `n` agents: each serves one or two departments; chat 3, email 5, voice 1; about 70 %
/// available (the rest away or offline), some with active tickets or a pending offer; a third
/// speak German; one in eight is in the key-account team.
fn agents(n: usize) -> Vec<AgentState> {
    (0..n)
        .map(|i| {
            let id = format!("agent-{i:04}");
            let mut a = AgentState::new(
                id.clone(),
                id,
                NOW - Duration::from_secs(mix(i, 10) % 3_600),
            );
            a.departments.insert(pick(&DEPARTMENTS, i, 11).to_owned());
            if mix(i, 12).is_multiple_of(3) {
                a.departments.insert(pick(&DEPARTMENTS, i, 13).to_owned());
            }
            if i.is_multiple_of(8) {
                a.team_id = Some("key-accounts".into());
            }
            if mix(i, 14).is_multiple_of(3) {
                a.skills.insert("language:de".into());
            }
            a.capacity =
                ChannelCounts::of(&[(Channel::Chat, 3), (Channel::Email, 5), (Channel::Voice, 1)]);
            a.connected = true;
            a.presence = match mix(i, 15) % 10 {
                0 | 1 => Presence::Away(AwayReason::Break),
                2 => Presence::Offline,
                _ => Presence::Available,
            };
            for k in 0..(mix(i, 16) % 3) {
                let channel = if k == 0 {
                    Channel::Chat
                } else {
                    Channel::Email
                };
                a.assign(channel, NOW - Duration::from_secs(60 * (k + 1)));
            }
            if mix(i, 17).is_multiple_of(12) {
                a.offer(format!("0193b7c2-{:06}", mix(i, 18) % 1_000));
            }
            a
        })
        .collect()
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

fn queue_ranking(c: &mut Criterion) {
    let routing = RoutingConfig::default();
    let mut group = c.benchmark_group("queue");
    for n in [1_000usize, 10_000] {
        let waiting = tickets(n, 0);
        group.throughput(Throughput::Elements(n as u64));
        // Rank keys of every waiting ticket, sorted: the queue order.
        group.bench_with_input(BenchmarkId::new("rank_sort", n), &waiting, |b, waiting| {
            b.iter(|| {
                let mut keys: Vec<RankKey> = waiting.iter().map(TicketRef::rank_key).collect();
                keys.sort_unstable();
                keys
            });
        });
        // A snapshot ranks every queue's tickets together (what each dispatch round starts with).
        let staff = agents(50);
        group.bench_with_input(
            BenchmarkId::new("snapshot_new", n),
            &waiting,
            |b, waiting| {
                b.iter(|| {
                    Snapshot::new(&routing, &staff, waiting, NOW)
                        .tickets()
                        .len()
                });
            },
        );
        // The sorted-set encoding and back: what every enqueue and queue read does.
        let keys: Vec<RankKey> = waiting.iter().map(TicketRef::rank_key).collect();
        group.bench_with_input(BenchmarkId::new("encode_decode", n), &keys, |b, keys| {
            b.iter(|| {
                keys.iter()
                    .filter_map(|k| RankKey::from_entry(k.score(), &k.member()))
                    .count()
            });
        });
        // The place a new ticket would take (EstimateWait).
        let due = routing
            .targets
            .pickup_due(Tier::B, NOW)
            .expect("due time in range");
        group.bench_with_input(BenchmarkId::new("position_of_new", n), &keys, |b, keys| {
            b.iter(|| position_of_new(keys, black_box(due), black_box(NOW)));
        });
    }
    group.finish();
}

fn selection(c: &mut Criterion) {
    let routing = RoutingConfig::default();
    let mut group = c.benchmark_group("select");
    for n_agents in [50usize, 500] {
        let staff = agents(n_agents);
        let waiting = tickets(64, 0);
        group.throughput(Throughput::Elements(n_agents as u64));
        group.bench_with_input(
            BenchmarkId::new("selection_order", n_agents),
            &staff,
            |b, staff| {
                b.iter(|| {
                    selection_order(
                        staff.iter(),
                        black_box(Channel::Chat),
                        SelectionPolicy::LeastOccupied,
                    )
                    .len()
                });
            },
        );
        let snapshot = Snapshot::new(&routing, &staff, &waiting, NOW);
        let ticket = waiting
            .iter()
            .find(|t| t.channel == Channel::Chat && t.offered_to.is_none())
            .expect("a chat ticket");
        group.bench_with_input(
            BenchmarkId::new("choose_agent", n_agents),
            ticket,
            |b, ticket| {
                b.iter(|| snapshot.choose_agent(ticket).map(|a| a.id.len()));
            },
        );
        // One dispatch round: 64 waiting tickets against every agent.
        group.throughput(Throughput::Elements(64));
        group.bench_function(BenchmarkId::new("dispatch_64_tickets", n_agents), |b| {
            b.iter(|| Snapshot::new(&routing, &staff, &waiting, NOW).dispatch());
        });
        // The same with every fourth ticket a key account: ladders with account manager,
        // team and department steps, at ages spanning all three.
        let key_accounts = tickets(64, 4);
        group.bench_function(
            BenchmarkId::new("dispatch_64_tickets_key_accounts", n_agents),
            |b| {
                b.iter(|| Snapshot::new(&routing, &staff, &key_accounts, NOW).dispatch());
            },
        );
    }
    // The ticket a free agent takes next, across its queues, with 1,000 waiting.
    let staff = agents(50);
    let waiting = tickets(1_000, 0);
    let snapshot = Snapshot::new(&routing, &staff, &waiting, NOW);
    let agent = staff
        .iter()
        .find(|a| a.is_available() && a.pending_offer.is_none() && a.active.total() == 0)
        .expect("a free agent");
    group.throughput(Throughput::Elements(1));
    group.bench_function("next_ticket_for_1000_waiting", |b| {
        b.iter(|| {
            snapshot
                .next_ticket_for(black_box(agent))
                .map(|t| t.id.len())
        });
    });
    group.finish();
}

fn key_account_steps(c: &mut Criterion) {
    let routing = RoutingConfig::default();
    let staff = agents(50);
    let mut ticket = tickets(1, 1).remove(0);
    ticket.preferred_agent_id = Some("agent-0003".into());
    let waiting = [ticket];
    let snapshot = Snapshot::new(&routing, &staff, &waiting, NOW);
    let mut group = c.benchmark_group("steps");
    group.bench_function("key_account_ladder", |b| {
        b.iter(|| snapshot.ladder(black_box(&waiting[0])));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = queue_ranking, selection, key_account_steps
}
criterion_main!(benches);
