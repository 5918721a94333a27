//! The customer's timeline: interactions and satisfaction (C = b / a).

use tierline_types::Channel;
use time::OffsetDateTime;
use uuid::Uuid;

use super::customer::CustomerId;

/// Who started a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The customer contacted the company.
    Inbound,
    /// The company contacted the customer.
    Outbound,
}

impl Direction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// An interaction to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInteraction {
    /// Channel.
    pub channel: Channel,
    /// Direction.
    pub direction: Direction,
    /// What it was about.
    pub summary: String,
    /// What was promised.
    pub promised: String,
    /// What was given.
    pub given: String,
    /// The ticket it concerns.
    pub ticket_id: Option<Uuid>,
    /// The agent who handled it.
    pub agent_id: Option<String>,
    /// When it happened; `None` means now.
    pub occurred_at: Option<OffsetDateTime>,
}

/// A recorded interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// Id.
    pub id: Uuid,
    /// Whose timeline.
    pub customer_id: CustomerId,
    /// What was recorded.
    pub details: NewInteraction,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

/// The highest value on the satisfaction scale.
pub const SCALE_MAX: f64 = 10.0;

/// One measurement: expectation a, perception b, and C = b / a.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Satisfaction {
    expected: f64,
    perceived: f64,
}

impl Satisfaction {
    /// Validates a (above 0, at most 10) and b (0 to 10). Errors name the wire field.
    pub fn new(expected: f64, perceived: f64) -> Result<Self, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        if !(expected.is_finite() && expected > 0.0 && expected <= SCALE_MAX) {
            problems.push((
                "expected",
                format!("must be above 0 and at most {SCALE_MAX}"),
            ));
        }
        if !(perceived.is_finite() && (0.0..=SCALE_MAX).contains(&perceived)) {
            problems.push(("perceived", format!("must be from 0 to {SCALE_MAX}")));
        }
        if problems.is_empty() {
            Ok(Satisfaction {
                expected,
                perceived,
            })
        } else {
            Err(problems)
        }
    }

    /// a.
    pub fn expected(self) -> f64 {
        self.expected
    }

    /// b.
    pub fn perceived(self) -> f64 {
        self.perceived
    }

    /// C = b / a: below 1 dissatisfied, about 1 satisfied, above 1 delighted, 0 nothing met.
    pub fn c(self) -> f64 {
        self.perceived / self.expected
    }
}

/// A satisfaction measurement to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSatisfaction {
    /// a and b.
    pub measurement: Satisfaction,
    /// The ticket followed up.
    pub ticket_id: Option<Uuid>,
    /// The agent who handled the ticket.
    pub agent_id: Option<String>,
    /// The customer's words.
    pub comment: String,
}

/// A recorded satisfaction measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct SatisfactionRecord {
    /// Id.
    pub id: Uuid,
    /// The customer.
    pub customer_id: CustomerId,
    /// What was recorded.
    pub details: NewSatisfaction,
    /// When.
    pub created_at: OffsetDateTime,
}

/// Running satisfaction figures, kept as sums so each record updates them in O(1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SatisfactionSummary {
    /// Number of records.
    pub count: i64,
    /// Sum of C.
    pub sum_c: f64,
    /// Sum of a.
    pub sum_expected: f64,
    /// Sum of b.
    pub sum_perceived: f64,
    /// C of the latest record.
    pub last_c: Option<f64>,
    /// When the latest record was taken.
    pub last_at: Option<OffsetDateTime>,
}

impl SatisfactionSummary {
    fn mean(&self, sum: f64) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            sum / self.count as f64
        }
    }

    /// Mean C.
    pub fn mean_c(&self) -> f64 {
        self.mean(self.sum_c)
    }

    /// Mean a.
    pub fn mean_expected(&self) -> f64 {
        self.mean(self.sum_expected)
    }

    /// Mean b.
    pub fn mean_perceived(&self) -> f64 {
        self.mean(self.sum_perceived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_is_perceived_over_expected() {
        let met = Satisfaction::new(8.0, 8.0).expect("valid");
        assert_eq!(met.c(), 1.0);
        let delighted = Satisfaction::new(5.0, 7.5).expect("valid");
        assert_eq!(delighted.c(), 1.5);
        let nothing = Satisfaction::new(6.0, 0.0).expect("valid");
        assert_eq!(nothing.c(), 0.0);
    }

    #[test]
    fn expectation_of_zero_is_refused_because_c_would_be_undefined() {
        let err = Satisfaction::new(0.0, 5.0).expect_err("invalid");
        assert_eq!(err[0].0, "expected");
        assert!(Satisfaction::new(5.0, 11.0).is_err());
        assert!(Satisfaction::new(f64::NAN, 1.0).is_err());
        assert!(Satisfaction::new(5.0, -1.0).is_err());
    }

    #[test]
    fn summary_means_are_zero_without_records() {
        let s = SatisfactionSummary::default();
        assert_eq!(s.mean_c(), 0.0);
        let s = SatisfactionSummary {
            count: 2,
            sum_c: 3.0,
            sum_expected: 10.0,
            sum_perceived: 14.0,
            last_c: Some(1.0),
            last_at: None,
        };
        assert_eq!(s.mean_c(), 1.5);
        assert_eq!(s.mean_expected(), 5.0);
        assert_eq!(s.mean_perceived(), 7.0);
    }
}
