//! `revgen synth`: a realistic synthetic Amazon Customer Reviews dump.
//!
//! It reproduces the published statistics of the Electronics file ([`profile`]) and the dump's textual quirks
//! ([`text`]), and it can plant malformed rows at a given rate. Output is streamed row by row, so 10M rows take
//! constant memory, and the same seed gives the same bytes. It is the fixture maker for every test.

mod profile;
mod text;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use self::profile::{HELPFUL_OVERALL, MEAN_CHARS_ALL, MEAN_CHARS_HELPFUL, STAR_COUNTS};
use self::text::{Product, Quirks};
use crate::dump::{Format, JsonLayout, Malformed};
use crate::{Error, Result};

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    /// Data rows to write, malformed ones included.
    pub rows: u64,
    pub seed: u64,
    /// Share of rows, in 0..=1, written malformed.
    pub malformed_rate: f64,
    /// product_category values; each product belongs to one of them.
    pub categories: Vec<String>,
    /// Layout of `.jsonl` output.
    pub json_layout: JsonLayout,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            rows: 10_000,
            seed: 0,
            malformed_rate: 0.0,
            categories: vec!["Electronics".to_owned()],
            json_layout: JsonLayout::default(),
        }
    }
}

impl SynthConfig {
    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.malformed_rate) {
            return Err(Error::InvalidSetting {
                name: "--malformed-rate",
                reason: format!("{} is not in 0..=1", self.malformed_rate),
            });
        }
        if self.categories.is_empty() || self.categories.iter().any(|c| c.is_empty() || c.contains(['\t', '\n'])) {
            return Err(Error::InvalidSetting {
                name: "--categories",
                reason: "give one or more non-empty names without tabs or newlines".to_owned(),
            });
        }
        Ok(())
    }
}

/// One synthetic review, with typed fields. Writers render it in their format.
#[derive(Clone, Debug)]
pub struct Review {
    pub customer_id: u64,
    pub review_id: String,
    pub product_id: String,
    pub product_parent: u64,
    pub product_title: String,
    pub product_category: String,
    pub star_rating: u8,
    pub helpful_votes: u32,
    pub total_votes: u32,
    pub vine: bool,
    pub verified_purchase: bool,
    pub review_headline: String,
    pub review_body: String,
    /// Days since 1970-01-01.
    pub review_date: i32,
    /// Seconds into the review day, for the JSON layouts' timestamps.
    pub second_of_day: u32,
}

/// A generated row: a review, and how to spoil it when it is one of the malformed rows.
#[derive(Clone, Debug)]
pub struct Row {
    pub review: Review,
    pub malformed: Option<Malformed>,
    /// A free draw for the writer, so the spoiled value varies without touching the review stream.
    pub variant: u32,
}

/// What `synth` wrote, as printed by `revgen synth` (JSON).
#[derive(Clone, Debug, Serialize)]
pub struct SynthSummary {
    pub path: PathBuf,
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_layout: Option<JsonLayout>,
    pub seed: u64,
    pub rows: u64,
    pub valid: u64,
    pub malformed: u64,
    pub malformed_by_reason: BTreeMap<Malformed, u64>,
    /// Valid reviews per star rating.
    pub reviews_per_rating: BTreeMap<u8, u64>,
    /// Valid reviews with helpful_votes >= 1.
    pub helpful: u64,
    /// Mean review_body length in characters per rating, valid reviews.
    pub mean_body_chars: BTreeMap<u8, f64>,
    /// The same for valid reviews with helpful_votes >= 1.
    pub mean_body_chars_helpful: BTreeMap<u8, f64>,
    pub bytes: u64,
}

/// Writes a synthetic dump to `out`, in the format its name says, atomically: the file appears complete or not
/// at all.
pub fn write_dump(config: &SynthConfig, out: &Path) -> Result<SynthSummary> {
    config.validate()?;
    let format = Format::from_path(out)?;
    let mut tally = Tally::default();
    let rows = Generator::new(config.clone(), format).inspect(|row| tally.add(row));
    let bytes = writer::write_atomically(out, format, config.json_layout, rows)?;
    Ok(tally.into_summary(config, out, format, bytes))
}

/// Streams rows. Every random choice comes from one ChaCha8 stream seeded by `--seed`, except the product
/// catalogue, which is derived per product from the seed and the product index.
pub struct Generator {
    config: SynthConfig,
    format: Format,
    rng: ChaCha8Rng,
    emitted: u64,
    deck: Deck,
    products: u64,
    /// Per (rating, helpful) bucket: how many lengths it has drawn, and its sequence offset.
    length_draws: [[(u64, f64); 2]; 5],
}

/// Deals (rating, helpful) pairs in shuffled blocks whose make-up follows the target mix exactly, by cumulative
/// rounding. Independent draws would leave a 100k-row dump's two-star share ±1.3% off target; dealt blocks keep every
/// prefix of the dump on target while the order within a block stays random.
#[derive(Default)]
struct Deck {
    cards: Vec<(u8, bool)>,
    /// Cards dealt into blocks so far, in all and per rating.
    dealt: u64,
    per_rating: [u64; 5],
}

impl Deck {
    const BLOCK: u64 = 1000;

    fn deal(&mut self, rng: &mut ChaCha8Rng, rows: u64) -> (u8, bool) {
        if self.cards.is_empty() {
            self.refill(rows);
            self.cards.shuffle(rng);
        }
        self.cards.pop().expect("refill adds at least one card")
    }

    /// Adds the next block: each rating gets its shortfall against `dealt * share` (largest shortfalls take the
    /// odd cards), and within a rating the helpful cards follow the rounded cumulative helpful share.
    fn refill(&mut self, rows: u64) {
        let end = (self.dealt + Self::BLOCK).min(rows).max(self.dealt + 1);
        let block = end - self.dealt;
        let total: u64 = profile::STAR_COUNTS.iter().sum();
        let shortfall: [f64; 5] = std::array::from_fn(|r| {
            let share = profile::STAR_COUNTS[r] as f64 / total as f64;
            (end as f64 * share - self.per_rating[r] as f64).max(0.0)
        });
        let mut counts = shortfall.map(|s| s.floor() as u64);
        while counts.iter().sum::<u64>() != block {
            let short = counts.iter().sum::<u64>() < block;
            let gap = |r: &usize| shortfall[*r] - counts[*r] as f64;
            let pick = if short {
                (0..5).max_by(|a, b| gap(a).total_cmp(&gap(b)))
            } else {
                (0..5).filter(|&r| counts[r] > 0).min_by(|a, b| gap(a).total_cmp(&gap(b)))
            };
            let r = pick.expect("five ratings");
            if short { counts[r] += 1 } else { counts[r] -= 1 }
        }
        let rounded = |n: u64, share: f64| (n as f64 * share).round() as u64;
        for (rating, count) in counts.into_iter().enumerate() {
            let share = profile::HELPFUL_SHARE[rating];
            let before = self.per_rating[rating];
            let helpful = rounded(before + count, share) - rounded(before, share);
            self.per_rating[rating] += count;
            let star = rating as u8 + 1;
            self.cards.extend((0..count).map(|i| (star, i < helpful)));
        }
        self.dealt = end;
    }
}

/// Golden-ratio step of the low-discrepancy sequence that picks body-length quantiles.
const GOLDEN: f64 = 0.618_033_988_749_894_9;

impl Generator {
    pub fn new(config: SynthConfig, format: Format) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let length_draws = std::array::from_fn(|_| std::array::from_fn(|_| (0, rng.random::<f64>())));
        let products = (config.rows / 25).max(100);
        Generator { config, format, rng, emitted: 0, deck: Deck::default(), products, length_draws }
    }

    fn catalogue_entry(&self, index: u64) -> (Product, &str) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let category = &self.config.categories[(index % self.config.categories.len() as u64) as usize];
        (Product::draw(&mut rng), category)
    }

    /// The body length for a review in this bucket. Lengths follow a log-normal, but the quantiles come from a
    /// golden-ratio sequence per bucket rather than independent draws, so even a small dump's per-rating means sit
    /// within a percent of the targets; the rows are still shuffled by the rating and helpful draws.
    fn body_length(&mut self, rating: u8, helpful: bool) -> usize {
        let (n, offset) = &mut self.length_draws[rating as usize - 1][usize::from(helpful)];
        let u = (*offset + *n as f64 * GOLDEN).fract();
        *n += 1;
        profile::length_at_quantile(profile::mean_chars(rating as usize - 1, helpful), u)
    }

    fn review(&mut self) -> Review {
        let (star_rating, helpful) = self.deck.deal(&mut self.rng, self.config.rows);
        let (helpful_votes, total_votes) = self.votes(helpful);
        // Popular products get most reviews: a skewed pick from the catalogue.
        let index = (self.products as f64 * self.rng.random::<f64>().powi(2)) as u64;
        let (product, category) = self.catalogue_entry(index);
        let category = category.to_owned();
        let quirks = Quirks::draw(&mut self.rng);
        let len = self.body_length(star_rating, helpful);
        let review_headline = text::headline(&mut self.rng, star_rating, product.noun, quirks);
        let review_body = text::body(&mut self.rng, star_rating, len, product.noun, quirks);
        // Mostly recent reviews, like the dump: 2000-01-01 ..= 2015-08-31, skewed towards the end.
        let (first, last) = (10_957, 16_678);
        let review_date = last - ((last - first) as f64 * self.rng.random::<f64>().powi(3)) as i32;
        Review {
            customer_id: self.rng.random_range(10_000..53_096_600),
            // Real review ids are R + 13 characters, a quarter of them R + 12.
            review_id: {
                let len = if self.rng.random_bool(0.75) { 13 } else { 12 };
                format!("R{}", text::code(&mut self.rng, len))
            },
            product_id: product.id,
            product_parent: product.parent,
            product_title: product.title,
            product_category: category,
            star_rating,
            helpful_votes,
            total_votes,
            vine: self.rng.random_bool(0.005),
            verified_purchase: self.rng.random_bool(0.85),
            review_headline,
            review_body,
            review_date,
            second_of_day: self.rng.random_range(0..86_400),
        }
    }

    fn votes(&mut self, helpful: bool) -> (u32, u32) {
        let exp = |rng: &mut ChaCha8Rng, mean: f64| (-(1.0 - rng.random::<f64>()).ln() * mean) as u32;
        if helpful {
            // A long tail: a few reviews collect hundreds of votes.
            let mean = if self.rng.random_bool(0.03) { 60.0 } else { 3.0 };
            let helpful_votes = 1 + exp(&mut self.rng, mean);
            (helpful_votes, helpful_votes + exp(&mut self.rng, 1.0))
        } else if self.rng.random_bool(0.1) {
            (0, 1 + exp(&mut self.rng, 1.0))
        } else {
            (0, 0)
        }
    }

    fn malformation(&mut self) -> Option<Malformed> {
        if !self.rng.random_bool(self.config.malformed_rate) {
            return None;
        }
        // A typed Parquet column cannot hold a wrong field count; the other reasons have typed forms.
        let reasons: &[Malformed] =
            if self.format == Format::Parquet { &Malformed::PLANTED[1..] } else { &Malformed::PLANTED };
        Some(reasons[self.rng.random_range(0..reasons.len())])
    }
}

impl Iterator for Generator {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        if self.emitted == self.config.rows {
            return None;
        }
        self.emitted += 1;
        let review = self.review();
        let malformed = self.malformation();
        Some(Row { review, malformed, variant: self.rng.random() })
    }
}

fn mean((count, total): (u64, u64)) -> f64 {
    if count == 0 { 0.0 } else { total as f64 / count as f64 }
}

/// Running totals for the summary.
#[derive(Default)]
struct Tally {
    rows: u64,
    malformed: BTreeMap<Malformed, u64>,
    /// Per rating: [all, helpful] × (reviews, body chars).
    per_rating: [[(u64, u64); 2]; 5],
}

impl Tally {
    fn add(&mut self, row: &Row) {
        self.rows += 1;
        if let Some(reason) = row.malformed {
            *self.malformed.entry(reason).or_default() += 1;
            return;
        }
        let r = &row.review;
        let chars = r.review_body.chars().count() as u64;
        let bucket = &mut self.per_rating[r.star_rating as usize - 1];
        for (count, total) in &mut bucket[..1 + usize::from(r.helpful_votes >= 1)] {
            *count += 1;
            *total += chars;
        }
    }

    fn into_summary(self, config: &SynthConfig, out: &Path, format: Format, bytes: u64) -> SynthSummary {
        let malformed: u64 = self.malformed.values().sum();
        let per_rating = |pick: fn(&[(u64, u64); 2]) -> f64| {
            (1..=5u8).zip(&self.per_rating).map(|(rating, b)| (rating, pick(b))).collect::<BTreeMap<_, _>>()
        };
        SynthSummary {
            path: out.to_owned(),
            format,
            json_layout: (format == Format::JsonLines).then_some(config.json_layout),
            seed: config.seed,
            rows: self.rows,
            valid: self.rows - malformed,
            malformed,
            malformed_by_reason: self.malformed,
            reviews_per_rating: (1..=5u8).zip(&self.per_rating).map(|(rating, b)| (rating, b[0].0)).collect(),
            helpful: self.per_rating.iter().map(|b| b[1].0).sum(),
            mean_body_chars: per_rating(|b| mean(b[0])),
            mean_body_chars_helpful: per_rating(|b| mean(b[1])),
            bytes,
        }
    }
}
