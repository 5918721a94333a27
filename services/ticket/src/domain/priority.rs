//! The priority rule (`Ticket.priority`): urgency for people and reports; higher is more urgent.
//!
//! priority = tier points (A 300, B 200, C 100) + severity points (CRITICAL 40, HIGH 30,
//! MEDIUM 20, LOW 10) + the category's priority boost (0-9) + 100 per SLA escalation.
//!
//! The steps are chosen so each input dominates the next: a tier step (100) outweighs any
//! severity and boost (at most 49), a severity step (10) outweighs any boost (at most 9), and an
//! escalation lifts a ticket by exactly one tier step. Routing orders by deadline, not by this.

use tierline_types::Tier;

use super::sla::Severity;

/// Points per SLA escalation: one tier step.
pub const ESCALATION_POINTS: i32 = 100;

/// The largest category boost the rule counts; larger configured values are capped.
pub const MAX_PRIORITY_BOOST: u8 = 9;

/// What the priority depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityInputs {
    /// The customer's tier from the ticket's snapshot; `None` while the customer is unresolved.
    pub tier: Option<Tier>,
    /// The ticket's severity.
    pub severity: Severity,
    /// The category's priority boost, 0-9.
    pub priority_boost: u8,
    /// How many times the SLA escalated the ticket (`Sla.escalation_level`).
    pub escalation_level: u32,
}

/// Points for a tier.
pub fn tier_points(tier: Tier) -> i32 {
    match tier {
        Tier::A => 300,
        Tier::B => 200,
        Tier::C => 100,
    }
}

/// Points for a severity.
pub fn severity_points(severity: Severity) -> i32 {
    match severity {
        Severity::Critical => 40,
        Severity::High => 30,
        Severity::Medium => 20,
        Severity::Low => 10,
    }
}

/// The priority of a ticket. `default_tier` stands in for the tier while the customer is
/// unresolved.
pub fn priority(inputs: &PriorityInputs, default_tier: Tier) -> i32 {
    let tier = inputs.tier.unwrap_or(default_tier);
    // Capped so a misconfigured boost can never outweigh a severity step.
    let boost = i32::from(inputs.priority_boost.min(MAX_PRIORITY_BOOST));
    // Saturating: an absurd escalation count must not wrap into a low priority.
    let escalation = i32::try_from(inputs.escalation_level)
        .unwrap_or(i32::MAX)
        .saturating_mul(ESCALATION_POINTS);
    tier_points(tier)
        .saturating_add(severity_points(inputs.severity))
        .saturating_add(boost)
        .saturating_add(escalation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Least serious first.
    const SEVERITIES: [Severity; 4] = Severity::ALL;

    fn inputs(tier: Tier, severity: Severity, boost: u8, escalation: u32) -> PriorityInputs {
        PriorityInputs {
            tier: Some(tier),
            severity,
            priority_boost: boost,
            escalation_level: escalation,
        }
    }

    fn p(tier: Tier, severity: Severity, boost: u8, escalation: u32) -> i32 {
        priority(&inputs(tier, severity, boost, escalation), Tier::C)
    }

    /// Every combination of the inputs, with escalation levels 0 to 3.
    fn all_inputs() -> Vec<PriorityInputs> {
        let mut all = Vec::new();
        for tier in Tier::ALL {
            for severity in SEVERITIES {
                for boost in 0..=MAX_PRIORITY_BOOST {
                    for escalation in 0..=3 {
                        all.push(inputs(tier, severity, boost, escalation));
                    }
                }
            }
        }
        all
    }

    #[test]
    fn the_rule_adds_tier_severity_boost_and_escalation_points() {
        assert_eq!(p(Tier::A, Severity::Critical, 9, 0), 349);
        assert_eq!(p(Tier::B, Severity::Medium, 3, 0), 223);
        assert_eq!(p(Tier::C, Severity::Low, 0, 0), 110);
        assert_eq!(p(Tier::C, Severity::High, 5, 2), 335);
    }

    #[test]
    fn an_unresolved_customer_counts_as_the_default_tier() {
        let mut unresolved = inputs(Tier::A, Severity::High, 0, 0);
        unresolved.tier = None;
        assert_eq!(priority(&unresolved, Tier::B), 230);
        assert_eq!(priority(&unresolved, Tier::C), 130);
        assert_eq!(
            priority(&unresolved, Tier::A),
            p(Tier::A, Severity::High, 0, 0)
        );
    }

    #[test]
    fn any_a_ticket_outranks_any_b_ticket_and_any_b_any_c_at_equal_escalation() {
        for a in all_inputs() {
            for b in all_inputs() {
                if a.escalation_level == b.escalation_level && a.tier < b.tier {
                    assert!(
                        priority(&a, Tier::C) > priority(&b, Tier::C),
                        "{a:?} vs {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_escalation_lifts_a_ticket_exactly_one_tier_step() {
        for severity in SEVERITIES {
            for boost in 0..=MAX_PRIORITY_BOOST {
                assert_eq!(
                    p(Tier::B, severity, boost, 1),
                    p(Tier::A, severity, boost, 0)
                );
                assert_eq!(
                    p(Tier::C, severity, boost, 1),
                    p(Tier::B, severity, boost, 0)
                );
                assert_eq!(
                    p(Tier::C, severity, boost, 2),
                    p(Tier::A, severity, boost, 0)
                );
            }
        }
    }

    #[test]
    fn severity_outweighs_any_boost_within_a_tier() {
        for tier in Tier::ALL {
            for pair in SEVERITIES.windows(2) {
                let (lower, higher) = (pair[0], pair[1]);
                assert!(
                    p(tier, higher, 0, 0) > p(tier, lower, MAX_PRIORITY_BOOST, 0),
                    "{tier} {higher:?} vs {lower:?}"
                );
            }
        }
    }

    #[test]
    fn priority_orders_tickets_by_escalated_tier_then_severity_then_boost() {
        // The rule is a lexicographic order on (escalation minus tier rank, severity, boost).
        let key = |i: &PriorityInputs| {
            let tier_rank = match i.tier {
                Some(Tier::A) => 0,
                Some(Tier::B) => 1,
                _ => 2,
            };
            (
                i64::from(i.escalation_level) - tier_rank,
                severity_points(i.severity),
                i.priority_boost,
            )
        };
        let all = all_inputs();
        for x in &all {
            for y in &all {
                assert_eq!(
                    key(x).cmp(&key(y)),
                    priority(x, Tier::C).cmp(&priority(y, Tier::C)),
                    "{x:?} vs {y:?}"
                );
            }
        }
    }

    #[test]
    fn a_boost_above_nine_counts_as_nine() {
        assert_eq!(
            p(Tier::B, Severity::Low, 200, 0),
            p(Tier::B, Severity::Low, 9, 0)
        );
    }

    #[test]
    fn absurd_escalation_levels_saturate_instead_of_wrapping() {
        assert_eq!(p(Tier::A, Severity::Critical, 9, u32::MAX), i32::MAX);
        assert!(p(Tier::C, Severity::Low, 0, 1_000_000) > p(Tier::A, Severity::Critical, 9, 3));
    }
}
