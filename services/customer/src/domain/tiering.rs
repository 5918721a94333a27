//! The tiering rule: ABC analysis of customers by lifetime value.
//!
//! Two ways to draw the lines, both from the customer-service texts:
//! - **Share**: each customer by their own share of the total lifetime value. A above
//!   `a_min_share` (2% in the texts), C below `c_max_share` (0.5%), B between.
//! - **Cumulative**: for customer bases where nobody reaches 2%. Sort by value, highest first
//!   (ties by id); a customer is A while the customers before them make less than
//!   `a_cumulative_share` of the total, B while they make less than `b_cumulative_share`, else C.
//!   "Before them" means the customer who crosses a line is still inside it, so one customer
//!   making 90% of revenue is A under a 70% line.
//!
//! With no value at all (total zero) everyone is C. A manual override always wins over the
//! computed tier. `PgStore` runs the same rule as one set-based SQL statement
//! (`store::pg::recompute_tiers`), and [`classify`] is the reference it is tested against;
//! `SqliteStore` runs [`classify`] itself.

use tierline_types::Tier;

/// Thresholds for the tiering rule.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum TieringPolicy {
    /// Per-customer share of the total.
    Share {
        /// A customer whose share is above this fraction is A.
        a_min_share: f64,
        /// A customer whose share is below this fraction is C.
        c_max_share: f64,
    },
    /// Cumulative share, customers sorted by value.
    Cumulative {
        /// The top customers that together make up to this fraction are A.
        a_cumulative_share: f64,
        /// Up to this cumulative fraction, B; the rest C.
        b_cumulative_share: f64,
    },
}

impl Default for TieringPolicy {
    /// The texts' thresholds: A above 2%, C below 0.5%.
    fn default() -> Self {
        TieringPolicy::Share {
            a_min_share: 0.02,
            c_max_share: 0.005,
        }
    }
}

impl TieringPolicy {
    /// Problems with the thresholds, as (field, description).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let fraction = |x: f64| x.is_finite() && x > 0.0 && x <= 1.0;
        match *self {
            TieringPolicy::Share {
                a_min_share,
                c_max_share,
            } => {
                if !fraction(a_min_share) {
                    problems.push((
                        "a_min_share",
                        "must be a fraction above 0, at most 1".into(),
                    ));
                }
                if !(c_max_share.is_finite() && c_max_share >= 0.0) {
                    problems.push(("c_max_share", "must be a fraction, at least 0".into()));
                } else if c_max_share > a_min_share {
                    problems.push(("c_max_share", "must not exceed a_min_share".into()));
                }
            }
            TieringPolicy::Cumulative {
                a_cumulative_share,
                b_cumulative_share,
            } => {
                if !fraction(a_cumulative_share) {
                    problems.push((
                        "a_cumulative_share",
                        "must be a fraction above 0, at most 1".into(),
                    ));
                }
                if !fraction(b_cumulative_share) {
                    problems.push((
                        "b_cumulative_share",
                        "must be a fraction above 0, at most 1".into(),
                    ));
                } else if b_cumulative_share < a_cumulative_share {
                    problems.push((
                        "b_cumulative_share",
                        "must be at least a_cumulative_share".into(),
                    ));
                }
            }
        }
        problems
    }
}

/// Classifies customers given as (sort key, lifetime value in micro-units, never negative).
/// Returns tiers in the order given. The sort key breaks ties in the cumulative method.
pub fn classify<K: Ord>(customers: &[(K, i64)], policy: &TieringPolicy) -> Vec<Tier> {
    let total: i128 = customers.iter().map(|(_, v)| i128::from(*v)).sum();
    if total <= 0 {
        return vec![Tier::C; customers.len()];
    }
    let total_f = total as f64;
    match *policy {
        TieringPolicy::Share {
            a_min_share,
            c_max_share,
        } => customers
            .iter()
            .map(|(_, v)| {
                let value = *v as f64;
                if value > a_min_share * total_f {
                    Tier::A
                } else if value < c_max_share * total_f {
                    Tier::C
                } else {
                    Tier::B
                }
            })
            .collect(),
        TieringPolicy::Cumulative {
            a_cumulative_share,
            b_cumulative_share,
        } => {
            let mut order: Vec<usize> = (0..customers.len()).collect();
            order.sort_by(|&i, &j| {
                customers[j]
                    .1
                    .cmp(&customers[i].1)
                    .then_with(|| customers[i].0.cmp(&customers[j].0))
            });
            let mut tiers = vec![Tier::C; customers.len()];
            let mut before: i128 = 0;
            for i in order {
                let before_f = before as f64;
                tiers[i] = if before_f < a_cumulative_share * total_f {
                    Tier::A
                } else if before_f < b_cumulative_share * total_f {
                    Tier::B
                } else {
                    Tier::C
                };
                before += i128::from(customers[i].1);
            }
            tiers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(a: f64, c: f64) -> TieringPolicy {
        TieringPolicy::Share {
            a_min_share: a,
            c_max_share: c,
        }
    }

    fn cumulative(a: f64, b: f64) -> TieringPolicy {
        TieringPolicy::Cumulative {
            a_cumulative_share: a,
            b_cumulative_share: b,
        }
    }

    #[test]
    fn share_method_uses_the_texts_two_percent_and_half_percent_lines() {
        // Total 10,000: A above 200, C below 50.
        let mut customers = vec![(0, 300), (1, 200), (2, 100), (3, 50), (4, 49)];
        customers.push((5, 10_000 - 300 - 200 - 100 - 50 - 49));
        let tiers = classify(&customers, &TieringPolicy::default());
        assert_eq!(
            tiers,
            [Tier::A, Tier::B, Tier::B, Tier::B, Tier::C, Tier::A],
            "exactly 2% is not above 2%; exactly 0.5% is not below 0.5%"
        );
    }

    #[test]
    fn with_many_small_customers_share_method_finds_no_a_but_cumulative_does() {
        let customers: Vec<(u32, i64)> = (0..1000).map(|i| (i, 1_000 + i64::from(i))).collect();
        let by_share = classify(&customers, &share(0.02, 0.0005));
        assert!(by_share.iter().all(|t| *t != Tier::A));
        let by_cumulative = classify(&customers, &cumulative(0.5, 0.8));
        let a = by_cumulative.iter().filter(|t| **t == Tier::A).count();
        let c = by_cumulative.iter().filter(|t| **t == Tier::C).count();
        assert!(
            a > 0 && a < 500,
            "the most valuable make the first half: {a}"
        );
        assert!(c > 0);
        // The highest values are A.
        assert_eq!(by_cumulative[999], Tier::A);
        assert_eq!(by_cumulative[0], Tier::C);
    }

    #[test]
    fn the_customer_who_crosses_a_line_is_inside_it() {
        // 900 crosses the 70% line from 0% and is A; 60 crosses 95% from 90% and is B; 40
        // starts at 96%, past both lines, and is C.
        let customers = [(0, 900), (1, 60), (2, 40)];
        assert_eq!(
            classify(&customers, &cumulative(0.7, 0.95)),
            [Tier::A, Tier::B, Tier::C]
        );
    }

    #[test]
    fn ties_are_broken_by_the_sort_key() {
        let customers = [(2, 100), (1, 100), (3, 100), (4, 100)];
        // A while before < 25% of 400 = 100: only the first in key order.
        let tiers = classify(&customers, &cumulative(0.25, 0.5));
        assert_eq!(tiers, [Tier::B, Tier::A, Tier::C, Tier::C]);
    }

    #[test]
    fn no_value_means_everyone_is_c() {
        let customers = [(0, 0), (1, 0)];
        assert_eq!(
            classify(&customers, &TieringPolicy::default()),
            [Tier::C, Tier::C]
        );
        assert!(classify::<u8>(&[], &TieringPolicy::default()).is_empty());
    }

    #[test]
    fn zero_value_customers_are_c_in_the_cumulative_method() {
        let customers = [(0, 100), (1, 0)];
        assert_eq!(
            classify(&customers, &cumulative(0.5, 1.0)),
            [Tier::A, Tier::C]
        );
    }

    #[test]
    fn thresholds_are_checked() {
        assert!(TieringPolicy::default().problems().is_empty());
        assert!(!share(0.01, 0.02).problems().is_empty());
        assert!(!share(0.0, 0.0).problems().is_empty());
        assert!(!share(f64::NAN, 0.0).problems().is_empty());
        assert!(!cumulative(0.8, 0.6).problems().is_empty());
        assert!(!cumulative(0.8, 1.5).problems().is_empty());
        assert!(cumulative(0.8, 1.0).problems().is_empty());
    }
}
