//! The built-in price list: list prices in USD per 1M tokens (input, output, cached
//! input) of current models, as published by the providers at the time of writing.
//! Operators with negotiated prices, or newer models, point `PRICING_FILE` at a
//! LiteLLM price file, whose entries take precedence.

/// `(model prefix, input, output, cached input)`, USD per 1M tokens. Dated variants
/// (`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`) match by longest prefix; a
/// `None` cached price means cached tokens cost the input price.
pub const PRICES: &[(&str, f64, f64, Option<f64>)] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.00, Some(0.125)),
    ("gpt-5-mini", 0.25, 2.00, Some(0.025)),
    ("gpt-5-nano", 0.05, 0.40, Some(0.005)),
    ("gpt-4.1", 2.00, 8.00, Some(0.50)),
    ("gpt-4.1-mini", 0.40, 1.60, Some(0.10)),
    ("gpt-4.1-nano", 0.10, 0.40, Some(0.025)),
    ("gpt-4o", 2.50, 10.00, Some(1.25)),
    ("gpt-4o-2024-05-13", 5.00, 15.00, None),
    ("gpt-4o-mini", 0.15, 0.60, Some(0.075)),
    ("gpt-4-turbo", 10.00, 30.00, None),
    ("gpt-4", 30.00, 60.00, None),
    ("gpt-4-32k", 60.00, 120.00, None),
    ("gpt-3.5-turbo", 0.50, 1.50, None),
    ("o1", 15.00, 60.00, Some(7.50)),
    ("o1-mini", 1.10, 4.40, Some(0.55)),
    ("o1-pro", 150.00, 600.00, None),
    ("o3", 2.00, 8.00, Some(0.50)),
    ("o3-mini", 1.10, 4.40, Some(0.55)),
    ("o3-pro", 20.00, 80.00, None),
    ("o4-mini", 1.10, 4.40, Some(0.275)),
    ("text-embedding-3-small", 0.02, 0.0, None),
    ("text-embedding-3-large", 0.13, 0.0, None),
    ("text-embedding-ada-002", 0.10, 0.0, None),
    // Anthropic (cache reads cost a tenth of the input price)
    ("claude-3-haiku", 0.25, 1.25, Some(0.03)),
    ("claude-3-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-3-opus", 15.00, 75.00, Some(1.50)),
    ("claude-3-5-haiku", 0.80, 4.00, Some(0.08)),
    ("claude-3-5-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-3-7-sonnet", 3.00, 15.00, Some(0.30)),
    ("claude-sonnet-4", 3.00, 15.00, Some(0.30)),
    ("claude-sonnet-4-5", 3.00, 15.00, Some(0.30)),
    ("claude-opus-4", 15.00, 75.00, Some(1.50)),
    ("claude-opus-4-1", 15.00, 75.00, Some(1.50)),
    ("claude-opus-4-5", 5.00, 25.00, Some(0.50)),
    ("claude-haiku-4-5", 1.00, 5.00, Some(0.10)),
    // Google (prompts up to 128k/200k tokens)
    ("gemini-1.5-flash", 0.075, 0.30, Some(0.01875)),
    ("gemini-1.5-flash-8b", 0.0375, 0.15, Some(0.01)),
    ("gemini-1.5-pro", 1.25, 5.00, Some(0.3125)),
    ("gemini-2.0-flash", 0.10, 0.40, Some(0.025)),
    ("gemini-2.0-flash-lite", 0.075, 0.30, None),
    ("gemini-2.5-flash", 0.30, 2.50, Some(0.075)),
    ("gemini-2.5-flash-lite", 0.10, 0.40, Some(0.025)),
    ("gemini-2.5-pro", 1.25, 10.00, Some(0.31)),
];
