//! `tierline customer ...`: look-ups and profiles, and the profile summaries the IVR and the
//! desktop show.

use serde_json::json;
use tierline_proto::common::{IdentityKind, IdentityRef, Money};
use tierline_proto::customer::{
    CreditStanding, Customer, CustomerKind, Direction, GetCustomerRequest, Interaction,
    LifecycleStage, ListInteractionsRequest, LookupCustomersRequest, Relationship,
};
use time::OffsetDateTime;

use crate::args::{CustomerCommand, CustomerLookup};
use crate::ctx::Ctx;
use crate::enum_of;
use crate::error::{CliError, Service};
use crate::fmt;
use crate::json::{list, to_json};

/// Runs a `customer` subcommand.
pub async fn run(ctx: &Ctx, command: CustomerCommand) -> Result<(), CliError> {
    match command {
        CustomerCommand::Lookup(args) => lookup(ctx, args).await,
        CustomerCommand::Get { id, timeline } => get(ctx, &id, timeline).await,
    }
}

async fn lookup(ctx: &Ctx, args: CustomerLookup) -> Result<(), CliError> {
    let identity = identity_of(&args)?;
    let shown = identity.value.clone();
    let customers = find(ctx, identity).await?;
    let now = OffsetDateTime::now_utc();
    ctx.print(
        || format_lookup(&shown, &customers, now),
        || json!({ "customers": list(&customers) }),
    );
    Ok(())
}

/// The identity a lookup names.
pub fn identity_of(args: &CustomerLookup) -> Result<IdentityRef, CliError> {
    let (kind, value) = match (&args.phone, &args.email, &args.external_id) {
        (Some(p), None, None) => (IdentityKind::Phone, p),
        (None, Some(e), None) => (IdentityKind::Email, e),
        (None, None, Some(x)) => (IdentityKind::ExternalId, x),
        _ => {
            return Err(CliError::Usage(
                "give exactly one of --phone, --email, --external-id".into(),
            ));
        }
    };
    Ok(IdentityRef {
        kind: kind as i32,
        value: value.clone(),
        region_code: args.region.clone().unwrap_or_default(),
    })
}

/// CustomerService.LookupCustomers: the holders of an identity (none for an unknown one).
pub async fn find(ctx: &Ctx, identity: IdentityRef) -> Result<Vec<Customer>, CliError> {
    let mut client = ctx.customers().await?;
    let reply = ctx
        .call(
            Service::Customer,
            client.lookup_customers(LookupCustomersRequest {
                identity: Some(identity),
            }),
        )
        .await?;
    Ok(reply.customers)
}

async fn get(ctx: &Ctx, id: &str, timeline: bool) -> Result<(), CliError> {
    let mut client = ctx.customers().await?;
    let customer = ctx
        .call(
            Service::Customer,
            client.get_customer(GetCustomerRequest { id: id.to_owned() }),
        )
        .await?;
    let interactions = if timeline {
        recent_interactions(ctx, &customer.id, 10).await?
    } else {
        Vec::new()
    };
    let now = OffsetDateTime::now_utc();
    ctx.print(
        || {
            let mut out = String::new();
            if customer.id != id {
                out.push_str(&format!(
                    "note: {id} was merged into {}; showing the surviving profile\n",
                    customer.id
                ));
            }
            out.push_str(&format_customer(&customer, now));
            if timeline {
                out.push_str("\n\n");
                out.push_str(&format_interactions(&interactions));
            }
            out
        },
        || {
            if timeline {
                json!({ "customer": to_json(&customer), "interactions": list(&interactions) })
            } else {
                to_json(&customer)
            }
        },
    );
    Ok(())
}

/// CustomerService.ListInteractions: the newest `n` contacts.
pub async fn recent_interactions(
    ctx: &Ctx,
    customer_id: &str,
    n: i32,
) -> Result<Vec<Interaction>, CliError> {
    let mut client = ctx.customers().await?;
    let reply = ctx
        .call(
            Service::Customer,
            client.list_interactions(ListInteractionsRequest {
                customer_id: customer_id.to_owned(),
                page_size: n,
                page_token: String::new(),
            }),
        )
        .await?;
    Ok(reply.interactions)
}

/// One line about a customer: "Ada Okafor · tier A · key account (manager agent-7)".
pub fn customer_line(c: &Customer) -> String {
    let mut parts = vec![name_of(c), format!("tier {}", fmt::tier(c.tier))];
    if c.key_account {
        if c.account_manager_id.is_empty() {
            parts.push("key account".into());
        } else {
            parts.push(format!("key account (manager {})", c.account_manager_id));
        }
    }
    if c.lifecycle_stage != 0 {
        parts.push(enum_of!(
            LifecycleStage,
            c.lifecycle_stage,
            "LIFECYCLE_STAGE_"
        ));
    }
    if c.unreasonable {
        parts.push("FLAGGED UNREASONABLE".into());
    }
    parts.join(" · ")
}

fn name_of(c: &Customer) -> String {
    if c.form_of_address.is_empty() || c.form_of_address == c.display_name {
        c.display_name.clone()
    } else {
        format!("{} ({})", c.display_name, c.form_of_address)
    }
}

/// The result of a look-up.
pub fn format_lookup(identity: &str, customers: &[Customer], now: OffsetDateTime) -> String {
    match customers {
        [] => format!("no customer holds {identity}"),
        [one] => format_customer(one, now),
        many => {
            let rows: Vec<Vec<String>> = many
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        c.display_name.clone(),
                        fmt::tier(c.tier),
                        if c.key_account { "yes" } else { "" }.to_owned(),
                    ]
                })
                .collect();
            format!(
                "{} customers share {identity} (most recently updated first)\n{}",
                many.len(),
                fmt::table(&["ID", "NAME", "TIER", "KEY ACCOUNT"], &rows)
            )
        }
    }
}

/// A profile, one labelled line per thing that is set.
pub fn format_customer(c: &Customer, now: OffsetDateTime) -> String {
    let mut f: Vec<(&str, String)> = vec![("customer", name_of(c)), ("id", c.id.clone())];
    let mut tier = fmt::tier(c.tier);
    if let Some(o) = &c.tier_override {
        tier.push_str(&format!(
            " (set by hand: {}; computed {})",
            o.reason,
            fmt::tier(c.computed_tier)
        ));
    }
    f.push(("tier", tier));
    let mut kind = vec![
        or_default(
            enum_of!(CustomerKind, c.kind, "CUSTOMER_KIND_"),
            "individual",
        ),
        or_default(
            enum_of!(Relationship, c.relationship, "RELATIONSHIP_"),
            "direct",
        ),
    ];
    if !c.segment.is_empty() {
        kind.push(format!("segment {}", c.segment));
    }
    f.push(("kind", kind.join(" · ")));
    f.push((
        "lifecycle",
        match enum_of!(LifecycleStage, c.lifecycle_stage, "LIFECYCLE_STAGE_").as_str() {
            "churned" => format!("churned: {}", c.churn_reason),
            other => other.to_owned(),
        },
    ));
    if c.key_account {
        f.push((
            "key account",
            format!(
                "yes · account manager {}",
                fmt::or_dash(&c.account_manager_id)
            ),
        ));
    }
    if !c.identities.is_empty() {
        let ids: Vec<String> = c
            .identities
            .iter()
            .map(|i| {
                let mut s = format!(
                    "{} {}",
                    enum_of!(IdentityKind, i.kind, "IDENTITY_KIND_"),
                    i.value
                );
                if !i.label.is_empty() {
                    s.push_str(&format!(" ({})", i.label));
                }
                if i.shared {
                    s.push_str(" [shared]");
                }
                s
            })
            .collect();
        f.push(("identities", ids.join(", ")));
    }
    f.push(("satisfaction", satisfaction(c)));
    if let Some(v) = &c.lifetime_value {
        f.push(("lifetime value", money(v)));
    }
    if c.credit_standing != 0 {
        f.push((
            "credit",
            enum_of!(CreditStanding, c.credit_standing, "CREDIT_STANDING_"),
        ));
    }
    if c.unreasonable {
        f.push((
            "WARNING",
            format!("flagged unreasonable: {}", c.unreasonable_note),
        ));
    }
    if !c.preferences.is_empty() {
        f.push(("preferences", c.preferences.join("; ")));
    }
    if !c.observations.is_empty() {
        f.push(("observations", fmt::clip(&c.observations, 200)));
    }
    if !c.merged_into_id.is_empty() {
        f.push(("merged into", c.merged_into_id.clone()));
    }
    if c.delete_time.is_some() {
        f.push(("deleted", fmt::time(c.delete_time.as_ref())));
    }
    f.push((
        "since",
        format!(
            "{} ({})",
            fmt::time(c.create_time.as_ref()),
            fmt::relative(c.create_time.as_ref(), now)
        ),
    ));
    fmt::fields(&f)
}

/// An enum's short name, or what an unset value is treated as.
fn or_default(name: String, default: &str) -> String {
    if name == "-" {
        default.to_owned()
    } else {
        name
    }
}

/// "0.92 on average over 3 follow-ups, last 1.10" or "no follow-ups yet".
pub fn satisfaction(c: &Customer) -> String {
    match &c.satisfaction {
        Some(s) if s.count > 0 => format!(
            "{:.2} on average over {} follow-up{}, last {:.2}",
            s.mean_satisfaction,
            s.count,
            if s.count == 1 { "" } else { "s" },
            s.last_satisfaction
        ),
        _ => "no follow-ups yet".into(),
    }
}

/// "EUR 1234.50".
pub fn money(m: &Money) -> String {
    let cents = (i64::from(m.nanos) / 10_000_000).abs();
    let currency = if m.currency_code.is_empty() {
        "(reporting currency)"
    } else {
        &m.currency_code
    };
    format!("{currency} {}.{cents:02}", m.units)
}

/// A customer's recent contacts, newest first.
pub fn format_interactions(items: &[Interaction]) -> String {
    if items.is_empty() {
        return "no contacts on the timeline".into();
    }
    let rows: Vec<Vec<String>> = items.iter().map(interaction_row).collect();
    fmt::table(&["WHEN", "CHANNEL", "DIRECTION", "SUMMARY"], &rows)
}

fn interaction_row(i: &Interaction) -> Vec<String> {
    vec![
        fmt::time(i.occur_time.as_ref()),
        fmt::channel(i.channel),
        enum_of!(Direction, i.direction, "DIRECTION_"),
        fmt::clip(&i.summary, 60),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tierline_proto::common::Tier;
    use tierline_proto::customer::{Identity, SatisfactionSummary};

    fn ada() -> Customer {
        Customer {
            id: "c-1".into(),
            display_name: "Ada Okafor".into(),
            form_of_address: "Dr Okafor".into(),
            tier: Tier::A as i32,
            key_account: true,
            account_manager_id: "agent-7".into(),
            lifecycle_stage: LifecycleStage::Loyal as i32,
            identities: vec![Identity {
                kind: IdentityKind::Phone as i32,
                value: "+442079460018".into(),
                label: "mobile".into(),
                shared: false,
            }],
            satisfaction: Some(SatisfactionSummary {
                count: 3,
                mean_satisfaction: 0.9166,
                last_satisfaction: 1.1,
                ..Default::default()
            }),
            lifetime_value: Some(Money {
                currency_code: "EUR".into(),
                units: 1234,
                nanos: 500_000_000,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_customer_line_says_who_and_how_valuable() {
        assert_eq!(
            customer_line(&ada()),
            "Ada Okafor (Dr Okafor) · tier A · key account (manager agent-7) · loyal"
        );
        let plain = Customer {
            display_name: "+442079460099".into(),
            tier: Tier::C as i32,
            ..Default::default()
        };
        assert_eq!(customer_line(&plain), "+442079460099 · tier C");
    }

    #[test]
    fn a_profile_shows_identities_satisfaction_and_value() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let text = format_customer(&ada(), now);
        assert!(
            text.contains("customer        Ada Okafor (Dr Okafor)"),
            "{text}"
        );
        assert!(
            text.contains("identities      phone +442079460018 (mobile)"),
            "{text}"
        );
        assert!(
            text.contains("0.92 on average over 3 follow-ups, last 1.10"),
            "{text}"
        );
        assert!(text.contains("lifetime value  EUR 1234.50"), "{text}");
        assert!(
            text.contains("kind            individual · direct"),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_identity_is_said_plainly_and_shared_ones_are_a_table() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(format_lookup("+44", &[], now), "no customer holds +44");
        let two = [
            ada(),
            Customer {
                id: "c-2".into(),
                display_name: "Okafor Ltd".into(),
                tier: Tier::B as i32,
                ..Default::default()
            },
        ];
        let text = format_lookup("+44", &two, now);
        assert!(text.starts_with("2 customers share +44"), "{text}");
        assert!(text.contains("c-2  Okafor Ltd  B"), "{text}");
    }

    #[test]
    fn interactions_are_a_table_newest_first() {
        let items = [Interaction {
            channel: tierline_proto::common::Channel::Voice as i32,
            direction: Direction::Inbound as i32,
            summary: "the kettle leaks".into(),
            ..Default::default()
        }];
        let text = format_interactions(&items);
        assert!(
            text.contains("voice    inbound    the kettle leaks"),
            "{text}"
        );
        assert_eq!(format_interactions(&[]), "no contacts on the timeline");
    }
}
