//! The AWS TSV format: a header line, then 15 tab-separated fields per line, with no quoting or escaping at all.
//! A `"` is an ordinary character here (real bodies start with one), which is why this is not a CSV reader.

use super::{LineReader, parse_rating, parse_votes};
use crate::batch::{HELPFUL_VOTES, Review, STAR_RATING, TOTAL_VOTES};
use crate::dump::{COLUMNS, Malformed};
use crate::{Error, Result};

pub fn read(lines: &mut LineReader<'_, '_>) -> Result<()> {
    let header = COLUMNS.join("\t");
    let url = lines.input.url.clone();
    let mut bad_header = None;
    lines.for_each_line(|state, line, line_no| {
        if line_no == 1 {
            if line != header.as_bytes() {
                bad_header = Some(String::from_utf8_lossy(line).chars().take(200).collect::<String>());
                *state.stopped = true;
            }
            return;
        }
        match parse(line) {
            Ok(review) => state.push(&review),
            Err(reason) => state.malformed(reason, line, line_no),
        }
    })?;
    if let Some(found) = bad_header {
        return Err(Error::BadHeader { url, expected: header, found });
    }
    lines.finish()
}

/// One data line as a review, or why it is malformed.
fn parse(line: &[u8]) -> std::result::Result<Review<'_>, Malformed> {
    let text = std::str::from_utf8(line).map_err(|_| Malformed::InvalidUtf8)?;
    let mut review = Review::default();
    if !split_fields(text, &mut review.text) {
        return Err(Malformed::FieldCount);
    }
    let field = |i: usize| review.text[i].unwrap_or_default();
    // Checked in this order, so a row with several faults gets one reason, the same every time: a non-numeric
    // rating, then the votes, then a rating out of range.
    let rating = parse_rating(field(STAR_RATING));
    if rating == Err(Malformed::StarRatingNotNumeric) {
        return Err(Malformed::StarRatingNotNumeric);
    }
    let helpful = parse_votes(field(HELPFUL_VOTES))?;
    let total = parse_votes(field(TOTAL_VOTES))?;
    review.star_rating = rating?;
    review.helpful_votes = Some(helpful);
    review.total_votes = Some(total);
    Ok(review)
}

/// Splits a line into exactly 15 fields; false if it has another number of them.
///
/// Hot path of every scan: memchr's vectorised search finds the first 13 tabs; the body, by far the longest field,
/// is found from the end (the date after it is short) and searched once for a stray tab. `str::split` spent 13% of
/// a stats run here.
fn split_fields<'a>(text: &'a str, fields: &mut [Option<&'a str>; COLUMNS.len()]) -> bool {
    const BODY: usize = COLUMNS.len() - 2;
    let bytes = text.as_bytes();
    let mut tabs = memchr::memchr_iter(b'\t', bytes);
    let mut start = 0;
    for field in fields.iter_mut().take(BODY) {
        let Some(tab) = tabs.next() else { return false };
        // A tab is ASCII, so every field boundary is a char boundary.
        *field = Some(&text[start..tab]);
        start = tab + 1;
    }
    let Some(last_tab) = memchr::memrchr(b'\t', &bytes[start..]).map(|at| start + at) else { return false };
    if memchr::memchr(b'\t', &bytes[start..last_tab]).is_some() {
        return false;
    }
    fields[BODY] = Some(&text[start..last_tab]);
    fields[BODY + 1] = Some(&text[last_tab + 1..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rating: &str, helpful: &str, body: &str) -> String {
        format!("US\t1\tR1\tB00\t2\tTitle\tElectronics\t{rating}\t{helpful}\t3\tN\tY\tHeadline\t{body}\t2015-08-31")
    }

    #[test]
    fn parses_valid_lines_with_quotes_kept() {
        let text = line("5", "2", "\"Great\" — it's “fine”, really");
        let review = parse(text.as_bytes()).unwrap();
        assert_eq!(review.star_rating, 5);
        assert_eq!(review.helpful_votes, Some(2));
        assert_eq!(review.total_votes, Some(3));
        assert_eq!(review.text[13], Some("\"Great\" — it's “fine”, really"));
        assert_eq!(review.text[14], Some("2015-08-31"));
        assert_eq!(review.text[0], Some("US"));
        assert_eq!(review.text[12], Some("Headline"));
        // Empty fields are fields.
        let empty = "\t".repeat(14);
        let mut fields = [None; COLUMNS.len()];
        assert!(split_fields(&empty, &mut fields));
        assert!(fields.iter().all(|f| *f == Some("")));
    }

    #[test]
    fn names_each_fault() {
        assert_eq!(parse(line("five", "1", "b").as_bytes()).unwrap_err(), Malformed::StarRatingNotNumeric);
        assert_eq!(parse(line("6", "1", "b").as_bytes()).unwrap_err(), Malformed::StarRatingOutOfRange);
        assert_eq!(parse(line("3", "NaN", "b").as_bytes()).unwrap_err(), Malformed::VotesNotNumeric);
        assert_eq!(parse(line("3", "1", "a\tb").as_bytes()).unwrap_err(), Malformed::FieldCount);
        assert_eq!(parse(b"US\t1").unwrap_err(), Malformed::FieldCount);
        assert_eq!(parse(b"").unwrap_err(), Malformed::FieldCount);
        let sixteen = line("3", "1", "b") + "\tx";
        assert_eq!(parse(sixteen.as_bytes()).unwrap_err(), Malformed::FieldCount);
        let fourteen = line("3", "1", "b").replacen("\tN\tY", "\tN", 1);
        assert_eq!(parse(fourteen.as_bytes()).unwrap_err(), Malformed::FieldCount);
        let mut bytes = line("3", "1", "ok").into_bytes();
        bytes[60] = 0xff;
        assert_eq!(parse(&bytes).unwrap_err(), Malformed::InvalidUtf8);
        // Two faults: the rating is checked first.
        assert_eq!(parse(line("x", "y", "b").as_bytes()).unwrap_err(), Malformed::StarRatingNotNumeric);
    }
}
