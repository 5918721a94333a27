//! The raw limits: what PostgreSQL and Redis do on this machine, at the load's concurrency,
//! for the work Tierline's hot paths give them, without Tierline in between. Each Tierline
//! figure is reported beside its limit, because absolute numbers on a shared machine say little.
//!
//! - PostgreSQL: in a scratch database (created here, on the ticket service's own schema, and
//!   dropped afterwards) the writes of intake: a ticket row and its CREATED event (the outbox
//!   row) in one transaction, through sqlx, from `concurrency` tasks on a pool of as many
//!   connections.
//! - Redis: a Lua script of the routing assignment scripts' shape (EVALSHA; a few keys under
//!   one hash tag; ZADD, ZPOPMIN, HGET/HSET of JSON), from `concurrency` tasks on one
//!   multiplexed connection as the router uses, on a key prefix of its own deleted afterwards.

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use prost::Message as _;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, Executor as _, PgConnection};
use tierline_proto::common::{Channel, IdentityKind, IdentityRef, Tier};
use tierline_proto::ticket as tpb;

use crate::stats::{Latency, LatencySummary};

/// The schema the raw writes go to: the ticket service's own, so the row carries the same
/// indexes and constraints as a real ticket.
static TICKET_SCHEMA: sqlx::migrate::Migrator = sqlx::migrate!("../../services/ticket/migrations");

/// How long each limit runs before it is measured (connections warm, plans cached).
const LIMIT_WARMUP: Duration = Duration::from_secs(2);

/// One raw limit as measured.
#[derive(Debug, Clone, Serialize)]
pub struct RawLimit {
    /// What was measured.
    pub what: String,
    /// Tasks issuing operations at once.
    pub concurrency: usize,
    /// Length of the measurement.
    pub seconds: f64,
    /// Operations completed in it.
    pub operations: u64,
    /// Operations per second.
    pub per_second: f64,
    /// Latency of one operation.
    pub latency: LatencySummary,
    /// Failed operations by kind (a limit run with errors is not a limit).
    pub errors: BTreeMap<String, u64>,
}

/// Both limits; either is absent if it could not be measured (the reason is in `problems`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Limits {
    /// Raw PostgreSQL ticket+outbox transactions.
    pub postgres: Option<RawLimit>,
    /// Raw Redis assignment-shaped script calls.
    pub redis: Option<RawLimit>,
    /// Why a limit is missing.
    pub problems: Vec<String>,
}

/// Measures both limits, one after the other (never at once: they share the machine).
pub async fn measure(
    database_url: &str,
    redis_url: &str,
    concurrency: usize,
    duration: Duration,
) -> Limits {
    let mut limits = Limits::default();
    eprintln!(
        "limits: raw PostgreSQL ticket+outbox writes, {concurrency} at once, {}",
        humantime::format_duration(duration)
    );
    match postgres(database_url, concurrency, duration).await {
        Ok(l) => limits.postgres = Some(l),
        Err(e) => limits
            .problems
            .push(format!("raw PostgreSQL limit not measured: {e:#}")),
    }
    eprintln!(
        "limits: raw Redis assignment-shaped script, {concurrency} at once, {}",
        humantime::format_duration(duration)
    );
    match redis(redis_url, concurrency, duration).await {
        Ok(l) => limits.redis = Some(l),
        Err(e) => limits
            .problems
            .push(format!("raw Redis limit not measured: {e:#}")),
    }
    for p in &limits.problems {
        eprintln!("limits: {p}");
    }
    limits
}

/// Runs `op` from `concurrency` tasks for the warm-up plus `duration`, counting only what
/// completes after the warm-up. `op` gets a sequence number unique across tasks.
async fn drive<F, Fut>(
    concurrency: usize,
    duration: Duration,
    op: F,
) -> (u64, Latency, BTreeMap<String, u64>, f64)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now() + LIMIT_WARMUP;
    let end = start + duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let op = Arc::clone(&op);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut latency = Latency::new();
            let mut ops = 0u64;
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let result = op(seq).await;
                let done = Instant::now();
                if done < start || done >= end {
                    continue;
                }
                match result {
                    Ok(()) => {
                        ops += 1;
                        latency.record(done - began);
                    }
                    Err(kind) => *errors.entry(kind).or_default() += 1,
                }
            }
            (ops, latency, errors)
        }));
    }
    let mut total = 0;
    let mut latency = Latency::new();
    let mut errors = BTreeMap::new();
    for t in tasks {
        match t.await {
            Ok((ops, l, e)) => {
                total += ops;
                latency.merge(&l);
                for (k, v) in e {
                    *errors.entry(k).or_default() += v;
                }
            }
            Err(e) => *errors.entry(format!("task failed: {e}")).or_default() += 1,
        }
    }
    (total, latency, errors, duration.as_secs_f64())
}

fn raw_limit(
    what: &str,
    concurrency: usize,
    (operations, latency, errors, seconds): (u64, Latency, BTreeMap<String, u64>, f64),
) -> RawLimit {
    RawLimit {
        what: what.to_owned(),
        concurrency,
        seconds,
        operations,
        per_second: per_second(operations, seconds),
        latency: latency.summary(),
        errors,
    }
}

/// `count` over `seconds`; zero for an empty interval.
pub fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// The raw PostgreSQL limit, in a scratch database dropped afterwards (also on failure).
pub async fn postgres(admin_url: &str, concurrency: usize, duration: Duration) -> Result<RawLimit> {
    let admin = PgConnectOptions::from_str(admin_url)
        .with_context(|| format!("--database-url {admin_url:?}"))?;
    let name = format!("tierline_bench_raw_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    let result = postgres_in(admin.clone().database(&name), concurrency, duration).await;
    // The scratch database goes whatever happened.
    let dropped = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
    let limit = result?;
    dropped.with_context(|| format!("DROP DATABASE {name}"))?;
    Ok(limit)
}

async fn postgres_in(
    options: PgConnectOptions,
    concurrency: usize,
    duration: Duration,
) -> Result<RawLimit> {
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .min_connections(u32::try_from(concurrency).unwrap_or(u32::MAX))
        .connect_with(options)
        .await
        .context("connecting to the scratch database")?;
    TICKET_SCHEMA
        .run(&pool)
        .await
        .context("applying the ticket service's schema to the scratch database")?;
    let snapshot = Arc::new(sample_snapshot());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let measured = {
        let pool = pool.clone();
        drive(concurrency, duration, move |seq| {
            let pool = pool.clone();
            let snapshot = Arc::clone(&snapshot);
            let key = format!("raw-{run}-{seq}");
            async move {
                insert_ticket(&pool, seq, &key, &snapshot)
                    .await
                    .map_err(|e| sqlx_kind(&e))
            }
        })
        .await
    };
    pool.close().await;
    Ok(raw_limit(
        "PostgreSQL: ticket row + CREATED event (outbox) in one transaction",
        concurrency,
        measured,
    ))
}

/// Intake's write: the ticket with its CREATED event, one statement (as the ticket service's
/// hot path does, one round trip, one implicit transaction), without Tierline's own
/// additions (the event-append lock and the NOTIFY), which are part of what Tierline costs.
async fn insert_ticket(
    pool: &sqlx::PgPool,
    seq: u64,
    key: &str,
    snapshot: &[u8],
) -> std::result::Result<(), sqlx::Error> {
    let fingerprint: Vec<u8> = (0..32).map(|_| fastrand::u8(..)).collect();
    let sla = serde_json::json!({
        "first_response": {"due": "2026-01-01T12:15:00Z", "status": "on_track"},
        "resolution": {"due": "2026-01-02T12:00:00Z", "status": "on_track"},
        "paused_for_ms": 0,
        "escalation_level": 0
    });
    sqlx::query(
        "WITH t AS (INSERT INTO tickets (id, number, idempotency_key, request_fingerprint, \
           caller_kind, caller_value, caller_region, channel, created_at, customer_id, \
           customer_resolution, snapshot_tier, snapshot_key_account, snapshot_display_name, \
           snapshot_at, type, category, department, severity, priority, subject, description, \
           required_skills, state, enqueue_at, pickup_due_at, sla, sla_status, timer_at, \
           updated_at) \
         VALUES ($1, $2, $3, $4, 'phone', $5, 'GB', 'voice', now(), $6, 'resolved', 'B', \
           false, 'Bench Customer', now(), 'complaint', 'billing', 'customer_service', 'medium', \
           222, 'Billing and payments', $7, '{}', 'new', now(), now() + interval '1 hour', $8, \
           'on_track', now() + interval '45 minutes', now()) \
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, version, state), \
         e AS (INSERT INTO ticket_events (event_id, ticket_id, ticket_version, kind, actor_kind, \
             actor_id, from_state, to_state, reason, event_at, snapshot) \
           SELECT $9, t.id, t.version, 'created', 'customer', $10, t.state, t.state, 'created', \
             now(), $11 FROM t RETURNING 1) \
         SELECT count(*) FROM e",
    )
    .bind(uuid::Uuid::now_v7())
    // Unique within the scratch database, so no draw can collide.
    .bind(format!("{:08}", seq % 100_000_000))
    .bind(key)
    .bind(fingerprint)
    .bind(format!("+4474{:08}", seq % 100_000_000))
    .bind(uuid::Uuid::new_v4())
    .bind("charged twice for one order; the refund promised last week has not arrived")
    .bind(sqlx::types::Json(sla))
    .bind(uuid::Uuid::now_v7())
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(snapshot)
    .execute(pool)
    .await?;
    Ok(())
}

/// A protobuf ticket the size of a real CREATED snapshot, for the event's `snapshot` column.
fn sample_snapshot() -> Vec<u8> {
    tpb::Ticket {
        id: uuid::Uuid::now_v7().to_string(),
        number: "T-4821-7730".into(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        customer_id: uuid::Uuid::new_v4().to_string(),
        caller_identity: Some(IdentityRef {
            kind: IdentityKind::Phone as i32,
            value: "+447400123456".into(),
            region_code: "GB".into(),
        }),
        channel: Channel::Voice as i32,
        category: "billing".into(),
        department: "customer_service".into(),
        priority: 222,
        subject: "Billing and payments".into(),
        description: "charged twice for one order; the refund promised last week has not arrived"
            .into(),
        routing: Some(tpb::TicketRouting {
            tier: Tier::B as i32,
            ..Default::default()
        }),
        version: 1,
        ..Default::default()
    }
    .encode_to_vec()
}

fn sqlx_kind(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => format!(
            "database error {}",
            db.code().map(|c| c.into_owned()).unwrap_or_default()
        ),
        sqlx::Error::PoolTimedOut => "pool timed out".into(),
        sqlx::Error::Io(_) => "i/o error".into(),
        other => format!("{other}").chars().take(80).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A dispatch step of the assignment scripts' shape: enqueue a ticket (HSET its JSON, ZADD it
/// to the queue), take the head of the queue (ZPOPMIN), read and rewrite its JSON as offered,
/// record the offer (HSET) and its expiry (ZADD). Each call adds one ticket and takes one, so
/// the queue keeps its depth.
///
/// KEYS: 1 queue, 2 tickets, 3 offers, 4 offer expiries. ARGV: 1 now ms, 2 ticket id, 3 score,
/// 4 ticket JSON, 5 reservation id.
const ASSIGN_SHAPED: &str = r#"
local now = tonumber(ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
local head = redis.call('ZPOPMIN', KEYS[1])
local tid = head[1]
local t = cjson.decode(redis.call('HGET', KEYS[2], tid))
t.st, t.offer = 'offered', ARGV[5]
redis.call('HSET', KEYS[2], tid, cjson.encode(t))
redis.call('HSET', KEYS[3], ARGV[5], cjson.encode({agent = 'a', ticket = tid, st = 'pending', made = now, exp = now + 20000}))
redis.call('ZADD', KEYS[4], now + 20000, ARGV[5])
return tid
"#;

/// Tickets in the queue before the run, so ZPOPMIN works on a queue of realistic depth.
const QUEUE_DEPTH: u64 = 1_000;

/// The keys of the raw Redis limit, all under one hash tag as the router's are.
#[derive(Debug, Clone)]
pub struct RawKeys {
    /// The prefix every key starts with.
    pub prefix: String,
    /// Queue, tickets, offers, offer expiries.
    pub keys: [String; 4],
}

impl RawKeys {
    /// Keys under `bench-raw:<run>:`.
    pub fn new(run: &str) -> RawKeys {
        let prefix = format!("bench-raw:{run}:");
        let base = format!("{prefix}{{{prefix}rt}}:");
        RawKeys {
            keys: [
                format!("{base}queue:customer_service"),
                format!("{base}tickets"),
                format!("{base}offers"),
                format!("{base}offer_exp"),
            ],
            prefix,
        }
    }
}

fn ticket_json(seq: u64) -> String {
    serde_json::json!({
        "v": "1", "st": "queued", "dept": "customer_service", "tier": "B", "chan": "voice",
        "member": format!("{seq:020}"),
        "d": "{\"customer_id\":\"9f1c\",\"customer_display_name\":\"Bench Customer\",\"subject\":\"Billing and payments\",\"priority\":222}"
    })
    .to_string()
}

/// The raw Redis limit, on keys of its own deleted afterwards (also on failure).
pub async fn redis(url: &str, concurrency: usize, duration: Duration) -> Result<RawLimit> {
    let client = redis::Client::open(url).with_context(|| format!("--redis-url {url:?}"))?;
    let conn = redis::aio::ConnectionManager::new(client)
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))?;
    let keys = RawKeys::new(&uuid::Uuid::new_v4().simple().to_string());
    let result = redis_on(conn.clone(), &keys, concurrency, duration).await;
    // UNLINK: the keys' memory is freed off Redis's main thread, so the reply does not wait
    // on freeing a large set.
    let deleted: redis::RedisResult<()> = redis::cmd("UNLINK")
        .arg(&keys.keys[..])
        .query_async(&mut conn.clone())
        .await;
    let limit = result?;
    deleted.with_context(|| format!("deleting the keys under {}", keys.prefix))?;
    Ok(limit)
}

async fn redis_on(
    mut conn: redis::aio::ConnectionManager,
    keys: &RawKeys,
    concurrency: usize,
    duration: Duration,
) -> Result<RawLimit> {
    let mut fill = redis::pipe();
    for seq in 0..QUEUE_DEPTH {
        let id = format!("fill-{seq}");
        fill.cmd("HSET")
            .arg(&keys.keys[1])
            .arg(&id)
            .arg(ticket_json(seq))
            .ignore();
        fill.cmd("ZADD")
            .arg(&keys.keys[0])
            .arg(seq)
            .arg(&id)
            .ignore();
    }
    fill.query_async::<()>(&mut conn)
        .await
        .context("filling the raw queue")?;
    let script = Arc::new(redis::Script::new(ASSIGN_SHAPED));
    let keys = Arc::new(keys.clone());
    let measured = drive(concurrency, duration, move |seq| {
        let mut conn = conn.clone();
        let script = Arc::clone(&script);
        let keys = Arc::clone(&keys);
        async move {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            // New tickets rank behind the filled ones, so the queue's head moves on.
            let score = QUEUE_DEPTH + seq;
            script
                .key(&keys.keys[0])
                .key(&keys.keys[1])
                .key(&keys.keys[2])
                .key(&keys.keys[3])
                .arg(now_ms.to_string())
                .arg(format!("t-{seq}"))
                .arg(score)
                .arg(ticket_json(score))
                .arg(format!("r-{seq}"))
                .invoke_async::<String>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| format!("redis {:?}", e.kind()))
        }
    })
    .await;
    Ok(raw_limit(
        "Redis: assignment-shaped Lua script (EVALSHA; ZADD, ZPOPMIN, HGET/HSET under one hash tag)",
        concurrency,
        measured,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_keys_share_one_hash_tag_under_their_own_prefix() {
        let k = RawKeys::new("abc");
        assert_eq!(k.prefix, "bench-raw:abc:");
        for key in &k.keys {
            assert!(
                key.starts_with("bench-raw:abc:{bench-raw:abc:rt}:"),
                "{key}"
            );
        }
    }

    #[test]
    fn rates_are_per_second() {
        assert_eq!(per_second(500, 10.0), 50.0);
        assert_eq!(per_second(5, 0.0), 0.0);
    }

    #[test]
    fn the_snapshot_is_a_ticket() {
        let bytes = sample_snapshot();
        let t = tpb::Ticket::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(t.department, "customer_service");
        assert!(bytes.len() > 200, "a realistic size: {}", bytes.len());
    }

    #[test]
    fn queued_tickets_are_json_the_script_can_read() {
        let v: serde_json::Value = serde_json::from_str(&ticket_json(7)).expect("json");
        assert_eq!(v["st"], "queued");
        assert_eq!(v["member"], "00000000000000000007");
    }
}
