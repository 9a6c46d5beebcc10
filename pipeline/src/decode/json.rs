//! The McAuley JSON-lines layouts, mapped onto the canonical columns. The layout is told per line by its keys, so
//! files of any vintage (and mixtures) read the same way:
//! - 2014: `overall`, `reviewText`, `summary`, `helpful: [helpful, total]`, `unixReviewTime`;
//! - 2018: `overall`, `reviewText`, `summary`, `vote` (a string such as "1,234", absent when zero), `verified`;
//! - 2023: `rating`, `title`, `text`, `helpful_vote`, `timestamp` (milliseconds), `verified_purchase`.
//!
//! McAuley rows have no review_id; it is made from reviewer, product and time, which identify a review there.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::LineReader;
use crate::Result;
use crate::batch::Review;
use crate::dump::{Malformed, iso_date};

pub fn read(lines: &mut LineReader<'_, '_>) -> Result<()> {
    let category = lines
        .input
        .partition_values
        .iter()
        .find(|(k, _)| k == "product_category")
        .map(|(_, v)| v.clone())
        .or_else(|| lines.input.category_from_name());
    lines.for_each_line(|state, line, _tabs, line_no| {
        if line.iter().all(u8::is_ascii_whitespace) {
            // Blank lines are not rows in JSON lines (a trailing newline, or a blank line between records).
            return;
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return state.malformed(Malformed::InvalidUtf8, line, line_no);
        };
        let Ok(row) = serde_json::from_str::<JsonReview<'_>>(text) else {
            return state.malformed(Malformed::FieldCount, line, line_no);
        };
        match row.to_fields() {
            Ok(fields) => {
                let mut review = Review {
                    star_rating: fields.star_rating,
                    helpful_votes: Some(fields.helpful_votes),
                    total_votes: fields.total_votes,
                    ..Default::default()
                };
                review.text[1] = row.reviewer();
                review.text[2] = Some(&fields.review_id);
                review.text[3] = row.asin.as_deref();
                review.text[4] = row.parent_asin.as_deref();
                review.text[6] = category.as_deref();
                review.text[11] = fields.verified;
                review.text[12] = Some(row.headline());
                review.text[13] = Some(row.body());
                review.text[14] = fields.date.as_deref();
                state.push(review, line_no);
            }
            Err(reason) => state.malformed(reason, line, line_no),
        }
    })?;
    lines.finish()
}

/// Every key of the three layouts; unknown keys (style, image, reviewerName) are ignored.
#[derive(Deserialize)]
struct JsonReview<'a> {
    // 2014 and 2018
    overall: Option<Value>,
    #[serde(rename = "reviewText", borrow)]
    review_text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    summary: Option<Cow<'a, str>>,
    helpful: Option<Value>,
    vote: Option<Value>,
    verified: Option<bool>,
    #[serde(rename = "reviewerID", borrow)]
    reviewer_id: Option<Cow<'a, str>>,
    #[serde(rename = "unixReviewTime")]
    unix_review_time: Option<i64>,
    // 2023
    rating: Option<Value>,
    #[serde(borrow)]
    title: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    helpful_vote: Option<Value>,
    verified_purchase: Option<bool>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    timestamp: Option<i64>,
    #[serde(borrow)]
    parent_asin: Option<Cow<'a, str>>,
    // all
    #[serde(borrow)]
    asin: Option<Cow<'a, str>>,
}

/// The values of a JSON row that need work to become canonical.
#[derive(Debug)]
struct Fields {
    star_rating: i32,
    helpful_votes: i32,
    total_votes: Option<i32>,
    review_id: String,
    verified: Option<&'static str>,
    date: Option<String>,
}

impl<'a> JsonReview<'a> {
    fn is_2023(&self) -> bool {
        self.rating.is_some() || self.helpful_vote.is_some() || self.text.is_some()
    }

    fn reviewer(&self) -> Option<&str> {
        self.reviewer_id.as_deref().or(self.user_id.as_deref())
    }

    fn headline(&self) -> &str {
        self.summary.as_deref().or(self.title.as_deref()).unwrap_or_default()
    }

    fn body(&self) -> &str {
        self.review_text.as_deref().or(self.text.as_deref()).unwrap_or_default()
    }

    fn to_fields(&self) -> std::result::Result<Fields, Malformed> {
        let rating = if self.is_2023() { &self.rating } else { &self.overall };
        // A row without a rating is missing a field, like a short TSV line.
        let rating = rating.as_ref().ok_or(Malformed::FieldCount)?;
        let star_rating = match rating.as_f64() {
            Some(r) if r.fract() != 0.0 => return Err(Malformed::StarRatingNotNumeric),
            Some(r) if (1.0..=5.0).contains(&r) => r as i32,
            Some(_) => return Err(Malformed::StarRatingOutOfRange),
            None => return Err(Malformed::StarRatingNotNumeric),
        };
        let (helpful_votes, total_votes) = if self.is_2023() {
            (votes(self.helpful_vote.as_ref())?, None)
        } else if let Some(helpful) = &self.helpful {
            match helpful.as_array().map(Vec::as_slice) {
                Some([helpful, total]) => (votes(Some(helpful))?, Some(votes(Some(total))?)),
                _ => return Err(Malformed::VotesNotNumeric),
            }
        } else {
            (votes(self.vote.as_ref())?, None)
        };
        let seconds = self.unix_review_time.or(self.timestamp.map(|ms| ms.div_euclid(1000)));
        let date = seconds.and_then(|s| i32::try_from(s.div_euclid(86_400)).ok()).map(iso_date);
        let review_id = format!(
            "{}:{}:{}",
            self.reviewer().unwrap_or_default(),
            self.asin.as_deref().unwrap_or_default(),
            seconds.map_or_else(String::new, |s| s.to_string())
        );
        let verified = self.verified.or(self.verified_purchase).map(|v| if v { "Y" } else { "N" });
        Ok(Fields { star_rating, helpful_votes, total_votes, review_id, verified, date })
    }
}

/// A vote count: absent means none (2018 leaves the key out), else a non-negative integer or a string of one with
/// thousands separators ("1,234").
fn votes(value: Option<&Value>) -> std::result::Result<i32, Malformed> {
    let parsed = match value {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.replace(',', "").trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    parsed.and_then(|v| i32::try_from(v).ok()).ok_or(Malformed::VotesNotNumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(line: &str) -> std::result::Result<Fields, Malformed> {
        serde_json::from_str::<JsonReview<'_>>(line).unwrap().to_fields()
    }

    #[test]
    fn maps_each_layout() {
        let y2014 = r#"{"reviewerID": "A2", "asin": "B1", "helpful": [13, 14], "reviewText": "Fine", "overall": 4.0,
            "summary": "Ok", "unixReviewTime": 1393545600, "reviewTime": "02 28, 2014"}"#;
        let f = fields(y2014).unwrap();
        assert_eq!((f.star_rating, f.helpful_votes, f.total_votes), (4, 13, Some(14)));
        assert_eq!(f.date.as_deref(), Some("2014-02-28"));
        assert_eq!(f.review_id, "A2:B1:1393545600");

        let y2018 = r#"{"overall": 5.0, "verified": true, "reviewerID": "A3", "asin": "B0",
            "reviewText": "As advertised.", "summary": "Five Stars", "unixReviewTime": 1472688000, "vote": "1,234"}"#;
        let f = fields(y2018).unwrap();
        assert_eq!((f.star_rating, f.helpful_votes, f.total_votes, f.verified), (5, 1234, None, Some("Y")));
        let no_vote = r#"{"overall": 2.0, "reviewText": "x", "summary": "y"}"#;
        assert_eq!(fields(no_vote).unwrap().helpful_votes, 0);

        let y2023 = r#"{"rating": 3.0, "title": "Meh", "text": "It is ok", "images": [], "asin": "B1",
            "parent_asin": "B2", "user_id": "U", "timestamp": 1588687728923, "helpful_vote": 2, "verified_purchase": false}"#;
        let row = serde_json::from_str::<JsonReview<'_>>(y2023).unwrap();
        let f = row.to_fields().unwrap();
        assert_eq!((f.star_rating, f.helpful_votes, f.verified), (3, 2, Some("N")));
        assert_eq!((row.headline(), row.body()), ("Meh", "It is ok"));
        assert_eq!(f.date.as_deref(), Some("2020-05-05"));
    }

    #[test]
    fn names_each_fault() {
        assert_eq!(fields(r#"{"overall": "five"}"#).unwrap_err(), Malformed::StarRatingNotNumeric);
        assert_eq!(fields(r#"{"rating": 6.0}"#).unwrap_err(), Malformed::StarRatingOutOfRange);
        assert_eq!(fields(r#"{"rating": 0.0}"#).unwrap_err(), Malformed::StarRatingOutOfRange);
        assert_eq!(fields(r#"{"rating": 3.0, "helpful_vote": "lots"}"#).unwrap_err(), Malformed::VotesNotNumeric);
        assert_eq!(fields(r#"{"overall": 3.0, "helpful": ["NaN", 1]}"#).unwrap_err(), Malformed::VotesNotNumeric);
        assert_eq!(fields(r#"{"summary": "no rating"}"#).unwrap_err(), Malformed::FieldCount);
    }
}
