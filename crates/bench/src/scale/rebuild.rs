//! `rebuild`: recovery of the router's live state after Redis lost it.
//!
//! 1. One real ticket through the ticket service (CreateTicket, a voice call in `--category`),
//!    waited for until QUEUED.
//! 2. Its row cloned in the ticket database `--tickets` − 1 times with new ids, numbers and
//!    idempotency keys, in one INSERT … SELECT over the table's own column list, so every row
//!    is exactly what the service writes (numbers are the original's plus 1, 2, … modulo 10^8,
//!    keys the original's plus `:clone:<n>`). The clones have no events, so nothing is relayed
//!    to the router: it only learns of them by rebuilding. Then ANALYZE, as a live table is.
//! 3. `--repeat` times: every key under the router's prefix is deleted in one UNLINK (only
//!    that prefix: the Redis is shared; never FLUSHALL), and Redis is polled every 2 ms: the
//!    rebuild lock appearing is the router noticing (its tick, every 500 ms, finds the `built`
//!    marker gone), the `built` marker coming back is the rebuild done. The queue's length is
//!    then checked against the tickets.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde_json::json;
use sqlx::Connection as _;
use tierline_proto::common::{Channel, IdentityKind, IdentityRef};
use tierline_proto::ticket as tpb;
use tierline_proto::ticket::ticket_service_client::TicketServiceClient;

use super::client::{self, Routing};
use super::probe::RedisProbe;
use super::report::{Figure, Goal, Report};
use super::{Common, positive_usize};
use crate::cpu;

/// Options of `rebuild`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Open queued tickets in the ticket service (one created, the rest cloned).
    #[arg(long, default_value = "100000", value_parser = positive_usize)]
    pub tickets: usize,
    /// The ticket service's database (its rows are cloned there).
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5432/tierline_ticket"
    )]
    pub ticket_database_url: String,
    /// Category of the ticket created (its department is the queue).
    #[arg(long, default_value = "billing")]
    pub category: String,
    /// Rebuilds timed.
    #[arg(long, default_value = "3", value_parser = positive_usize)]
    pub repeat: usize,
    /// The longest a rebuild may take before the scenario gives up.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub rebuild_timeout: Duration,
}

/// One rebuild as timed.
#[derive(Debug, Clone, Serialize)]
struct Timed {
    /// Keys deleted.
    keys_deleted: usize,
    /// Deletion to the rebuild lock appearing (the router's tick noticing).
    noticed_s: f64,
    /// The lock appearing to the `built` marker.
    rebuilt_s: f64,
    /// Deletion to the `built` marker.
    total_s: f64,
    /// Waiting tickets the router reports after it.
    waiting: u64,
    /// Tickets per second over the rebuild proper.
    tickets_per_s: f64,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: &Args) -> Result<Report> {
    let mut report = Report::new("rebuild");
    let run = client::run_id();
    let redis = RedisProbe::connect(&common.redis_url, &common.redis_prefix).await?;
    let routing = Routing::connect(&common.routing_addr, 1, common.timeout).await?;
    let mut tickets =
        TicketServiceClient::new(client::connect(&common.ticket_addr, common.timeout).await?);

    let created = tickets
        .create_ticket(client::request(
            tpb::CreateTicketRequest {
                idempotency_key: format!("scale-{run}-rebuild"),
                customer: Some(tpb::create_ticket_request::Customer::CallerIdentity(
                    IdentityRef {
                        kind: IdentityKind::Phone as i32,
                        value: "+44 7400 123456".into(),
                        region_code: "GB".into(),
                    },
                )),
                channel: Channel::Voice as i32,
                category: args.category.clone(),
                description: "charged twice; the refund has not arrived".into(),
                ..Default::default()
            },
            "service:tierline-scale",
            common.timeout,
        ))
        .await
        .context("CreateTicket")?
        .into_inner();
    let ticket = created.ticket.context("CreateTicket answered no ticket")?;
    let dept = ticket.department.clone();
    wait_queued(&mut tickets, &ticket.id, common.timeout).await?;

    eprintln!(
        "rebuild: cloning ticket {} {} times in the ticket database",
        ticket.number,
        args.tickets - 1
    );
    let began = Instant::now();
    clone_rows(
        &args.ticket_database_url,
        &ticket.id,
        args.tickets as i64 - 1,
    )
    .await?;
    let clone_seconds = began.elapsed().as_secs_f64();
    let expected = args.tickets as u64;

    let mut timed = Vec::new();
    let cpu_before = cpu::snapshot();
    let cpu_began = Instant::now();
    for r in 0..args.repeat {
        let t = rebuild_once(&redis, &routing, &dept, expected, args.rebuild_timeout).await?;
        eprintln!(
            "rebuild {}: noticed after {:.2} s, rebuilt in {:.2} s, {:.2} s in all; {} waiting",
            r + 1,
            t.noticed_s,
            t.rebuilt_s,
            t.total_s,
            t.waiting
        );
        timed.push(t);
    }
    let cpu_seconds = cpu_began.elapsed().as_secs_f64();
    report.cpu = cpu::usage(
        &cpu_before,
        &cpu::snapshot(),
        cpu_seconds,
        report.machine.cpus,
    );
    report.cpu_seconds = cpu_seconds;

    let median = |f: fn(&Timed) -> f64| {
        let mut v: Vec<f64> = timed.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let f = &mut report.figures;
    f.push(
        Figure::plain(
            &format!(
                "deletion to rebuilt, {expected} tickets (median of {})",
                timed.len()
            ),
            median(|t| t.total_s),
            "s",
        )
        .target(Goal::AtMost, 10.0),
    );
    f.push(Figure::plain(
        "of which the router noticing (tick)",
        median(|t| t.noticed_s),
        "s",
    ));
    f.push(Figure::plain(
        "of which the rebuild proper",
        median(|t| t.rebuilt_s),
        "s",
    ));
    f.push(Figure::plain(
        "rebuild rate",
        median(|t| t.tickets_per_s),
        "/s",
    ));
    let wrong: Vec<u64> = timed
        .iter()
        .map(|t| t.waiting)
        .filter(|w| *w != expected)
        .collect();
    if !wrong.is_empty() {
        report.notes.push(format!(
            "after a rebuild the router reported {wrong:?} waiting, not {expected}"
        ));
    }
    report.details = json!({
        "tickets": expected,
        "department": dept,
        "original_ticket": ticket.id,
        "clone_seconds": clone_seconds,
        "rebuilds": timed,
    });
    Ok(report)
}

async fn wait_queued(
    tickets: &mut TicketServiceClient<tonic::transport::Channel>,
    id: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = tickets
            .get_ticket(client::request(
                tpb::GetTicketRequest {
                    key: Some(tpb::get_ticket_request::Key::TicketId(id.to_owned())),
                },
                "service:tierline-scale",
                timeout,
            ))
            .await
            .context("GetTicket")?
            .into_inner();
        if t.state == tpb::TicketState::Queued as i32 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("ticket {id} did not become QUEUED (state {})", t.state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clones the ticket row `count` times (see the module's doc), then ANALYZE.
async fn clone_rows(url: &str, id: &str, count: i64) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to the ticket database at {url}"))?;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'tickets' \
         ORDER BY ordinal_position",
    )
    .fetch_all(&mut conn)
    .await
    .context("reading the tickets table's columns")?;
    if !columns.iter().any(|c| c == "idempotency_key") {
        bail!("{url} has no tickets table of the ticket service");
    }
    let sql = clone_sql(&columns);
    let id: uuid::Uuid = id.parse().context("the ticket id is not a UUID")?;
    let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(count)
        .execute(&mut conn)
        .await
        .context("cloning the ticket row")?
        .rows_affected();
    if inserted != count as u64 {
        bail!("cloned {inserted} rows, not {count}");
    }
    sqlx::query("ANALYZE tickets")
        .execute(&mut conn)
        .await
        .context("ANALYZE tickets")?;
    Ok(())
}

/// INSERT … SELECT of the row `$1`, `$2` times, over `columns`: a new id, number and
/// idempotency key (the unique columns), everything else as the service wrote it.
fn clone_sql(columns: &[String]) -> String {
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let values: Vec<String> = columns
        .iter()
        .map(|c| match c.as_str() {
            "id" => "gen_random_uuid()".to_owned(),
            "number" => "lpad(((t.number::bigint + g) % 100000000)::text, 8, '0')".to_owned(),
            "idempotency_key" => "t.idempotency_key || ':clone:' || g".to_owned(),
            other => format!("t.\"{other}\""),
        })
        .collect();
    format!(
        "INSERT INTO tickets ({}) SELECT {} FROM tickets t, generate_series(1, $2::bigint) AS g \
         WHERE t.id = $1",
        quoted.join(", "),
        values.join(", ")
    )
}

/// Deletes the router's keys and times the rebuild.
async fn rebuild_once(
    redis: &RedisProbe,
    routing: &Routing,
    dept: &str,
    expected: u64,
    timeout: Duration,
) -> Result<Timed> {
    let began = Instant::now();
    let keys_deleted = redis.delete_all().await?;
    let mut noticed: Option<Instant> = None;
    let done = loop {
        if noticed.is_none() && redis.exists("rebuild").await? {
            noticed = Some(Instant::now());
        }
        if redis.exists("built").await? {
            break Instant::now();
        }
        if began.elapsed() > timeout {
            bail!("no rebuild within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    // A rebuild shorter than the poll may show no lock: count it from the deletion.
    let noticed = noticed.unwrap_or(began);
    routing.wait_built(Duration::from_secs(10)).await?;
    let waiting = routing.waiting(dept).await?;
    let rebuilt_s = done.duration_since(noticed).as_secs_f64();
    Ok(Timed {
        keys_deleted,
        noticed_s: noticed.duration_since(began).as_secs_f64(),
        rebuilt_s,
        total_s: done.duration_since(began).as_secs_f64(),
        waiting,
        tickets_per_s: if rebuilt_s > 0.0 {
            expected as f64 / rebuilt_s
        } else {
            0.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clone_replaces_only_the_unique_columns() {
        let cols: Vec<String> = ["id", "number", "idempotency_key", "state", "created_at"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let sql = clone_sql(&cols);
        assert!(sql.starts_with(
            "INSERT INTO tickets (\"id\", \"number\", \"idempotency_key\", \"state\", \"created_at\") SELECT gen_random_uuid(), "
        ));
        assert!(sql.contains("t.idempotency_key || ':clone:' || g, t.\"state\", t.\"created_at\""));
        assert!(sql.ends_with("WHERE t.id = $1"));
    }
}
