//! The price catalog: what a request cost in USD, computed when its usage is ingested.
//!
//! Prices come from a built-in list of current models ([`builtin::PRICES`]) and,
//! optionally, from `PRICING_FILE` in LiteLLM's `model_prices_and_context_window.json`
//! format, whose entries override built-in ones of the same name. A model is found by
//! its normalised name (lower case; provider paths such as `openai/`, Bedrock vendor
//! and region prefixes such as `us.anthropic.` stripped) and then by the longest known
//! prefix that ends at a `-`, `@` or `:` boundary, so `gpt-4o-mini-2024-07-18` costs
//! what `gpt-4o-mini` costs but `gpt-4.5-preview` is not mistaken for `gpt-4`. A model
//! with no price is flagged `unpriced`, never treated as free.
//!
//! Money is exact integer arithmetic: prices are kept in micro-USD per 1M tokens, so
//! `tokens × price` is pico-USD, and a record's cost is stored rounded to nano-USD.

mod builtin;

use std::collections::HashMap;
use std::path::Path;

/// A model's prices in micro-USD per 1M tokens (= pico-USD per token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: i64,
    /// Completion tokens (reasoning included).
    pub output: i64,
    /// Prompt tokens served from the provider's cache.
    pub cached_input: i64,
}

/// What one request cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    /// Billionths of a US dollar (0 when `unpriced`).
    pub nano_usd: i64,
    /// The model has no price: the cost is unknown, not zero.
    pub unpriced: bool,
}

/// Token counts as the filter normalises them: `input` includes `cached`, `output`
/// includes reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounts {
    /// All prompt tokens.
    pub input: i64,
    /// All completion tokens.
    pub output: i64,
    /// Prompt tokens read from cache (part of `input`).
    pub cached: i64,
}

/// Why `PRICING_FILE` could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PricingFileError(String);

/// Model name → price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceCatalog {
    prices: HashMap<String, Price>,
}

impl Default for PriceCatalog {
    fn default() -> Self {
        Self::builtin()
    }
}

/// USD per 1M tokens → micro-USD per 1M tokens.
fn micro_usd(usd_per_million: f64) -> i64 {
    // Prices are small positive numbers; the cast cannot overflow.
    #[allow(clippy::cast_possible_truncation)]
    let micro = (usd_per_million * 1e6).round() as i64;
    micro.max(0)
}

impl PriceCatalog {
    /// The built-in list only.
    pub fn builtin() -> Self {
        let prices = builtin::PRICES
            .iter()
            .map(|&(name, input, output, cached)| {
                let price = Price {
                    input: micro_usd(input),
                    output: micro_usd(output),
                    cached_input: micro_usd(cached.unwrap_or(input)),
                };
                (name.to_owned(), price)
            })
            .collect();
        Self { prices }
    }

    /// The built-in list overridden by `path` (LiteLLM format), or the built-in list
    /// when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, PricingFileError> {
        let mut catalog = Self::builtin();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| PricingFileError(format!("cannot read {}: {e}", path.display())))?;
            catalog.merge_litellm(&text)?;
        }
        Ok(catalog)
    }

    /// Adds the entries of a LiteLLM price file. Entries without a numeric
    /// `input_cost_per_token` (image, audio or per-request pricing, the `sample_spec`
    /// documentation entry) are skipped; other fields are ignored.
    pub fn merge_litellm(&mut self, json: &str) -> Result<usize, PricingFileError> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| PricingFileError(format!("not valid JSON: {e}")))?;
        let serde_json::Value::Object(models) = value else {
            return Err(PricingFileError(
                "expected a JSON object of {\"model\": {\"input_cost_per_token\": …}}".into(),
            ));
        };
        let mut added = 0;
        for (model, entry) in models {
            let number = |field: &str| entry.get(field).and_then(serde_json::Value::as_f64);
            let Some(input) = number("input_cost_per_token") else {
                continue;
            };
            let output = number("output_cost_per_token").unwrap_or(0.0);
            let cached = number("cache_read_input_token_cost").unwrap_or(input);
            for (field, v) in [
                ("input_cost_per_token", input),
                ("output_cost_per_token", output),
                ("cache_read_input_token_cost", cached),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(PricingFileError(format!(
                        "{model:?}: {field} must be a non-negative number"
                    )));
                }
            }
            // Per token → per 1M tokens.
            let price = Price {
                input: micro_usd(input * 1e6),
                output: micro_usd(output * 1e6),
                cached_input: micro_usd(cached * 1e6),
            };
            self.prices.insert(normalize(&model), price);
            added += 1;
        }
        Ok(added)
    }

    /// The price of `model`, by normalised name, then by longest prefix.
    pub fn price(&self, model: &str) -> Option<Price> {
        let name = normalize(model);
        if let Some(price) = self.prices.get(&name) {
            return Some(*price);
        }
        // Longest prefix first: cut at every boundary from the right.
        let mut end = name.len();
        while let Some(cut) = name[..end].rfind(['-', '@', ':']) {
            if let Some(price) = self.prices.get(&name[..cut]) {
                return Some(*price);
            }
            end = cut;
        }
        None
    }

    /// What a request of `model` with these tokens cost.
    pub fn cost(&self, model: &str, tokens: TokenCounts) -> Cost {
        Self::cost_at(self.price(model), tokens)
    }

    /// What a request cost at `price` (`None`: the model has no price).
    pub fn cost_at(price: Option<Price>, tokens: TokenCounts) -> Cost {
        let Some(price) = price else {
            return Cost {
                nano_usd: 0,
                unpriced: true,
            };
        };
        let cached = tokens.cached.clamp(0, tokens.input.max(0));
        let uncached = tokens.input.max(0) - cached;
        let pico = i128::from(uncached) * i128::from(price.input)
            + i128::from(cached) * i128::from(price.cached_input)
            + i128::from(tokens.output.max(0)) * i128::from(price.output);
        // Round half up to nano-USD.
        let nano = (pico + 500) / 1000;
        Cost {
            nano_usd: i64::try_from(nano).unwrap_or(i64::MAX),
            unpriced: false,
        }
    }

    /// Number of known models.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether no model is known.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

/// Bedrock vendor prefixes (`anthropic.claude-…`) and cross-region inference profile
/// prefixes (`us.anthropic.claude-…`).
const BEDROCK_VENDORS: &[&str] = &[
    "anthropic.",
    "amazon.",
    "meta.",
    "mistral.",
    "cohere.",
    "ai21.",
    "deepseek.",
    "openai.",
];
const BEDROCK_REGIONS: &[&str] = &["us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au."];

/// Lower case, without provider paths (`openai/gpt-4o`, `models/gemini-2.5-pro`) and
/// without Bedrock region and vendor prefixes.
fn normalize(model: &str) -> String {
    let lower = model.trim().to_ascii_lowercase();
    let mut name = lower.rsplit('/').next().unwrap_or(&lower);
    for region in BEDROCK_REGIONS {
        if let Some(rest) = name.strip_prefix(region) {
            if BEDROCK_VENDORS.iter().any(|v| rest.starts_with(v)) {
                name = rest;
            }
            break;
        }
    }
    for vendor in BEDROCK_VENDORS {
        if let Some(rest) = name.strip_prefix(vendor) {
            name = rest;
            break;
        }
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: i64, output: i64, cached: i64) -> TokenCounts {
        TokenCounts {
            input,
            output,
            cached,
        }
    }

    #[test]
    fn dated_and_prefixed_names_find_their_model() {
        let c = PriceCatalog::builtin();
        let mini = c.price("gpt-4o-mini").unwrap();
        assert_eq!(
            mini,
            Price {
                input: 150_000,
                output: 600_000,
                cached_input: 75_000
            }
        );
        assert_eq!(c.price("gpt-4o-mini-2024-07-18"), Some(mini));
        assert_eq!(c.price("openai/GPT-4o-mini"), Some(mini));
        assert_eq!(c.price("gpt-4o-2024-08-06"), c.price("gpt-4o"));
        assert_eq!(c.price("gpt-4o-2024-05-13").unwrap().input, 5_000_000);
        assert_eq!(c.price("gpt-4.1-mini-2025-04-14").unwrap().input, 400_000);
        assert_eq!(c.price("gpt-4-0613").unwrap().input, 30_000_000);
        assert_eq!(c.price("gpt-4.5-preview"), None);
        assert_eq!(c.price("o4-mini-2025-04-16").unwrap().cached_input, 275_000);
        assert_eq!(
            c.price("claude-sonnet-4-5-20250929").unwrap().output,
            15_000_000
        );
        assert_eq!(
            c.price("claude-opus-4-1-20250805").unwrap().input,
            15_000_000
        );
        assert_eq!(c.price("claude-3-5-haiku-latest").unwrap().input, 800_000);
        let haiku3 = c.price("claude-3-haiku").unwrap();
        assert_eq!(
            c.price("anthropic.claude-3-haiku-20240307-v1:0"),
            Some(haiku3)
        );
        assert_eq!(
            c.price("us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
            c.price("claude-3-5-sonnet")
        );
        assert_eq!(
            c.price("claude-3-5-sonnet@20240620"),
            c.price("claude-3-5-sonnet")
        );
        assert_eq!(
            c.price("models/gemini-2.5-flash").unwrap().output,
            2_500_000
        );
        assert_eq!(c.price("gemini-1.5-pro-002").unwrap().input, 1_250_000);
        assert_eq!(c.price("text-embedding-3-small").unwrap().output, 0);
        assert_eq!(c.price("llama3:8b"), None);
        assert_eq!(c.price(""), None);
    }

    #[test]
    fn cost_is_exact() {
        let c = PriceCatalog::builtin();
        // 1000 × $0.15/M + 500 × $0.60/M = $0.00045.
        assert_eq!(
            c.cost("gpt-4o-mini", tokens(1000, 500, 0)),
            Cost {
                nano_usd: 450_000,
                unpriced: false
            }
        );
        // 12 input tokens: 1.8 µ$.
        assert_eq!(c.cost("gpt-4o-mini", tokens(12, 0, 0)).nano_usd, 1_800);
        // Cached tokens at the cached price: 976 × 0.15 + 24 × 0.075 … per M.
        assert_eq!(
            c.cost("gpt-4o-mini", tokens(1000, 0, 24)).nano_usd,
            (976 * 150_000 + 24 * 75_000 + 500) / 1000
        );
        // 1 token of text-embedding-3-small: $0.02/M = 20 n$.
        assert_eq!(
            c.cost("text-embedding-3-small", tokens(1, 0, 0)).nano_usd,
            20
        );
        // Fractions of a nano-USD round half up: $0.0375/M is 37.5 n$ per token.
        assert_eq!(c.cost("gemini-1.5-flash-8b", tokens(1, 0, 0)).nano_usd, 38);
        assert_eq!(c.cost("gemini-1.5-flash-8b", tokens(2, 0, 0)).nano_usd, 75);
        assert_eq!(
            c.cost("my-finetune", tokens(10, 10, 0)),
            Cost {
                nano_usd: 0,
                unpriced: true
            }
        );
    }

    #[test]
    fn litellm_file_overrides_and_extends() {
        let mut c = PriceCatalog::builtin();
        let added = c
            .merge_litellm(
                r#"{
                "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0},
                "gpt-4o-mini": {"input_cost_per_token": 1e-7, "output_cost_per_token": 4e-7, "cache_read_input_token_cost": 5e-8, "litellm_provider": "openai", "mode": "chat"},
                "bedrock/us.meta.llama3-1-70b-instruct-v1:0": {"input_cost_per_token": 9.9e-7, "output_cost_per_token": 9.9e-7},
                "dall-e-3": {"output_cost_per_image": 0.04},
                "ollama/llama3": {"input_cost_per_token": 0, "output_cost_per_token": 0}
            }"#,
            )
            .unwrap();
        assert_eq!(added, 4);
        assert_eq!(
            c.price("gpt-4o-mini-2024-07-18"),
            Some(Price {
                input: 100_000,
                output: 400_000,
                cached_input: 50_000
            })
        );
        assert_eq!(
            c.price("us.meta.llama3-1-70b-instruct-v1:0").unwrap().input,
            990_000
        );
        // Explicitly free is priced (cost 0), unlike unknown.
        assert!(!c.cost("llama3", tokens(5, 5, 0)).unpriced);
        assert_eq!(c.price("dall-e-3"), None);
        assert_eq!(c.price("gpt-4o").unwrap().input, 2_500_000);

        for bad in [
            "not json",
            "[1,2]",
            r#"{"m": {"input_cost_per_token": -1}}"#,
        ] {
            assert!(PriceCatalog::builtin().merge_litellm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_reports_unreadable_files() {
        let err = PriceCatalog::load(Some(Path::new("/nonexistent/prices.json"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/prices.json"));
        assert_eq!(PriceCatalog::load(None).unwrap(), PriceCatalog::builtin());
    }
}
