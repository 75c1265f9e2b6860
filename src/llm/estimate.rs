//! The worst case of a request for budgets: its prompt tokens bounded from
//! its size, plus its output cap, priced with the profile's `price`.
//!
//! Why no tokenizer: the pipeline's models (Claude and Llama through
//! OpenRouter, or whatever a profile names) have no well-kept Rust
//! tokenizer of their own — `tiktoken-rs` covers OpenAI's encodings only and
//! embeds megabytes of rank tables, and Hugging Face's `tokenizers` pulls in
//! C dependencies and needs a downloaded `tokenizer.json` per model. A
//! bytes-per-token bound costs nothing and never needs the network.
//!
//! The bound: the serialized request (system and user text, the output
//! schema, JSON escaping and keys, the model name) in bytes over
//! [`BYTES_PER_TOKEN`] (rounded up) plus [`REQUEST_OVERHEAD_TOKENS`] for the
//! chat template. Tokenizers average about 4 characters per token for
//! English prose (GPT and Llama 3), about 3.5 for Claude's, and fewer for
//! code, LaTeX and the debris of PDF extraction; bytes are never fewer than
//! characters and the JSON around the text adds more. Three bytes per token
//! stays above the reported counts of every prompt the pipeline sends; it is
//! not a bound for adversarial text (long runs of digits or CJK can reach
//! one token per 1–2 bytes), which is why the ledger settles every call at
//! the provider's reported usage and the call-time check uses the real
//! request rather than the claim-time estimate.
//!
//! The output part is the request's `max_tokens`; a profile without one is
//! assumed to write at most [`ASSUMED_OUTPUT_TOKENS`] (providers' default
//! caps are of that order; set `max_tokens` for an exact bound).

use super::price::Price;
use crate::store::CallWorst;

/// Bytes of serialized request counted as one token in a worst case.
pub const BYTES_PER_TOKEN: u64 = 3;
/// Tokens added per request for the chat template (role markers, turns).
pub const REQUEST_OVERHEAD_TOKENS: u64 = 16;
/// Output tokens assumed for a profile without `max_tokens`.
pub const ASSUMED_OUTPUT_TOKENS: u64 = 4096;

/// The most prompt tokens a request of `bytes` serialized bytes is taken
/// to use.
pub fn prompt_tokens_bound(bytes: u64) -> u64 {
    bytes
        .div_ceil(BYTES_PER_TOKEN)
        .saturating_add(REQUEST_OVERHEAD_TOKENS)
}

/// The output tokens a request may be billed for.
pub fn output_tokens_bound(max_tokens: Option<u64>) -> u64 {
    max_tokens.unwrap_or(ASSUMED_OUTPUT_TOKENS)
}

/// The worst case of one request: `prompt_tokens` in, `output_tokens` out,
/// at `price` (None: no price, the money is unbounded).
pub fn worst(prompt_tokens: u64, output_tokens: u64, price: Option<&Price>) -> CallWorst {
    CallWorst {
        tokens: prompt_tokens.saturating_add(output_tokens),
        usd: price.map(|p| p.cost(prompt_tokens, output_tokens)),
    }
}

/// The worst case of a request whose serialized body is `body_bytes` long.
pub fn request_worst(body_bytes: u64, max_tokens: Option<u64>, price: Option<&Price>) -> CallWorst {
    worst(
        prompt_tokens_bound(body_bytes),
        output_tokens_bound(max_tokens),
        price,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price() -> Price {
        Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            currency: "USD".into(),
        }
    }

    #[test]
    fn the_bound_is_bytes_over_three_plus_overhead_and_the_output_cap() {
        assert_eq!(prompt_tokens_bound(0), REQUEST_OVERHEAD_TOKENS);
        assert_eq!(prompt_tokens_bound(3), 1 + REQUEST_OVERHEAD_TOKENS);
        assert_eq!(prompt_tokens_bound(4), 2 + REQUEST_OVERHEAD_TOKENS);
        let w = request_worst(2984, Some(1000), Some(&price()));
        // 2984 / 3 → 995 + 16 = 1011 in, 1000 out.
        assert_eq!(w.tokens, 2011);
        assert_eq!(w.usd, Some(price().cost(1011, 1000)));
        assert!((w.usd.unwrap() - (1011.0 * 3.0 + 1000.0 * 15.0) / 1e6).abs() < 1e-12);
        let unpriced = request_worst(10, None, None);
        assert_eq!(unpriced.tokens, 4 + 16 + ASSUMED_OUTPUT_TOKENS);
        assert_eq!(unpriced.usd, None);
    }

    /// Real tokenizers count fewer tokens than the bound for prose: a
    /// sample English paragraph is about 4.2 bytes per cl100k token.
    #[test]
    fn prose_stays_under_the_bound() {
        let text = "The attention mechanism lets each position weigh every other \
                    position of the sequence, so long-range dependencies need no \
                    recurrence; training parallelises across positions.";
        // ~46 cl100k tokens for these 190 bytes.
        assert!(prompt_tokens_bound(text.len() as u64) > 46);
    }
}
