//! The AWS TSV format: a header line, then 15 tab-separated fields per line, with no quoting or escaping at all.
//! A `"` is an ordinary character here (real bodies start with one), which is why this is not a CSV reader.

use super::separators::Tabs;
use super::{LineReader, parse_rating, parse_votes};
use crate::batch::{HELPFUL_VOTES, Review, STAR_RATING, TOTAL_VOTES};
use crate::dump::{COLUMNS, Malformed};
use crate::{Error, Result};

pub fn read(lines: &mut LineReader<'_, '_>) -> Result<()> {
    let header = COLUMNS.join("\t");
    let url = lines.input.url.clone();
    let mut bad_header = None;
    lines.for_each_line(|state, line, tabs, line_no| {
        if line_no == 1 {
            if line != header.as_bytes() {
                bad_header = Some(String::from_utf8_lossy(line).chars().take(200).collect::<String>());
                *state.stopped = true;
            }
            return;
        }
        match parse(line, tabs) {
            Ok(review) => state.push(review, line_no),
            Err(reason) => state.malformed(reason, line, line_no),
        }
    })?;
    if let Some(found) = bad_header {
        return Err(Error::BadHeader { url, expected: header, found });
    }
    lines.finish()
}

/// One data line, with its tabs, as a review, or why it is malformed.
fn parse<'a>(line: &'a [u8], tabs: &Tabs) -> std::result::Result<Review<'a>, Malformed> {
    let text = if tabs.ascii() {
        // SAFETY: ASCII is valid UTF-8; `tabs` says so only of a line whose every byte is below 0x80 (checked
        // against `is_ascii` in separators' tests).
        unsafe { std::str::from_utf8_unchecked(line) }
    } else {
        std::str::from_utf8(line).map_err(|_| Malformed::InvalidUtf8)?
    };
    if tabs.count() != COLUMNS.len() - 1 {
        return Err(Malformed::FieldCount);
    }
    let mut review = Review::default();
    let mut start = 0;
    for (field, end) in review.text.iter_mut().zip(tabs.offsets().iter().copied().chain([line.len()])) {
        // A tab is ASCII, so every field boundary is a char boundary.
        *field = Some(&text[start..end]);
        start = end + 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(line: &str) -> std::result::Result<Review<'_>, Malformed> {
        parse(line.as_bytes(), &Tabs::of_line(line.as_bytes()))
    }

    fn line(rating: &str, helpful: &str, body: &str) -> String {
        format!("US\t1\tR1\tB00\t2\tTitle\tElectronics\t{rating}\t{helpful}\t3\tN\tY\tHeadline\t{body}\t2015-08-31")
    }

    #[test]
    fn parses_valid_lines_with_quotes_kept() {
        let text = line("5", "2", "\"Great\" — it's “fine”, really");
        let review = parse_line(&text).unwrap();
        assert_eq!(review.star_rating, 5);
        assert_eq!(review.helpful_votes, Some(2));
        assert_eq!(review.total_votes, Some(3));
        assert_eq!(review.text[13], Some("\"Great\" — it's “fine”, really"));
        assert_eq!(review.text[14], Some("2015-08-31"));
        assert_eq!(review.text[0], Some("US"));
        assert_eq!(review.text[12], Some("Headline"));
        // Empty fields are fields (and then the rating is not a number).
        let empty = "\t".repeat(14);
        assert_eq!(parse_line(&empty).unwrap_err(), Malformed::StarRatingNotNumeric);
        let mut fields = vec![""; COLUMNS.len()];
        fields[STAR_RATING] = "3";
        fields[HELPFUL_VOTES] = "0";
        fields[TOTAL_VOTES] = "0";
        let all_empty = fields.join("\t");
        let review = parse_line(&all_empty).unwrap();
        assert_eq!(review.text[0], Some(""));
        assert_eq!(review.text[14], Some(""));
    }

    #[test]
    fn names_each_fault() {
        assert_eq!(parse_line(&line("five", "1", "b")).unwrap_err(), Malformed::StarRatingNotNumeric);
        assert_eq!(parse_line(&line("6", "1", "b")).unwrap_err(), Malformed::StarRatingOutOfRange);
        assert_eq!(parse_line(&line("3", "NaN", "b")).unwrap_err(), Malformed::VotesNotNumeric);
        assert_eq!(parse_line(&line("3", "1", "a\tb")).unwrap_err(), Malformed::FieldCount);
        assert_eq!(parse_line("US\t1").unwrap_err(), Malformed::FieldCount);
        assert_eq!(parse_line("").unwrap_err(), Malformed::FieldCount);
        let sixteen = line("3", "1", "b") + "\tx";
        assert_eq!(parse_line(&sixteen).unwrap_err(), Malformed::FieldCount);
        let fourteen = line("3", "1", "b").replacen("\tN\tY", "\tN", 1);
        assert_eq!(parse_line(&fourteen).unwrap_err(), Malformed::FieldCount);
        let mut bytes = line("3", "1", "ok").into_bytes();
        bytes[60] = 0xff;
        assert_eq!(parse(&bytes, &Tabs::of_line(&bytes)).unwrap_err(), Malformed::InvalidUtf8);
        // Two faults: the rating is checked first.
        assert_eq!(parse_line(&line("x", "y", "b")).unwrap_err(), Malformed::StarRatingNotNumeric);
    }
}
