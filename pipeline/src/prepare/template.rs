//! The record template: `{column}` fields of `reviews` between literal text, compiled to a SQL expression so that
//! the formatting runs in the query like the rest of the job.

use crate::dump::COLUMNS;
use crate::{Error, Result};

/// The original project's template: gpt-2-simple's tags around `rating|||headline|||body`, one record per line.
pub const DEFAULT_TEMPLATE: &str = "<|startoftext|> {star_rating}|||{review_headline}|||{review_body}<|endoftext|>";

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Column(String),
}

/// Parses a template. `{{` and `}}` are literal braces; any other `{name}` must be a column of `reviews`.
pub fn parse(template: &str) -> Result<Vec<Piece>> {
    let invalid = |reason: String| Error::InvalidSetting { name: "--template", reason };
    if template.contains(['\n', '\r']) {
        return Err(invalid("a record is one line, so the template cannot hold a line break".into()));
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let rest = &template[at + 1..];
                let end = rest.find('}').ok_or_else(|| invalid(format!("unclosed {{ at byte {at}")))?;
                let name = &rest[..end];
                if !COLUMNS.contains(&name) {
                    return Err(invalid(format!(
                        "{{{name}}} is not a column of reviews; columns: {}",
                        COLUMNS.join(", ")
                    )));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Column(name.to_owned()));
                for _ in 0..=name.chars().count() {
                    chars.next();
                }
            }
            '}' => return Err(invalid(format!("unmatched }} at byte {at}; write }}}} for a literal brace"))),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Column(_))) {
        return Err(invalid("it names no column, so every record would be the same".into()));
    }
    Ok(pieces)
}

/// The SQL expression that formats one record: `function(keep, parts…)`, where `function` is `review_record` or
/// `raw_record` (see `udf::RecordUdf`), which clean text columns, write numbers in decimal and NULL fields as
/// nothing, and give NULL for rows where `keep` is not true.
pub fn to_sql(pieces: &[Piece], function: &str, keep: &str) -> String {
    let parts: Vec<String> = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => format!("'{}'", text.replace('\'', "''")),
            Piece::Column(name) => name.clone(),
        })
        .collect();
    format!("{function}({keep}, {})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_compiles() {
        let pieces = parse(DEFAULT_TEMPLATE).unwrap();
        assert_eq!(pieces.len(), 7);
        assert_eq!(
            to_sql(&pieces, "review_record", "dropped IS NULL"),
            "review_record(dropped IS NULL, '<|startoftext|> ', star_rating, '|||', review_headline, '|||', \
             review_body, '<|endoftext|>')"
        );
    }

    #[test]
    fn braces_quotes_and_errors() {
        let pieces = parse("{{x}} it's {product_title}").unwrap();
        assert_eq!(pieces, vec![Piece::Text("{x} it's ".into()), Piece::Column("product_title".into())]);
        assert_eq!(to_sql(&pieces, "raw_record", "TRUE"), "raw_record(TRUE, '{x} it''s ', product_title)");
        for (bad, says) in [
            ("{nope}", "not a column"),
            ("{review_body", "unclosed"),
            ("a } b {review_body}", "unmatched"),
            ("no fields", "names no column"),
            ("{review_body}\n", "line break"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }
}
