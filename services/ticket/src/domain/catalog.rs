//! The catalog (configuration): ticket categories and the departments that own them, and the
//! root-cause taxonomy; plus the rules for tags, skills and language codes.
//!
//! Which department owns which category is configuration, not code. The default catalog follows
//! the complaint-handling texts: product-quality complaints to quality assurance, complaints
//! about service staff to HR, product suggestions to R&D, the rest to customer service.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use tierline_runtime::Violations;
use tierline_runtime::error::FieldViolation;

use super::priority::MAX_PRIORITY_BOOST;
use super::sla::Severity;

/// Most tags on a ticket.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_LEN: usize = 64;
/// Most skills a ticket (or a category) may require of its own.
pub const MAX_SKILLS: usize = 20;
/// Longest skill, in characters.
pub const MAX_SKILL_LEN: usize = 64;
/// Longest language code, in characters.
pub const MAX_LANGUAGE_CODE_LEN: usize = 35;
/// Longest category or root-cause id, and department name.
pub const MAX_ID_LEN: usize = 64;
/// Longest display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
/// Longest root-cause description.
pub const MAX_DESCRIPTION_LEN: usize = 500;

/// The kind of a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketType {
    /// The customer is dissatisfied and wants something put right.
    Complaint,
    /// The customer asks a question.
    Inquiry,
    /// The customer asks for something to be done.
    Request,
}

impl TicketType {
    /// Every type.
    pub const ALL: [TicketType; 3] = [
        TicketType::Complaint,
        TicketType::Inquiry,
        TicketType::Request,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketType::Complaint => "complaint",
            TicketType::Inquiry => "inquiry",
            TicketType::Request => "request",
        }
    }

    /// Reads a stored name.
    pub fn from_db(s: &str) -> Option<TicketType> {
        TicketType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for TicketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ticket category: decides the owning department and the defaults of new tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    /// Id, e.g. "product_quality": 1-64 characters of a-z, 0-9 and _, starting with a letter.
    pub id: String,
    /// Name for people and IVR prompts.
    pub display_name: String,
    /// The department that owns tickets of this category; routing queues are per department.
    pub department: String,
    /// Type given to new tickets that name none.
    pub default_type: TicketType,
    /// Severity given to new tickets that name none; medium when not configured.
    #[serde(default = "medium")]
    pub default_severity: Severity,
    /// Added to the ticket's priority, 0-9.
    #[serde(default)]
    pub priority_boost: u8,
    /// Skills every ticket of this category requires ("<kind>:<value>").
    #[serde(default)]
    pub required_skills: Vec<String>,
    /// Whether new tickets may use it; inactive categories stay valid on old tickets.
    #[serde(default = "yes")]
    pub active: bool,
}

/// A root cause in the taxonomy, recorded on a ticket while resolving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootCause {
    /// Id, e.g. "process_not_followed"; same form as a category id.
    pub id: String,
    /// Name for people.
    pub display_name: String,
    /// When to choose it, one line.
    pub description: String,
    /// Whether it may be chosen now; inactive causes stay valid on old tickets.
    #[serde(default = "yes")]
    pub active: bool,
}

fn medium() -> Severity {
    Severity::Medium
}

fn yes() -> bool {
    true
}

/// Categories and root causes. Fields left out of the configuration keep their defaults, so a
/// deployment can replace the categories and keep the seeded root causes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Catalog {
    /// The category of new tickets that name none; must be active.
    pub default_category: String,
    /// Every category, active or not.
    pub categories: Vec<Category>,
    /// Every root cause, active or not.
    pub root_causes: Vec<RootCause>,
}

impl Default for Catalog {
    /// The categories and root causes of the complaint-handling texts.
    fn default() -> Self {
        use Severity::{High, Low, Medium};
        use TicketType::{Complaint, Inquiry, Request};

        // (id, display name, department, default type, default severity, priority boost)
        #[rustfmt::skip]
        let categories = [
            ("product_quality", "Product quality", "quality_assurance", Complaint, Medium, 4),
            ("staff_conduct", "Service staff conduct", "hr", Complaint, High, 5),
            ("product_suggestion", "Product suggestion", "r_and_d", Request, Low, 0),
            ("billing", "Billing and payments", "customer_service", Inquiry, Medium, 2),
            ("delivery", "Delivery", "customer_service", Complaint, Medium, 2),
            ("general", "General enquiry", "customer_service", Inquiry, Medium, 0),
        ];
        let cause = |id: &str, display_name: &str, description: &str| RootCause {
            id: id.into(),
            display_name: display_name.into(),
            description: description.into(),
            active: true,
        };
        Catalog {
            default_category: "general".into(),
            categories: categories
                .into_iter()
                .map(
                    |(id, name, department, default_type, default_severity, priority_boost)| {
                        Category {
                            id: id.into(),
                            display_name: name.into(),
                            department: department.into(),
                            default_type,
                            default_severity,
                            priority_boost,
                            // Empty by default: a skill nobody has would strand the category's
                            // tickets.
                            required_skills: Vec::new(),
                            active: true,
                        }
                    },
                )
                .collect(),
            root_causes: vec![
                cause(
                    "poor_attitude",
                    "Poor attitude",
                    "Staff were rude, indifferent or unhelpful towards the customer.",
                ),
                cause(
                    "inconsistent_treatment",
                    "Inconsistent treatment",
                    "The customer got different answers or treatment than before or than others.",
                ),
                cause(
                    "process_not_followed",
                    "Process not followed",
                    "A defined procedure or promise existed but was not followed.",
                ),
                cause(
                    "staff_mood",
                    "Staff mood",
                    "An employee's bad mood or stress spilled over into the service.",
                ),
                cause(
                    "neglected_facilities",
                    "Neglected facilities",
                    "Premises, equipment or tools were dirty, broken or poorly maintained.",
                ),
                cause(
                    "product_quality",
                    "Product quality",
                    "The product itself was faulty, not as described or below standard.",
                ),
                cause(
                    "slow_service",
                    "Slow service",
                    "The customer waited too long for an answer, a fix or a delivery.",
                ),
            ],
        }
    }
}

impl Catalog {
    /// The category for a new ticket: `id`, or the default category when `id` is empty. An
    /// unknown or inactive category is a violation of the field `category`.
    pub fn category(&self, id: &str) -> Result<&Category, FieldViolation> {
        let wanted = if id.is_empty() {
            self.default_category.as_str()
        } else {
            id
        };
        match self.find_category(wanted) {
            Some(c) if c.active => Ok(c),
            Some(_) => Err(FieldViolation::new(
                "category",
                format!("category {wanted:?} is no longer in use"),
            )),
            None if id.is_empty() => Err(FieldViolation::new(
                "category",
                "required: no default category is configured",
            )),
            None => Err(FieldViolation::new(
                "category",
                format!("unknown category {wanted:?}"),
            )),
        }
    }

    /// The category with this id, active or not (for tickets that already carry it).
    pub fn find_category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    /// Categories by id, for ListCategories.
    pub fn categories(&self, include_inactive: bool) -> Vec<&Category> {
        let mut list: Vec<&Category> = self
            .categories
            .iter()
            .filter(|c| include_inactive || c.active)
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// The root cause to record on a ticket. An unknown or inactive cause is a violation of the
    /// field `root_cause`; clearing the field (empty) is the caller's business.
    pub fn root_cause(&self, id: &str) -> Result<&RootCause, FieldViolation> {
        match self.find_root_cause(id) {
            Some(r) if r.active => Ok(r),
            Some(_) => Err(FieldViolation::new(
                "root_cause",
                format!("root cause {id:?} is no longer in use"),
            )),
            None => Err(FieldViolation::new(
                "root_cause",
                format!("unknown root cause {id:?}"),
            )),
        }
    }

    /// The root cause with this id, active or not.
    pub fn find_root_cause(&self, id: &str) -> Option<&RootCause> {
        self.root_causes.iter().find(|r| r.id == id)
    }

    /// Root causes by id, for ListRootCauses.
    pub fn root_causes(&self, include_inactive: bool) -> Vec<&RootCause> {
        let mut list: Vec<&RootCause> = self
            .root_causes
            .iter()
            .filter(|r| include_inactive || r.active)
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Problems with the configuration, as (field, description); empty when it is usable.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut push = |field: String, problem: &str| problems.push((field, problem.to_owned()));

        let mut ids = HashSet::new();
        for (i, c) in self.categories.iter().enumerate() {
            let at = |field: &str| format!("categories[{i}].{field}");
            if let Err(e) = check_identifier(&c.id) {
                push(at("id"), &e);
            } else if !ids.insert(c.id.as_str()) {
                push(at("id"), &format!("duplicate category id {:?}", c.id));
            }
            if let Err(e) = check_display_text(&c.display_name, MAX_DISPLAY_NAME_LEN) {
                push(at("display_name"), &e);
            }
            if let Err(e) = check_identifier(&c.department) {
                push(at("department"), &e);
            }
            if c.priority_boost > MAX_PRIORITY_BOOST {
                push(
                    at("priority_boost"),
                    &format!("must be 0-{MAX_PRIORITY_BOOST}"),
                );
            }
            if let Err(v) = normalize_skills(&at("required_skills"), &c.required_skills) {
                for f in v.as_slice() {
                    push(f.field.clone(), &f.description);
                }
            }
        }
        if !self.categories.iter().any(|c| c.active) {
            push(
                "categories".into(),
                "at least one active category is required",
            );
        }
        match self.find_category(&self.default_category) {
            Some(c) if c.active => {}
            Some(_) => push("default_category".into(), "must name an active category"),
            None => push(
                "default_category".into(),
                &format!("names no category: {:?}", self.default_category),
            ),
        }

        let mut ids = HashSet::new();
        for (i, r) in self.root_causes.iter().enumerate() {
            let at = |field: &str| format!("root_causes[{i}].{field}");
            if let Err(e) = check_identifier(&r.id) {
                push(at("id"), &e);
            } else if !ids.insert(r.id.as_str()) {
                push(at("id"), &format!("duplicate root cause id {:?}", r.id));
            }
            if let Err(e) = check_display_text(&r.display_name, MAX_DISPLAY_NAME_LEN) {
                push(at("display_name"), &e);
            }
            if let Err(e) = check_display_text(&r.description, MAX_DESCRIPTION_LEN) {
                push(at("description"), &e);
            }
        }
        problems
    }
}

/// Checks a category or root-cause id or department name: 1-64 characters of a-z, 0-9 and _,
/// starting with a letter.
fn check_identifier(s: &str) -> Result<(), String> {
    let starts_with_letter = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let charset = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if starts_with_letter && charset && s.len() <= MAX_ID_LEN {
        Ok(())
    } else {
        Err(format!(
            "must be 1-{MAX_ID_LEN} characters of a-z, 0-9 and _, starting with a letter"
        ))
    }
}

/// Checks a text for people: not blank, at most `max` characters.
fn check_display_text(s: &str, max: usize) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else if s.chars().count() > max {
        Err(format!("must be at most {max} characters"))
    } else {
        Ok(())
    }
}

/// Checks tags (each 1-64 characters of a-z, 0-9, `_ . : -`; at most 20 distinct) and returns
/// them sorted and unique. `field` names the request field (`tags`, `ticket.tags`); a bad tag
/// is reported as `field[i]`.
pub fn normalize_tags<S: AsRef<str>>(field: &str, tags: &[S]) -> Result<Vec<String>, Violations> {
    let mut v = Violations::new();
    let mut unique = BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let tag = tag.as_ref();
        let charset = tag.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':' | b'-')
        });
        if tag.is_empty() || tag.len() > MAX_TAG_LEN || !charset {
            v.add(
                format!("{field}[{i}]"),
                format!("must be 1-{MAX_TAG_LEN} characters of a-z, 0-9, _ . : and -"),
            );
        } else {
            unique.insert(tag.to_owned());
        }
    }
    // Counted after removing duplicates: repeating a tag does not use up the allowance.
    if unique.len() > MAX_TAGS {
        v.add(field, format!("at most {MAX_TAGS} distinct tags"));
    }
    v.finish(|| unique.into_iter().collect())
}

/// Checks one skill: `<kind>:<value>` in lower case, kind of a-z, 0-9, `_ -`, value of a-z, 0-9,
/// `_ . -`, at most 64 characters in all ("language:pt-br", "product:fibre").
pub fn check_skill(skill: &str) -> Result<(), String> {
    let part_ok = |part: &str, extra: &[u8]| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(&b))
    };
    let well_formed = skill
        .split_once(':')
        .is_some_and(|(kind, value)| part_ok(kind, b"_-") && part_ok(value, b"_.-"));
    if well_formed && skill.len() <= MAX_SKILL_LEN {
        Ok(())
    } else {
        Err(format!(
            "must be <kind>:<value> in lower case (a-z, 0-9, _ . -), at most {MAX_SKILL_LEN} characters"
        ))
    }
}

/// Checks required skills (at most 20 distinct) and returns them sorted and unique. `field`
/// names the request field; a bad skill is reported as `field[i]`.
pub fn normalize_skills<S: AsRef<str>>(
    field: &str,
    skills: &[S],
) -> Result<Vec<String>, Violations> {
    let mut v = Violations::new();
    let mut unique = BTreeSet::new();
    for (i, skill) in skills.iter().enumerate() {
        let skill = skill.as_ref();
        match check_skill(skill) {
            Ok(()) => {
                unique.insert(skill.to_owned());
            }
            Err(e) => v.add(format!("{field}[{i}]"), e),
        }
    }
    if unique.len() > MAX_SKILLS {
        v.add(field, format!("at most {MAX_SKILLS} distinct skills"));
    }
    v.finish(|| unique.into_iter().collect())
}

/// Normalises a BCP-47 language code: at most 35 characters, subtags of 1-8 letters or digits
/// joined by hyphens, the first 2-8 letters. Case follows BCP 47's conventions: language lower
/// case, a four-letter script title case, a two-letter region upper case, the rest (and
/// everything after a singleton such as `x`) lower case: "PT-br" gives "pt-BR",
/// "zh-hant-tw" gives "zh-Hant-TW". The caller treats an empty code as "not given".
pub fn normalize_language_code(raw: &str) -> Result<String, String> {
    const SHAPE: &str = "must be a language code like de or pt-BR";
    if raw.len() > MAX_LANGUAGE_CODE_LEN {
        return Err(format!(
            "must be at most {MAX_LANGUAGE_CODE_LEN} characters"
        ));
    }
    let mut out = Vec::new();
    let mut after_singleton = false;
    for (i, subtag) in raw.split('-').enumerate() {
        let alnum = subtag.bytes().all(|b| b.is_ascii_alphanumeric());
        let alpha = subtag.bytes().all(|b| b.is_ascii_alphabetic());
        if subtag.is_empty()
            || subtag.len() > 8
            || !alnum
            || (i == 0 && (!alpha || subtag.len() < 2))
        {
            return Err(SHAPE.into());
        }
        let lower = subtag.to_ascii_lowercase();
        let normalized = if i == 0 || after_singleton {
            lower
        } else if subtag.len() == 2 && alpha {
            subtag.to_ascii_uppercase()
        } else if subtag.len() == 4 && alpha {
            let mut title = lower;
            title[..1].make_ascii_uppercase();
            title
        } else {
            lower
        };
        // Everything after an extension or private-use singleton keeps lower case.
        after_singleton |= i > 0 && subtag.len() == 1;
        out.push(normalized);
    }
    Ok(out.join("-"))
}

/// The skill a ticket's language adds: "language:" and the code in lower case.
pub fn language_skill(language_code: &str) -> String {
    format!("language:{}", language_code.to_ascii_lowercase())
}

/// A ticket's effective required skills (`Ticket.required_skills` on output): the category's,
/// "language:<code>" when the ticket has a language, and the ticket's own, sorted and unique.
pub fn effective_skills(
    category_skills: &[String],
    language_code: Option<&str>,
    own: &[String],
) -> Vec<String> {
    let mut all: BTreeSet<String> = category_skills.iter().chain(own).cloned().collect();
    if let Some(code) = language_code.filter(|c| !c.is_empty()) {
        all.insert(language_skill(code));
    }
    all.into_iter().collect()
}

/// The ticket's own skills out of a list a client sent back: without the skills the category
/// and the language add, which [`effective_skills`] puts back on output. Stops a read-modify-write
/// from freezing derived skills into the ticket (they would outlive a category change).
pub fn own_skills(
    skills: &[String],
    category_skills: &[String],
    language_code: Option<&str>,
) -> Vec<String> {
    let language = language_code.filter(|c| !c.is_empty()).map(language_skill);
    skills
        .iter()
        .filter(|s| !category_skills.contains(s) && language.as_ref() != Some(*s))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::default()
    }

    fn fields(problems: &[(String, String)]) -> Vec<&str> {
        problems.iter().map(|(f, _)| f.as_str()).collect()
    }

    fn violation_fields(v: &Violations) -> Vec<&str> {
        v.as_slice().iter().map(|f| f.field.as_str()).collect()
    }

    #[test]
    fn the_default_catalog_is_valid() {
        assert_eq!(catalog().problems(), Vec::<(String, String)>::new());
    }

    #[test]
    fn the_default_categories_route_as_the_texts_say() {
        let c = catalog();
        let department = |id: &str| c.category(id).map(|c| c.department.as_str());
        assert_eq!(department("product_quality"), Ok("quality_assurance"));
        assert_eq!(department("staff_conduct"), Ok("hr"));
        assert_eq!(department("product_suggestion"), Ok("r_and_d"));
        for rest in ["billing", "delivery", "general"] {
            assert_eq!(department(rest), Ok("customer_service"), "{rest}");
        }
        assert_eq!(c.categories.len(), 6);
    }

    #[test]
    fn the_default_root_causes_are_the_seven_from_the_texts() {
        let ids: Vec<_> = catalog().root_causes.iter().map(|r| r.id.clone()).collect();
        assert_eq!(
            ids,
            [
                "poor_attitude",
                "inconsistent_treatment",
                "process_not_followed",
                "staff_mood",
                "neglected_facilities",
                "product_quality",
                "slow_service",
            ]
        );
        assert!(
            catalog()
                .root_causes
                .iter()
                .all(|r| r.active && !r.display_name.is_empty() && !r.description.is_empty())
        );
    }

    #[test]
    fn an_empty_category_means_the_default_category() {
        let c = catalog();
        assert_eq!(c.category("").map(|c| c.id.as_str()), Ok("general"));
    }

    #[test]
    fn unknown_and_inactive_categories_are_refused_for_new_tickets_naming_the_field() {
        let mut c = catalog();
        let err = c.category("weather").expect_err("unknown");
        assert_eq!(err.field, "category");
        assert!(err.description.contains("unknown category"), "{err}");

        if let Some(billing) = c.categories.iter_mut().find(|c| c.id == "billing") {
            billing.active = false;
        }
        let err = c.category("billing").expect_err("inactive");
        assert_eq!(err.field, "category");
        assert!(err.description.contains("no longer in use"), "{err}");
        // Old tickets still find it, and listings show it only on request.
        assert!(c.find_category("billing").is_some());
        assert!(c.categories(false).iter().all(|c| c.id != "billing"));
        assert!(c.categories(true).iter().any(|c| c.id == "billing"));
    }

    #[test]
    fn categories_and_root_causes_are_listed_by_id() {
        let c = catalog();
        let ids: Vec<_> = c.categories(false).iter().map(|c| c.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted);
        let ids: Vec<_> = c.root_causes(false).iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"inconsistent_treatment"));
        assert_eq!(ids.len(), 7);
    }

    #[test]
    fn root_causes_are_looked_up_and_inactive_ones_refused() {
        let mut c = catalog();
        assert_eq!(
            c.root_cause("staff_mood").map(|r| r.display_name.as_str()),
            Ok("Staff mood")
        );
        let err = c.root_cause("bad_luck").expect_err("unknown");
        assert_eq!(err.field, "root_cause");
        c.root_causes[0].active = false;
        let err = c.root_cause("poor_attitude").expect_err("inactive");
        assert!(err.description.contains("no longer in use"), "{err}");
        assert!(c.find_root_cause("poor_attitude").is_some());
        assert_eq!(c.root_causes(false).len(), 6);
        assert_eq!(c.root_causes(true).len(), 7);
    }

    #[test]
    fn the_catalog_deserialises_with_defaults_for_left_out_fields() {
        let json = r#"{
            "default_category": "misc",
            "categories": [
                {"id": "misc", "display_name": "Misc", "department": "front_desk",
                 "default_type": "inquiry"},
                {"id": "safety", "display_name": "Safety", "department": "quality_assurance",
                 "default_type": "complaint", "default_severity": "critical",
                 "priority_boost": 9, "required_skills": ["product:safety"], "active": false}
            ]
        }"#;
        let c: Catalog = serde_json::from_str(json).expect("parses");
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let misc = c.category("").expect("default category");
        assert_eq!(misc.default_severity, Severity::Medium);
        assert_eq!(misc.priority_boost, 0);
        assert!(misc.active);
        let safety = c.find_category("safety").expect("present");
        assert_eq!(safety.default_severity, Severity::Critical);
        assert_eq!(safety.default_type, TicketType::Complaint);
        assert_eq!(
            c.root_causes,
            Catalog::default().root_causes,
            "kept the seeds"
        );

        let unknown = r#"{"categories": [], "colour": "red"}"#;
        assert!(serde_json::from_str::<Catalog>(unknown).is_err());
    }

    #[test]
    fn catalog_validation_finds_every_problem() {
        let mut c = catalog();
        c.categories[1].id = c.categories[0].id.clone();
        c.categories[2].department = String::new();
        c.categories[3].priority_boost = 10;
        c.categories[4].display_name = "  ".into();
        c.categories[5].required_skills = vec!["Language:DE".into()];
        c.categories[5].id = "Bad Id".into();
        c.root_causes[1].id = "poor_attitude".into();
        c.root_causes[2].description = String::new();
        let problems = c.problems();
        assert_eq!(
            fields(&problems),
            [
                "categories[1].id",
                "categories[2].department",
                "categories[3].priority_boost",
                "categories[4].display_name",
                "categories[5].id",
                "categories[5].required_skills[0]",
                "default_category",
                "root_causes[1].id",
                "root_causes[2].description",
            ]
        );
        for (field, problem) in &problems {
            assert!(!problem.ends_with('.'), "{field}: {problem}");
            assert_eq!(*problem, problem.to_lowercase());
        }
    }

    #[test]
    fn a_catalog_needs_an_active_category_and_an_active_default() {
        let mut c = catalog();
        for category in &mut c.categories {
            category.active = false;
        }
        assert_eq!(fields(&c.problems()), ["categories", "default_category"]);

        let mut c = catalog();
        c.default_category = "nothing".into();
        assert_eq!(fields(&c.problems()), ["default_category"]);
        let err = c.category("").expect_err("no default");
        assert_eq!(err.field, "category");
    }

    #[test]
    fn ticket_types_round_trip_their_stored_names() {
        for t in TicketType::ALL {
            assert_eq!(TicketType::from_db(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).expect("serialises");
            assert_eq!(json, format!("\"{t}\""));
        }
        assert_eq!(TicketType::from_db("Complaint"), None);
    }

    #[test]
    fn tags_are_checked_and_returned_sorted_and_unique() {
        let tags = ["vip", "billing:q3", "a.b-c_d", "vip"];
        assert_eq!(
            normalize_tags("tags", &tags),
            Ok(vec![
                "a.b-c_d".to_string(),
                "billing:q3".to_string(),
                "vip".to_string()
            ])
        );
        let bad = [
            "ok",
            "",
            "Upper",
            "with space",
            &"x".repeat(65),
            &"y".repeat(64),
        ];
        let err = normalize_tags("ticket.tags", &bad).expect_err("bad tags");
        assert_eq!(
            violation_fields(&err),
            [
                "ticket.tags[1]",
                "ticket.tags[2]",
                "ticket.tags[3]",
                "ticket.tags[4]"
            ]
        );
        assert_eq!(normalize_tags::<&str>("tags", &[]), Ok(vec![]));
    }

    #[test]
    fn at_most_twenty_distinct_tags_are_allowed() {
        let twenty: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let mut repeated = twenty.clone();
        repeated.extend(twenty.clone());
        assert_eq!(normalize_tags("tags", &repeated).map(|t| t.len()), Ok(20));
        let mut too_many = twenty;
        too_many.push("t20".into());
        let err = normalize_tags("tags", &too_many).expect_err("21 tags");
        assert_eq!(violation_fields(&err), ["tags"]);
    }

    #[test]
    fn skills_are_kind_colon_value_in_lower_case() {
        for good in [
            "language:de",
            "language:pt-br",
            "product:fibre",
            "region:eu_west.2",
        ] {
            assert_eq!(check_skill(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "language",
            ":de",
            "language:",
            "Language:de",
            "language:DE",
            "a:b:c",
            "kind.x:v",
            "lang uage:de",
        ] {
            assert!(check_skill(bad).is_err(), "{bad:?}");
        }
        assert!(check_skill(&format!("k:{}", "v".repeat(62))).is_ok());
        assert!(check_skill(&format!("k:{}", "v".repeat(63))).is_err());
    }

    #[test]
    fn skill_lists_are_sorted_unique_and_at_most_twenty() {
        assert_eq!(
            normalize_skills(
                "required_skills",
                &["product:tv", "language:de", "product:tv"]
            ),
            Ok(vec!["language:de".to_string(), "product:tv".to_string()])
        );
        let err = normalize_skills("required_skills", &["ok:1", "NO"]).expect_err("bad");
        assert_eq!(violation_fields(&err), ["required_skills[1]"]);
        let many: Vec<String> = (0..21).map(|i| format!("product:p{i}")).collect();
        let err = normalize_skills("required_skills", &many).expect_err("21 skills");
        assert_eq!(violation_fields(&err), ["required_skills"]);
    }

    #[test]
    fn language_codes_are_normalised_to_bcp47_case() {
        let cases = [
            ("de", "de"),
            ("DE", "de"),
            ("pt-br", "pt-BR"),
            ("PT-br", "pt-BR"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("sr-LATN-rs", "sr-Latn-RS"),
            ("es-419", "es-419"),
            ("en-US-x-Twain", "en-US-x-twain"),
            ("de-CH-1996", "de-CH-1996"),
            ("yue", "yue"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_language_code(raw), Ok(want.to_string()), "{raw}");
        }
    }

    #[test]
    fn malformed_language_codes_are_refused() {
        for bad in [
            "",
            "d",
            "1de",
            "de-",
            "-de",
            "de--ch",
            "pt_BR",
            "de ch",
            "toolongcode",
            "de-abcdefghi",
            "ü",
        ] {
            assert!(normalize_language_code(bad).is_err(), "{bad:?}");
        }
        let long = format!("en{}", "-abc".repeat(9));
        assert!(long.len() > MAX_LANGUAGE_CODE_LEN);
        assert_eq!(
            normalize_language_code(&long),
            Err("must be at most 35 characters".to_string())
        );
        let just_fits = format!("en{}-abcd", "-abc".repeat(7));
        assert_eq!(just_fits.len(), MAX_LANGUAGE_CODE_LEN);
        assert!(normalize_language_code(&just_fits).is_ok());
    }

    #[test]
    fn effective_skills_join_category_language_and_own_skills() {
        let category = vec!["product:fibre".to_string(), "team:tier2".to_string()];
        let own = vec!["product:fibre".to_string(), "device:router".to_string()];
        assert_eq!(
            effective_skills(&category, Some("pt-BR"), &own),
            [
                "device:router",
                "language:pt-br",
                "product:fibre",
                "team:tier2"
            ]
        );
        assert_eq!(
            effective_skills(&category, None, &[]),
            ["product:fibre", "team:tier2"]
        );
        assert_eq!(effective_skills(&[], Some(""), &[]), Vec::<String>::new());
    }

    #[test]
    fn own_skills_drop_what_the_category_and_language_add() {
        let category = vec!["product:fibre".to_string()];
        let sent_back = vec![
            "language:de".to_string(),
            "product:fibre".to_string(),
            "device:router".to_string(),
        ];
        assert_eq!(
            own_skills(&sent_back, &category, Some("de")),
            ["device:router"]
        );
        let effective = effective_skills(
            &category,
            Some("de"),
            &own_skills(&sent_back, &category, Some("de")),
        );
        assert_eq!(effective, ["device:router", "language:de", "product:fibre"]);
    }
}
