//! The demo organisation's fixed ingredients: names, teams, projects and the models
//! people call. The seed only chooses among these, so every demo looks like a plausible
//! company and every priced model is one the built-in price table knows.

/// Every demo email ends with this (RFC 2606 reserves `.example`).
pub const DOMAIN: &str = "acme.example";

/// The admin whose key is printed.
pub const ADMIN_NAME: &str = "Avery Admin";
/// Local part of the admin's email.
pub const ADMIN_LOCAL: &str = "admin";

/// Given names (ASCII, so they make email addresses as they are).
pub const FIRST_NAMES: &[&str] = &[
    "Ada", "Amara", "Arjun", "Beatriz", "Bruno", "Camille", "Chen", "Dalia", "Diego", "Elena",
    "Emeka", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Isaac", "Jonas", "Kavya", "Kenji",
    "Lars", "Leila", "Lucas", "Maya", "Mateo", "Nadia", "Noah", "Olga", "Omar", "Priya", "Rafael",
    "Rosa", "Samir", "Sofia", "Tariq", "Thea", "Umar", "Vera", "Wei", "Yara", "Zoe",
];

/// Family names.
pub const LAST_NAMES: &[&str] = &[
    "Abbott",
    "Adeyemi",
    "Almeida",
    "Bauer",
    "Bergstrom",
    "Castillo",
    "Chowdhury",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Hoffmann",
    "Ibrahim",
    "Ito",
    "Jensen",
    "Kowalski",
    "Kumar",
    "Larsen",
    "Lindqvist",
    "Lopez",
    "Meyer",
    "Moreau",
    "Nakamura",
    "Novak",
    "Okafor",
    "Olsen",
    "Park",
    "Petrov",
    "Quinn",
    "Rossi",
    "Santos",
    "Schmidt",
    "Silva",
    "Tanaka",
    "Varga",
    "Wagner",
    "Walsh",
    "Yilmaz",
    "Zhang",
    "Ziegler",
];

/// A model people call, with the shape of a typical request.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The provider as the filter reports it (`openai`, `anthropic`, …).
    pub provider: &'static str,
    /// The model name as the provider reports it.
    pub name: &'static str,
    /// Typical prompt tokens.
    pub input: i64,
    /// Typical completion tokens (0 for embeddings).
    pub output: i64,
    /// Share of the completion that is reasoning (o-series), in percent.
    pub reasoning_percent: i64,
    /// Whether the provider reports cached prompt tokens.
    pub caches: bool,
    /// Whether it streams (so a stream can be cut and estimated).
    pub streams: bool,
}

const fn model(
    provider: &'static str,
    name: &'static str,
    input: i64,
    output: i64,
    reasoning_percent: i64,
    caches: bool,
    streams: bool,
) -> Model {
    Model {
        provider,
        name,
        input,
        output,
        reasoning_percent,
        caches,
        streams,
    }
}

/// The models of the demo: priced ones from `pricing::builtin` (a dated Azure name and
/// a Bedrock id exercise prefix and vendor matching) and one self-hosted model the
/// price table does not know, which analytics count as unpriced.
pub const MODELS: &[Model] = &[
    model("openai", "gpt-4o", 1800, 450, 0, true, true),
    model("openai", "gpt-4o-mini", 900, 250, 0, true, true),
    model("openai", "gpt-4.1", 3500, 700, 0, true, true),
    model("openai", "o3-mini", 1500, 1800, 60, true, true),
    model("openai", "text-embedding-3-small", 600, 0, 0, false, false),
    model("azure", "gpt-4o-mini-2024-07-18", 900, 250, 0, true, true),
    model("anthropic", "claude-sonnet-4-5", 4000, 800, 0, true, true),
    model("anthropic", "claude-haiku-4-5", 1500, 350, 0, true, true),
    model("anthropic", "claude-opus-4-1", 5000, 1000, 0, true, true),
    model("gemini", "gemini-2.5-flash", 2500, 500, 0, true, true),
    model("gemini", "gemini-2.5-pro", 6000, 1200, 0, true, true),
    model(
        "bedrock",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        3000,
        600,
        0,
        false,
        true,
    ),
    model(
        "vllm",
        "meta-llama/Llama-3.1-70B-Instruct",
        2000,
        500,
        0,
        false,
        true,
    ),
];

/// A team of the demo and how its people work.
#[derive(Debug, Clone, Copy)]
pub struct TeamTemplate {
    /// Team name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// How many people.
    pub size: usize,
    /// The team's projects (`X-Project-ID`).
    pub projects: &'static [&'static str],
    /// Which models the team favours, by name, with weights.
    pub models: &'static [(&'static str, u32)],
    /// Percent of requests sent with `X-Privacy-Mode: strict`.
    pub strict_percent: u32,
}

/// The teams, in creation order.
pub const TEAMS: &[TeamTemplate] = &[
    TeamTemplate {
        name: "Platform Engineering",
        description: "Infrastructure, developer tooling and on-call",
        size: 7,
        projects: &["infra-copilot", "incident-bot", "ci-assistant"],
        models: &[
            ("gpt-4.1", 5),
            ("gpt-4o", 4),
            ("gpt-4o-mini", 6),
            ("claude-sonnet-4-5", 5),
            ("anthropic.claude-3-5-sonnet-20240620-v1:0", 2),
        ],
        strict_percent: 5,
    },
    TeamTemplate {
        name: "Data Science",
        description: "Models, evaluations and the feature store",
        size: 6,
        projects: &["churn-model", "feature-store", "eval-harness"],
        models: &[
            ("gemini-2.5-pro", 3),
            ("gemini-2.5-flash", 5),
            ("text-embedding-3-small", 6),
            ("o3-mini", 3),
            ("meta-llama/Llama-3.1-70B-Instruct", 4),
        ],
        strict_percent: 10,
    },
    TeamTemplate {
        name: "Product",
        description: "Product managers and designers",
        size: 5,
        projects: &["checkout-assistant", "search-relevance"],
        models: &[
            ("gpt-4o", 6),
            ("claude-sonnet-4-5", 5),
            ("gpt-4o-mini", 3),
            ("gemini-2.5-flash", 2),
        ],
        strict_percent: 5,
    },
    TeamTemplate {
        name: "Customer Support",
        description: "Support agents and the support bot",
        size: 5,
        projects: &["support-bot", "ticket-triage"],
        models: &[
            ("gpt-4o-mini-2024-07-18", 7),
            ("claude-haiku-4-5", 6),
            ("gpt-4o-mini", 3),
            ("text-embedding-3-small", 2),
        ],
        strict_percent: 40,
    },
    TeamTemplate {
        name: "Research",
        description: "Applied research and prototypes",
        size: 4,
        projects: &["rag-experiments", "agent-prototypes"],
        models: &[
            ("claude-opus-4-1", 3),
            ("gemini-2.5-pro", 3),
            ("o3-mini", 4),
            ("meta-llama/Llama-3.1-70B-Instruct", 3),
            ("claude-sonnet-4-5", 3),
        ],
        strict_percent: 10,
    },
];

/// How people outside every team work.
pub const NO_TEAM_MODELS: &[(&str, u32)] =
    &[("gpt-4o-mini", 5), ("claude-sonnet-4-5", 3), ("gpt-4o", 2)];

/// Projects of people outside every team.
pub const NO_TEAM_PROJECTS: &[&str] = &["internal-tools"];

/// People in no team (contractors, leadership).
pub const NO_TEAM_PEOPLE: usize = 3;

/// Reasons of the demo's transfers.
pub const TRANSFER_REASONS: &[&str] = &[
    "Project deadline support",
    "Covering the migration sprint",
    "Hackathon week",
    "Extra eval runs for the launch",
    "Thanks for taking over the on-call",
];

/// Reasons of the demo's quota requests.
pub const REQUEST_REASONS: &[&str] = &[
    "Launch week: load-testing the assistant",
    "Re-running the evaluation suite",
    "Customer demo preparation",
    "Backfilling embeddings for the new index",
    "Quarterly report drafting",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::PriceCatalog;

    #[test]
    fn every_model_but_the_self_hosted_one_has_a_built_in_price() {
        let prices = PriceCatalog::builtin();
        let unpriced: Vec<&str> = MODELS
            .iter()
            .filter(|m| prices.price(m.name).is_none())
            .map(|m| m.name)
            .collect();
        assert_eq!(unpriced, ["meta-llama/Llama-3.1-70B-Instruct"]);
    }

    #[test]
    fn team_models_exist_and_names_make_emails() {
        for (name, _) in TEAMS.iter().flat_map(|t| t.models).chain(NO_TEAM_MODELS) {
            assert!(MODELS.iter().any(|m| m.name == *name), "{name}");
        }
        for name in FIRST_NAMES.iter().chain(LAST_NAMES) {
            assert!(name.chars().all(|c| c.is_ascii_alphabetic()), "{name}");
        }
        let people: usize = TEAMS.iter().map(|t| t.size).sum::<usize>() + NO_TEAM_PEOPLE;
        assert_eq!(people, 30);
        assert!(FIRST_NAMES.len() >= people && LAST_NAMES.len() >= people);
    }
}
