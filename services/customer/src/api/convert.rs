//! Wire (proto) ↔ domain conversions. Parsing collects every field violation with its path.

use tierline_proto::customer as pb;
use tierline_proto::{common, prost_types};
use tierline_runtime::Violations;
use tierline_runtime::wire::{self, text};
use tierline_types::{Channel, Tier};

use crate::domain::{
    CreditStanding, Customer, CustomerKind, Direction, Identity, IdentityKind, IdentityValue,
    Interaction, LifecycleStage, LifetimeValue, NewInteraction, NewSatisfaction, PostalAddress,
    Profile, ProfilePatch, RegionCode, Relationship, Satisfaction, SatisfactionRecord,
    SignificantDate, SignificantDateKind, TieringPolicy,
};
use crate::store::{Merge, RecomputeReport};

/// What parsing needs to know about the deployment.
#[derive(Debug, Clone)]
pub struct WireContext {
    /// Region for local phone numbers.
    pub default_region: RegionCode,
    /// Currency of lifetime values.
    pub reporting_currency: String,
}

impl WireContext {
    /// The region to read a phone number in: the request's, or the default.
    pub fn region(&self, raw: &str, field: &str, v: &mut Violations) -> RegionCode {
        if raw.is_empty() {
            return self.default_region;
        }
        v.take(field, RegionCode::parse(raw))
            .unwrap_or(self.default_region)
    }

    /// Parses a wire identity reference.
    pub fn identity_ref(
        &self,
        r: Option<&common::IdentityRef>,
    ) -> Result<IdentityValue, Violations> {
        let mut v = Violations::new();
        let Some(r) = r else {
            v.add("", "required");
            return Err(v);
        };
        let kind = v.take("kind", identity_kind(r.kind));
        let region = self.region(&r.region_code, "region_code", &mut v);
        let value = kind.and_then(|k| v.take("value", IdentityValue::parse(k, &r.value, region)));
        match value {
            Some(value) if v.is_empty() => Ok(value),
            _ => Err(v),
        }
    }

    /// Parses a wire identity to hold.
    pub fn identity(&self, i: &pb::Identity, region_code: &str) -> Result<Identity, Violations> {
        let mut v = Violations::new();
        let kind = v.take("kind", identity_kind(i.kind));
        let region = self.region(region_code, "region_code", &mut v);
        let value = kind.and_then(|k| v.take("value", IdentityValue::parse(k, &i.value, region)));
        let label = v.take("label", text(&i.label, 50, false));
        match (value, label) {
            (Some(value), Some(label)) if v.is_empty() => Ok(Identity {
                value,
                label,
                shared: i.shared,
            }),
            _ => Err(v),
        }
    }

    fn lifetime_value(&self, m: Option<&common::Money>) -> Result<LifetimeValue, String> {
        let Some(m) = m else {
            return Ok(LifetimeValue::ZERO);
        };
        if !m.currency_code.is_empty() && m.currency_code != self.reporting_currency {
            return Err(format!(
                "currency must be the reporting currency {}, got {:?}",
                self.reporting_currency, m.currency_code
            ));
        }
        LifetimeValue::from_units_nanos(m.units, m.nanos)
    }

    /// Parses the editable fields of a whole profile (create).
    pub fn profile(&self, c: &pb::Customer) -> Result<Profile, Violations> {
        let mut patch = ProfilePatch::default();
        let mut v = Violations::new();
        for path in PROFILE_FIELDS {
            self.patch_field(path, c, &mut patch, &mut v);
        }
        if !v.is_empty() {
            return Err(v);
        }
        let mut base = Profile::prospect(String::new());
        // On create an unspecified stage means prospect, as documented.
        if patch.lifecycle_stage.is_none() {
            patch.lifecycle_stage = Some(LifecycleStage::Prospect);
        }
        base.display_name = patch.display_name.take().unwrap_or_default();
        patch.apply(&base).map_err(|cross_field| {
            let mut nested = Violations::new();
            nested.extend_nested("customer", cross_field);
            nested
        })
    }

    /// Parses the fields named by `mask` into a patch (update).
    pub fn patch(
        &self,
        c: &pb::Customer,
        mask: Option<&prost_types::FieldMask>,
    ) -> Result<ProfilePatch, Violations> {
        let mut v = Violations::new();
        let mut patch = ProfilePatch::default();
        let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
            v.add("update_mask", "required: name the fields to change");
            return Err(v);
        };
        for path in &mask.paths {
            if PROFILE_FIELDS.contains(&path.as_str()) {
                self.patch_field(path, c, &mut patch, &mut v);
            } else if OUTPUT_OR_OTHER_FIELDS.contains(&path.as_str()) {
                v.add(
                    "update_mask",
                    format!("{path} cannot be changed by UpdateCustomer"),
                );
            } else {
                v.add("update_mask", format!("{path} is not a field of Customer"));
            }
        }
        v.finish(|| patch)
    }

    fn patch_field(&self, path: &str, c: &pb::Customer, p: &mut ProfilePatch, v: &mut Violations) {
        let f = |name: &str| format!("customer.{name}");
        match path {
            "display_name" => p.display_name = v.take(&f(path), text(&c.display_name, 200, true)),
            "form_of_address" => {
                p.form_of_address = v.take(&f(path), text(&c.form_of_address, 100, false))
            }
            "kind" => p.kind = v.take(&f(path), customer_kind(c.kind)),
            "relationship" => p.relationship = v.take(&f(path), relationship(c.relationship)),
            "segment" => p.segment = v.take(&f(path), text(&c.segment, 100, false)),
            "postal_address" => {
                p.postal_address = match &c.postal_address {
                    None => Some(None),
                    Some(a) => v.take_nested(&f(path), postal_address(a)).map(Some),
                }
            }
            "significant_dates" => {
                if c.significant_dates.len() > 20 {
                    v.add(f(path), "at most 20");
                } else {
                    let mut dates = Vec::new();
                    for (i, d) in c.significant_dates.iter().enumerate() {
                        if let Some(d) = v.take_nested(
                            &format!("customer.significant_dates[{i}]"),
                            significant_date(d),
                        ) {
                            dates.push(d);
                        }
                    }
                    p.significant_dates = Some(dates);
                }
            }
            "preferences" => {
                if c.preferences.len() > 50 {
                    v.add(f(path), "at most 50");
                } else {
                    let mut prefs = Vec::new();
                    for (i, pref) in c.preferences.iter().enumerate() {
                        if let Some(pref) =
                            v.take(&format!("customer.preferences[{i}]"), text(pref, 200, true))
                        {
                            prefs.push(pref);
                        }
                    }
                    p.preferences = Some(prefs);
                }
            }
            "observations" => p.observations = v.take(&f(path), text(&c.observations, 4000, false)),
            "attributes" => {
                if c.attributes.len() > 100 {
                    v.add(f(path), "at most 100 entries");
                } else {
                    let mut attrs = std::collections::BTreeMap::new();
                    for (key, value) in &c.attributes {
                        let field = format!("customer.attributes[{key:?}]");
                        let k = v.take(&field, text(key, 64, true));
                        let val = v.take(&field, text(value, 1000, false));
                        if let (Some(k), Some(val)) = (k, val) {
                            attrs.insert(k, val);
                        }
                    }
                    p.attributes = Some(attrs);
                }
            }
            "credit_standing" => {
                p.credit_standing = v.take(&f(path), credit_standing(c.credit_standing))
            }
            "lifecycle_stage" => {
                p.lifecycle_stage = match lifecycle_stage(c.lifecycle_stage) {
                    Ok(Some(stage)) => Some(stage),
                    Ok(None) => None,
                    Err(e) => {
                        v.add(f(path), e);
                        None
                    }
                }
            }
            "churn_reason" => p.churn_reason = v.take(&f(path), text(&c.churn_reason, 500, false)),
            "account_manager_id" => {
                p.account_manager_id = v
                    .take(&f(path), text(&c.account_manager_id, 128, false))
                    .map(|s| if s.is_empty() { None } else { Some(s) })
            }
            "key_account" => p.key_account = Some(c.key_account),
            "unreasonable" => p.unreasonable = Some(c.unreasonable),
            "unreasonable_note" => {
                p.unreasonable_note = v.take(&f(path), text(&c.unreasonable_note, 1000, false))
            }
            "lifetime_value" => {
                p.lifetime_value = v.take(&f(path), self.lifetime_value(c.lifetime_value.as_ref()))
            }
            _ => {}
        }
    }
}

/// The fields UpdateCustomer may change.
pub const PROFILE_FIELDS: [&str; 18] = [
    "display_name",
    "form_of_address",
    "kind",
    "relationship",
    "segment",
    "postal_address",
    "significant_dates",
    "preferences",
    "observations",
    "attributes",
    "credit_standing",
    "lifecycle_stage",
    "churn_reason",
    "account_manager_id",
    "key_account",
    "unreasonable",
    "unreasonable_note",
    "lifetime_value",
];

const OUTPUT_OR_OTHER_FIELDS: [&str; 11] = [
    "id",
    "identities",
    "tier",
    "computed_tier",
    "tier_override",
    "satisfaction",
    "merged_into_id",
    "version",
    "create_time",
    "update_time",
    "delete_time",
];

/// Parses a wire identity kind; unspecified is an error.
pub fn identity_kind(raw: i32) -> Result<IdentityKind, String> {
    match common::IdentityKind::try_from(raw) {
        Ok(common::IdentityKind::Phone) => Ok(IdentityKind::Phone),
        Ok(common::IdentityKind::Email) => Ok(IdentityKind::Email),
        Ok(common::IdentityKind::ExternalId) => Ok(IdentityKind::ExternalId),
        Ok(common::IdentityKind::Unspecified) => Err("required".into()),
        Err(_) => Err(format!("{raw} is not an identity kind")),
    }
}

fn identity_kind_to_wire(k: IdentityKind) -> common::IdentityKind {
    match k {
        IdentityKind::Phone => common::IdentityKind::Phone,
        IdentityKind::Email => common::IdentityKind::Email,
        IdentityKind::ExternalId => common::IdentityKind::ExternalId,
    }
}

fn customer_kind(raw: i32) -> Result<CustomerKind, String> {
    match pb::CustomerKind::try_from(raw) {
        Ok(pb::CustomerKind::Unspecified | pb::CustomerKind::Individual) => {
            Ok(CustomerKind::Individual)
        }
        Ok(pb::CustomerKind::Organization) => Ok(CustomerKind::Organization),
        Err(_) => Err(format!("{raw} is not a customer kind")),
    }
}

fn relationship(raw: i32) -> Result<Relationship, String> {
    match pb::Relationship::try_from(raw) {
        Ok(pb::Relationship::Unspecified | pb::Relationship::Direct) => Ok(Relationship::Direct),
        Ok(pb::Relationship::ChannelPartner) => Ok(Relationship::ChannelPartner),
        Ok(pb::Relationship::Reseller) => Ok(Relationship::Reseller),
        Err(_) => Err(format!("{raw} is not a relationship")),
    }
}

fn credit_standing(raw: i32) -> Result<CreditStanding, String> {
    match pb::CreditStanding::try_from(raw) {
        Ok(pb::CreditStanding::Unspecified) => Ok(CreditStanding::Unknown),
        Ok(pb::CreditStanding::Good) => Ok(CreditStanding::Good),
        Ok(pb::CreditStanding::Watch) => Ok(CreditStanding::Watch),
        Ok(pb::CreditStanding::Poor) => Ok(CreditStanding::Poor),
        Err(_) => Err(format!("{raw} is not a credit standing")),
    }
}

/// Parses a lifecycle stage; unspecified is `None`.
pub fn lifecycle_stage(raw: i32) -> Result<Option<LifecycleStage>, String> {
    Ok(Some(match pb::LifecycleStage::try_from(raw) {
        Ok(pb::LifecycleStage::Unspecified) => return Ok(None),
        Ok(pb::LifecycleStage::Prospect) => LifecycleStage::Prospect,
        Ok(pb::LifecycleStage::New) => LifecycleStage::New,
        Ok(pb::LifecycleStage::Active) => LifecycleStage::Active,
        Ok(pb::LifecycleStage::Loyal) => LifecycleStage::Loyal,
        Ok(pb::LifecycleStage::Churned) => LifecycleStage::Churned,
        Err(_) => return Err(format!("{raw} is not a lifecycle stage")),
    }))
}

fn postal_address(a: &pb::PostalAddress) -> Result<PostalAddress, Violations> {
    let mut v = Violations::new();
    if a.lines.len() > 5 {
        v.add("lines", "at most 5");
    }
    let lines: Vec<String> = a
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| v.take(&format!("lines[{i}]"), text(l, 200, false)))
        .collect();
    let locality = v.take("locality", text(&a.locality, 100, false));
    let area = v.take(
        "administrative_area",
        text(&a.administrative_area, 100, false),
    );
    let postal_code = v.take("postal_code", text(&a.postal_code, 20, false));
    let region = if a.region_code.is_empty() {
        Some(String::new())
    } else {
        v.take(
            "region_code",
            RegionCode::parse(&a.region_code).map(|r| r.to_string()),
        )
    };
    v.finish(|| PostalAddress {
        lines,
        locality: locality.unwrap_or_default(),
        administrative_area: area.unwrap_or_default(),
        postal_code: postal_code.unwrap_or_default(),
        region_code: region.unwrap_or_default(),
    })
}

fn significant_date(d: &pb::SignificantDate) -> Result<SignificantDate, Violations> {
    let mut v = Violations::new();
    let kind = match pb::SignificantDateKind::try_from(d.kind) {
        Ok(pb::SignificantDateKind::Birthday) => Some(SignificantDateKind::Birthday),
        Ok(pb::SignificantDateKind::Anniversary) => Some(SignificantDateKind::Anniversary),
        Ok(pb::SignificantDateKind::Other) => Some(SignificantDateKind::Other),
        Ok(pb::SignificantDateKind::Unspecified) => {
            v.add("kind", "required");
            None
        }
        Err(_) => {
            v.add("kind", format!("{} is not a date kind", d.kind));
            None
        }
    };
    let label = v.take("label", text(&d.label, 100, false));
    let year = if d.year == 0 { None } else { Some(d.year) };
    if let Some(y) = year
        && !(1800..=2200).contains(&y)
    {
        v.add("year", "must be 0 (unknown) or between 1800 and 2200");
    }
    let md = v.take("day", SignificantDate::check(year, d.month, d.day));
    match (kind, label, md) {
        (Some(kind), Some(label), Some((month, day))) if v.is_empty() => Ok(SignificantDate {
            kind,
            label,
            year,
            month,
            day,
        }),
        _ => Err(v),
    }
}

/// Parses a wire tiering policy.
pub fn tiering_policy(p: &pb::TieringPolicy) -> Result<TieringPolicy, Violations> {
    let mut v = Violations::new();
    let policy = match &p.method {
        None => {
            v.add("policy.method", "set share or cumulative");
            return Err(v);
        }
        Some(pb::tiering_policy::Method::Share(s)) => TieringPolicy::Share {
            a_min_share: s.a_min_share,
            c_max_share: s.c_max_share,
        },
        Some(pb::tiering_policy::Method::Cumulative(c)) => TieringPolicy::Cumulative {
            a_cumulative_share: c.a_cumulative_share,
            b_cumulative_share: c.b_cumulative_share,
        },
    };
    let prefix = match policy {
        TieringPolicy::Share { .. } => "policy.share",
        TieringPolicy::Cumulative { .. } => "policy.cumulative",
    };
    for (field, problem) in policy.problems() {
        v.add(format!("{prefix}.{field}"), problem);
    }
    v.finish(|| policy)
}

/// The wire form of a tiering policy.
pub fn tiering_policy_to_wire(p: &TieringPolicy) -> pb::TieringPolicy {
    let method = match *p {
        TieringPolicy::Share {
            a_min_share,
            c_max_share,
        } => pb::tiering_policy::Method::Share(pb::ShareThresholds {
            a_min_share,
            c_max_share,
        }),
        TieringPolicy::Cumulative {
            a_cumulative_share,
            b_cumulative_share,
        } => pb::tiering_policy::Method::Cumulative(pb::CumulativeThresholds {
            a_cumulative_share,
            b_cumulative_share,
        }),
    };
    pb::TieringPolicy {
        method: Some(method),
    }
}

/// Parses a wire interaction.
pub fn new_interaction(i: Option<&pb::Interaction>) -> Result<NewInteraction, Violations> {
    let mut v = Violations::new();
    let Some(i) = i else {
        v.add("interaction", "required");
        return Err(v);
    };
    let channel = match Channel::from_wire(i.channel) {
        Ok(Some(c)) => Some(c),
        Ok(None) => {
            v.add("interaction.channel", "required");
            None
        }
        Err(e) => {
            v.add("interaction.channel", e);
            None
        }
    };
    let direction = match pb::Direction::try_from(i.direction) {
        Ok(pb::Direction::Inbound) => Some(Direction::Inbound),
        Ok(pb::Direction::Outbound) => Some(Direction::Outbound),
        Ok(pb::Direction::Unspecified) => {
            v.add("interaction.direction", "required");
            None
        }
        Err(_) => {
            v.add(
                "interaction.direction",
                format!("{} is not a direction", i.direction),
            );
            None
        }
    };
    let summary = v.take("interaction.summary", text(&i.summary, 4000, true));
    let promised = v.take("interaction.promised", text(&i.promised, 2000, false));
    let given = v.take("interaction.given", text(&i.given, 2000, false));
    let ticket_id = v.take("interaction.ticket_id", wire::optional_uuid(&i.ticket_id));
    let agent_id = v.take("interaction.agent_id", text(&i.agent_id, 128, false));
    let occurred_at = match &i.occur_time {
        None => Some(None),
        Some(ts) => v
            .take("interaction.occur_time", wire::time_from(ts))
            .map(Some),
    };
    match (
        channel,
        direction,
        summary,
        promised,
        given,
        ticket_id,
        agent_id,
        occurred_at,
    ) {
        (
            Some(channel),
            Some(direction),
            Some(summary),
            Some(promised),
            Some(given),
            Some(ticket_id),
            Some(agent_id),
            Some(occurred_at),
        ) if v.is_empty() => Ok(NewInteraction {
            channel,
            direction,
            summary,
            promised,
            given,
            ticket_id,
            agent_id: if agent_id.is_empty() {
                None
            } else {
                Some(agent_id)
            },
            occurred_at,
        }),
        _ => Err(v),
    }
}

/// Parses a wire satisfaction record.
pub fn new_satisfaction(r: Option<&pb::SatisfactionRecord>) -> Result<NewSatisfaction, Violations> {
    let mut v = Violations::new();
    let Some(r) = r else {
        v.add("record", "required");
        return Err(v);
    };
    let measurement = match Satisfaction::new(r.expected, r.perceived) {
        Ok(m) => Some(m),
        Err(problems) => {
            for (field, problem) in problems {
                v.add(format!("record.{field}"), problem);
            }
            None
        }
    };
    let ticket_id = v.take("record.ticket_id", wire::optional_uuid(&r.ticket_id));
    let agent_id = v.take("record.agent_id", text(&r.agent_id, 128, false));
    let comment = v.take("record.comment", text(&r.comment, 2000, false));
    match (measurement, ticket_id, agent_id, comment) {
        (Some(measurement), Some(ticket_id), Some(agent_id), Some(comment)) if v.is_empty() => {
            Ok(NewSatisfaction {
                measurement,
                ticket_id,
                agent_id: if agent_id.is_empty() {
                    None
                } else {
                    Some(agent_id)
                },
                comment,
            })
        }
        _ => Err(v),
    }
}

/// The wire form of a customer.
pub fn customer_to_wire(c: &Customer, currency: &str) -> pb::Customer {
    let p = &c.profile;
    let (units, nanos) = p.lifetime_value.units_nanos();
    pb::Customer {
        id: c.id.to_string(),
        display_name: p.display_name.clone(),
        form_of_address: p.form_of_address.clone(),
        kind: match p.kind {
            CustomerKind::Individual => pb::CustomerKind::Individual,
            CustomerKind::Organization => pb::CustomerKind::Organization,
        } as i32,
        relationship: match p.relationship {
            Relationship::Direct => pb::Relationship::Direct,
            Relationship::ChannelPartner => pb::Relationship::ChannelPartner,
            Relationship::Reseller => pb::Relationship::Reseller,
        } as i32,
        segment: p.segment.clone(),
        identities: c
            .identities
            .iter()
            .map(|i| pb::Identity {
                kind: identity_kind_to_wire(i.value.kind()) as i32,
                value: i.value.as_str().to_owned(),
                label: i.label.clone(),
                shared: i.shared,
            })
            .collect(),
        postal_address: p.postal_address.as_ref().map(|a| pb::PostalAddress {
            lines: a.lines.clone(),
            locality: a.locality.clone(),
            administrative_area: a.administrative_area.clone(),
            postal_code: a.postal_code.clone(),
            region_code: a.region_code.clone(),
        }),
        significant_dates: p
            .significant_dates
            .iter()
            .map(|d| pb::SignificantDate {
                kind: match d.kind {
                    SignificantDateKind::Birthday => pb::SignificantDateKind::Birthday,
                    SignificantDateKind::Anniversary => pb::SignificantDateKind::Anniversary,
                    SignificantDateKind::Other => pb::SignificantDateKind::Other,
                } as i32,
                label: d.label.clone(),
                year: d.year.unwrap_or(0),
                month: i32::from(d.month),
                day: i32::from(d.day),
            })
            .collect(),
        preferences: p.preferences.clone(),
        observations: p.observations.clone(),
        attributes: p
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        credit_standing: match p.credit_standing {
            CreditStanding::Unknown => pb::CreditStanding::Unspecified,
            CreditStanding::Good => pb::CreditStanding::Good,
            CreditStanding::Watch => pb::CreditStanding::Watch,
            CreditStanding::Poor => pb::CreditStanding::Poor,
        } as i32,
        lifecycle_stage: match p.lifecycle_stage {
            LifecycleStage::Prospect => pb::LifecycleStage::Prospect,
            LifecycleStage::New => pb::LifecycleStage::New,
            LifecycleStage::Active => pb::LifecycleStage::Active,
            LifecycleStage::Loyal => pb::LifecycleStage::Loyal,
            LifecycleStage::Churned => pb::LifecycleStage::Churned,
        } as i32,
        churn_reason: p.churn_reason.clone(),
        account_manager_id: p.account_manager_id.clone().unwrap_or_default(),
        key_account: p.key_account,
        unreasonable: p.unreasonable,
        unreasonable_note: p.unreasonable_note.clone(),
        lifetime_value: Some(common::Money {
            currency_code: currency.to_owned(),
            units,
            nanos,
        }),
        tier: c.tier().to_wire() as i32,
        computed_tier: c.computed_tier.to_wire() as i32,
        tier_override: c.tier_override.as_ref().map(|o| pb::TierOverride {
            tier: o.tier.to_wire() as i32,
            reason: o.reason.clone(),
            set_time: Some(wire::timestamp(o.set_at)),
        }),
        satisfaction: Some(pb::SatisfactionSummary {
            count: c.satisfaction.count,
            mean_satisfaction: c.satisfaction.mean_c(),
            mean_expected: c.satisfaction.mean_expected(),
            mean_perceived: c.satisfaction.mean_perceived(),
            last_satisfaction: c.satisfaction.last_c.unwrap_or(0.0),
            last_record_time: c.satisfaction.last_at.map(wire::timestamp),
        }),
        merged_into_id: c.merged_into.map(|m| m.to_string()).unwrap_or_default(),
        version: c.version,
        create_time: Some(wire::timestamp(c.created_at)),
        update_time: Some(wire::timestamp(c.updated_at)),
        delete_time: c.deleted_at.map(wire::timestamp),
    }
}

/// The wire form of an interaction.
pub fn interaction_to_wire(i: &Interaction) -> pb::Interaction {
    let d = &i.details;
    pb::Interaction {
        id: i.id.to_string(),
        customer_id: i.customer_id.to_string(),
        channel: d.channel.to_wire() as i32,
        direction: match d.direction {
            Direction::Inbound => pb::Direction::Inbound,
            Direction::Outbound => pb::Direction::Outbound,
        } as i32,
        summary: d.summary.clone(),
        promised: d.promised.clone(),
        given: d.given.clone(),
        ticket_id: d.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        agent_id: d.agent_id.clone().unwrap_or_default(),
        occur_time: Some(wire::timestamp(i.occurred_at)),
        create_time: Some(wire::timestamp(i.created_at)),
    }
}

/// The wire form of a satisfaction record.
pub fn satisfaction_to_wire(r: &SatisfactionRecord) -> pb::SatisfactionRecord {
    let d = &r.details;
    pb::SatisfactionRecord {
        id: r.id.to_string(),
        customer_id: r.customer_id.to_string(),
        ticket_id: d.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
        agent_id: d.agent_id.clone().unwrap_or_default(),
        expected: d.measurement.expected(),
        perceived: d.measurement.perceived(),
        satisfaction: d.measurement.c(),
        comment: d.comment.clone(),
        create_time: Some(wire::timestamp(r.created_at)),
    }
}

/// The wire form of a merge.
pub fn merge_to_wire(m: &Merge) -> pb::Merge {
    pb::Merge {
        id: m.id.to_string(),
        survivor_id: m.survivor.to_string(),
        merged_id: m.merged.to_string(),
        reason: m.reason.clone(),
        identities_moved: m.identities_moved,
        interactions_moved: m.interactions_moved,
        satisfaction_records_moved: m.satisfaction_moved,
        create_time: Some(wire::timestamp(m.created_at)),
        undo_time: m.undone_at.map(wire::timestamp),
    }
}

/// The wire form of a recomputation report.
pub fn report_to_wire(
    r: &RecomputeReport,
    policy: &TieringPolicy,
    currency: &str,
) -> pb::RecomputeTiersResponse {
    let value = LifetimeValue::from_micros(r.total_value_micros).unwrap_or(LifetimeValue::ZERO);
    let (units, nanos) = value.units_nanos();
    pb::RecomputeTiersResponse {
        customers_evaluated: r.evaluated,
        customers_changed: r.changed,
        tier_a_count: r.per_tier[0],
        tier_b_count: r.per_tier[1],
        tier_c_count: r.per_tier[2],
        total_lifetime_value: Some(common::Money {
            currency_code: currency.to_owned(),
            units,
            nanos,
        }),
        policy: Some(tiering_policy_to_wire(policy)),
        overridden_count: r.overridden,
    }
}

/// Parses a tier that must be given.
pub fn required_tier(raw: i32) -> Result<Tier, String> {
    match Tier::from_wire(raw)? {
        Some(t) => Ok(t),
        None => Err("required".into()),
    }
}
