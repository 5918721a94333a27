//! Benches of the ticket service's hot pure functions: the priority rule, SLA due times on
//! business-hours calendars with holidays and pauses, and parsing a CreateTicketRequest.
//!
//! `cargo bench -p tierline-ticket` measures them; `cargo test --all-targets` runs each once as
//! a test. See docs/benchmarks.md, "Benches in the code".

use std::collections::{BTreeSet, HashMap};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jiff::civil::Date;
use tierline_proto::common;
use tierline_proto::ticket as pb;
use tierline_ticket::api::convert::{fingerprint, parse_create};
use tierline_ticket::domain::priority::{MAX_PRIORITY_BOOST, PriorityInputs, priority};
use tierline_ticket::domain::sla::{
    BusinessCalendar, OpeningHours, Severity, SlaClock, SlaPolicies, WeeklyHours,
};
use tierline_types::Tier;
use time::OffsetDateTime;
use time::macros::datetime;

const HOUR: Duration = Duration::from_secs(3_600);

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

// ---------------------------------------------------------------------------------------------
// Priority
// ---------------------------------------------------------------------------------------------

fn priority_rule(c: &mut Criterion) {
    let mut all = Vec::new();
    for tier in [Some(Tier::A), Some(Tier::B), Some(Tier::C), None] {
        for severity in Severity::ALL {
            for priority_boost in 0..=MAX_PRIORITY_BOOST {
                for escalation_level in 0..=2 {
                    all.push(PriorityInputs {
                        tier,
                        severity,
                        priority_boost,
                        escalation_level,
                    });
                }
            }
        }
    }
    let mut group = c.benchmark_group("priority");
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function(BenchmarkId::new("every_input", all.len()), |b| {
        b.iter(|| {
            black_box(&all)
                .iter()
                .map(|inputs| priority(inputs, Tier::C))
                .fold(0i32, i32::wrapping_add)
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// SLA
// ---------------------------------------------------------------------------------------------

fn date(s: &str) -> Date {
    s.parse().expect("a date")
}

/// A realistic office calendar: Berlin, Monday to Friday with a lunch break, Friday short,
/// with the 2026 public holidays around Easter, May and Christmas.
fn berlin_office() -> BusinessCalendar {
    let day = [OpeningHours::hours(8, 12), OpeningHours::hours(13, 18)];
    BusinessCalendar {
        time_zone: "Europe/Berlin".into(),
        hours: WeeklyHours {
            friday: vec![OpeningHours::hours(8, 12), OpeningHours::hours(13, 16)],
            ..WeeklyHours::mon_to_fri(&day)
        },
        holidays: BTreeSet::from([
            date("2026-04-03"),
            date("2026-04-06"),
            date("2026-05-01"),
            date("2026-05-14"),
            date("2026-05-25"),
            date("2026-12-24"),
            date("2026-12-25"),
            date("2026-12-31"),
        ]),
    }
}

fn policies() -> SlaPolicies {
    let mut policies = SlaPolicies::office_hours_in("Europe/Berlin");
    policies
        .calendars
        .insert("business_hours".into(), berlin_office());
    policies
}

fn sla(c: &mut Criterion) {
    let policies = policies();
    let berlin = berlin_office();
    // Friday 27 March 2026, 15:30 in Berlin: half an hour before closing, a weekend and the
    // spring-forward night (29 March) ahead.
    let friday_late: OffsetDateTime = datetime!(2026-03-27 14:30 UTC);
    // Wednesday 1 April 2026, 10:00 in Berlin: the Easter holidays ahead.
    let before_easter: OffsetDateTime = datetime!(2026-04-01 08:00 UTC);

    let mut group = c.benchmark_group("sla");

    // Calendar arithmetic on its own.
    group.bench_function("add_8h_over_weekend_and_dst", |b| {
        b.iter(|| berlin.add(black_box(friday_late), black_box(8 * HOUR)));
    });
    group.bench_function("add_50h_over_easter", |b| {
        b.iter(|| berlin.add(black_box(before_easter), black_box(50 * HOUR)));
    });
    group.bench_function("open_between_30_days", |b| {
        let until = before_easter + time::Duration::days(30);
        b.iter(|| berlin.open_between(black_box(before_easter), black_box(until)));
    });

    // Starting a ticket's clock: policy, calendar, both due times.
    for (name, tier, severity) in [
        ("start_tier_a_critical_24x7", Tier::A, Severity::Critical),
        ("start_tier_b_office_hours", Tier::B, Severity::Medium),
        ("start_tier_c_office_hours_50h", Tier::C, Severity::Low),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let policy = policies.select(black_box(tier), black_box(severity));
                let calendar = policies.calendar(&policy.calendar).expect("configured");
                SlaClock::start(policy, calendar, black_box(friday_late)).expect("in range")
            });
        });
    }

    // A tier C clock paused on Friday afternoon (waiting on a third party), resumed Tuesday:
    // the pause's open time, and the resolution due time moved by it.
    let policy = policies.select(Tier::C, Severity::Medium);
    let mut paused =
        SlaClock::start(policy, &berlin, datetime!(2026-03-26 09:00 UTC)).expect("in range");
    let _ = paused.first_response(datetime!(2026-03-26 10:00 UTC));
    let _ = paused.pause(datetime!(2026-03-27 13:00 UTC));
    let tuesday = datetime!(2026-03-31 09:30 UTC);
    group.bench_function("resume_after_weekend_pause", |b| {
        b.iter_batched(
            || paused.clone(),
            |mut clock| clock.resume(&berlin, black_box(tuesday)).expect("in range"),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("resolution_due_while_paused", |b| {
        b.iter(|| paused.resolution_due(&berlin, black_box(tuesday)));
    });
    let running = SlaClock::start(policy, &berlin, friday_late).expect("in range");
    group.bench_function("status_and_next_check", |b| {
        b.iter(|| {
            let now = black_box(tuesday);
            (running.status(now), running.next_check(now))
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// CreateTicket at the API boundary
// ---------------------------------------------------------------------------------------------

/// A typical request: a caller identified by phone, tags (one repeated), attributes and a skill.
fn by_identity() -> pb::CreateTicketRequest {
    pb::CreateTicketRequest {
        idempotency_key: "call-4711".into(),
        customer: Some(pb::create_ticket_request::Customer::CallerIdentity(
            common::IdentityRef {
                kind: common::IdentityKind::Phone as i32,
                value: " 020 7946 0018 ".into(),
                region_code: "gb".into(),
            },
        )),
        channel: common::Channel::Voice as i32,
        r#type: pb::TicketType::Complaint as i32,
        category: "product_quality".into(),
        severity: pb::Severity::High as i32,
        subject: "  Kettle leaks ".into(),
        description: "It leaks from the base whenever it is filled above the halfway mark, and \
                      the kitchen counter is now damaged."
            .into(),
        language_code: "PT-br".into(),
        customer_emotion: pb::CustomerEmotion::Angry as i32,
        desired_outcome: "A replacement".into(),
        tags: vec!["vip".into(), "kettle".into(), "vip".into()],
        attributes: HashMap::from([
            ("batch".to_string(), "B-42".to_string()),
            ("order.id".to_string(), "9001".to_string()),
        ]),
        required_skills: vec!["product:kettle".into()],
        follow_up_of_ticket_id: String::new(),
    }
}

fn create_ticket(c: &mut Criterion) {
    let identity = by_identity();
    let by_id = pb::CreateTicketRequest {
        customer: Some(pb::create_ticket_request::Customer::CustomerId(
            "0193b7c2-6f1e-7cc0-a1d2-3b4c5d6e7f80".into(),
        )),
        follow_up_of_ticket_id: "0193b7c2-6f1e-7cc0-a1d2-3b4c5d6e7f81".into(),
        ..by_identity()
    };
    assert!(parse_create(&identity).is_ok() && parse_create(&by_id).is_ok());
    // Most fields wrong: every check runs and every violation is reported.
    let invalid = pb::CreateTicketRequest {
        idempotency_key: String::new(),
        customer: Some(pb::create_ticket_request::Customer::CustomerId(
            "not-a-uuid".into(),
        )),
        channel: 0,
        language_code: "not a language".into(),
        tags: vec![String::new(), "x".repeat(500)],
        ..by_identity()
    };
    assert!(parse_create(&invalid).is_err());

    let mut group = c.benchmark_group("create_ticket");
    group.bench_function("parse_by_identity", |b| {
        b.iter(|| parse_create(black_box(&identity)).is_ok());
    });
    group.bench_function("parse_by_customer_id", |b| {
        b.iter(|| parse_create(black_box(&by_id)).is_ok());
    });
    group.bench_function("parse_invalid", |b| {
        b.iter(|| parse_create(black_box(&invalid)).is_err());
    });
    group.bench_function("fingerprint", |b| {
        b.iter(|| fingerprint(black_box(&identity)));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = priority_rule, sla, create_ticket
}
criterion_main!(benches);
