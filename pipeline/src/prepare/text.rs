//! Review text as training records hold it: one record per line.
//!
//! The dump's text is HTML-ish: line breaks are `<br />` tags and some characters are entities (`&#34;`, `&amp;`).
//! By default [`clean`] turns every line break (a `<br>` tag in any spelling, or a real CR/LF, which JSON dumps
//! have) into the two characters `\n` (backslash, n), so that a record stays on one line, and decodes entities.
//! [`unescape_newlines`] turns `\n` back into line breaks in generated text. `--raw-html` uses [`one_line`]
//! instead: the text exactly as in the dump, except that a real line break (never in the TSV dump) still becomes
//! `\n`, since a record is one line.

use std::borrow::Cow;
use std::fmt::{self, Write};

/// The escape that stands for a line break inside a record.
pub const NEWLINE_ESCAPE: &str = "\\n";

/// Line breaks to `\n` and HTML entities decoded; text with neither is returned as is.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !needs_clean(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    clean_into(text, &mut out).expect("writing to a String cannot fail");
    Cow::Owned(out)
}

/// [`clean`], written to `out`: a record is built in place, with no copy of each field in between.
pub fn clean_into(text: &str, out: &mut impl Write) -> fmt::Result {
    let has_cr = memchr::memchr(b'\r', text.as_bytes()).is_some();
    let mut rest = text;
    while let Some(at) = next_special(rest.as_bytes(), has_cr) {
        out.write_str(&rest[..at])?;
        rest = &rest[at..];
        let consumed = match rest.as_bytes()[0] {
            b'<' => br_tag(rest).map(|len| out.write_str(NEWLINE_ESCAPE).map(|()| len)),
            b'&' => entity(rest).map(|(c, len)| push_decoded(out, c).map(|()| len)),
            _ => Some(line_break(rest, out)),
        }
        .transpose()?;
        // A `<` or `&` that starts no tag or entity is kept as it is (one ASCII byte).
        let len = match consumed {
            Some(len) => len,
            None => {
                out.write_str(&rest[..1])?;
                1
            }
        };
        rest = &rest[len..];
    }
    out.write_str(rest)
}

/// Where the next byte that [`clean`] may rewrite is. A CR is rare, so it gets a search of its own only in text
/// that has one: the vectorised search takes at most three bytes.
fn next_special(bytes: &[u8], has_cr: bool) -> Option<usize> {
    let found = memchr::memchr3(b'<', b'&', b'\n', bytes);
    match (found, has_cr.then(|| memchr::memchr(b'\r', bytes)).flatten()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn needs_clean(text: &str) -> bool {
    memchr::memchr3(b'<', b'&', b'\n', text.as_bytes()).is_some() || memchr::memchr(b'\r', text.as_bytes()).is_some()
}

/// Only real line breaks to `\n`: the `--raw-html` text.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    one_line_into(text, &mut out).expect("writing to a String cannot fail");
    Cow::Owned(out)
}

/// [`one_line`], written to `out`.
pub fn one_line_into(text: &str, out: &mut impl Write) -> fmt::Result {
    let mut rest = text;
    while let Some(at) = memchr::memchr2(b'\n', b'\r', rest.as_bytes()) {
        out.write_str(&rest[..at])?;
        let len = line_break(&rest[at..], out)?;
        rest = &rest[at + len..];
    }
    out.write_str(rest)
}

/// The inverse of the line-break escape, for generated text.
pub fn unescape_newlines(text: &str) -> String {
    text.replace(NEWLINE_ESCAPE, "\n")
}

/// A CR, LF or CRLF at the start of `s`, written as one escape. Returns the bytes consumed.
fn line_break(s: &str, out: &mut impl Write) -> Result<usize, fmt::Error> {
    out.write_str(NEWLINE_ESCAPE)?;
    Ok(if s.starts_with("\r\n") { 2 } else { 1 })
}

/// A decoded entity: a decoded character is written as is, except that a decoded line break is escaped.
fn push_decoded(out: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\n' | '\r' => out.write_str(NEWLINE_ESCAPE),
        c => out.write_char(c),
    }
}

/// The length of a `<br>` tag at the start of `s`: `<br>`, `<br/>`, `<br />`, `<BR >`, any case and spacing.
fn br_tag(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() < 4 || !b[1].eq_ignore_ascii_case(&b'b') || !b[2].eq_ignore_ascii_case(&b'r') {
        return None;
    }
    let mut i = 3;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i < b.len() && b[i] == b'/' {
        i += 1;
    }
    (i < b.len() && b[i] == b'>').then_some(i + 1)
}

/// The character of an entity at the start of `s` (`&amp;`, `&#34;`, `&#x27;`), and its length. Unknown names and
/// bad numbers are not entities: the text is kept as it is.
fn entity(s: &str) -> Option<(char, usize)> {
    // The longest name below is 6 letters; numbers have at most 7 digits.
    let end = s.as_bytes().iter().take(12).position(|&b| b == b';')?;
    let body = &s[1..end];
    let c = if let Some(number) = body.strip_prefix('#') {
        let code = match number.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => number.parse().ok()?,
        };
        char::from_u32(code).filter(|&c| c != '\0')?
    } else {
        named(body)?
    };
    Some((c, end + 1))
}

/// HTML's named entities that occur in review text: markup, Latin-1 and typography.
fn named(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "iexcl" => '¡',
        "cent" => '¢',
        "pound" => '£',
        "curren" => '¤',
        "yen" => '¥',
        "brvbar" => '¦',
        "sect" => '§',
        "uml" => '¨',
        "copy" => '©',
        "ordf" => 'ª',
        "laquo" => '«',
        "not" => '¬',
        "shy" => '\u{ad}',
        "reg" => '®',
        "macr" => '¯',
        "deg" => '°',
        "plusmn" => '±',
        "sup2" => '²',
        "sup3" => '³',
        "acute" => '´',
        "micro" => 'µ',
        "para" => '¶',
        "middot" => '·',
        "cedil" => '¸',
        "sup1" => '¹',
        "ordm" => 'º',
        "raquo" => '»',
        "frac14" => '¼',
        "frac12" => '½',
        "frac34" => '¾',
        "iquest" => '¿',
        "times" => '×',
        "divide" => '÷',
        "Agrave" => 'À',
        "Aacute" => 'Á',
        "Acirc" => 'Â',
        "Atilde" => 'Ã',
        "Auml" => 'Ä',
        "Aring" => 'Å',
        "AElig" => 'Æ',
        "Ccedil" => 'Ç',
        "Egrave" => 'È',
        "Eacute" => 'É',
        "Ecirc" => 'Ê',
        "Euml" => 'Ë',
        "Igrave" => 'Ì',
        "Iacute" => 'Í',
        "Icirc" => 'Î',
        "Iuml" => 'Ï',
        "ETH" => 'Ð',
        "Ntilde" => 'Ñ',
        "Ograve" => 'Ò',
        "Oacute" => 'Ó',
        "Ocirc" => 'Ô',
        "Otilde" => 'Õ',
        "Ouml" => 'Ö',
        "Oslash" => 'Ø',
        "Ugrave" => 'Ù',
        "Uacute" => 'Ú',
        "Ucirc" => 'Û',
        "Uuml" => 'Ü',
        "Yacute" => 'Ý',
        "THORN" => 'Þ',
        "szlig" => 'ß',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "atilde" => 'ã',
        "auml" => 'ä',
        "aring" => 'å',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "icirc" => 'î',
        "iuml" => 'ï',
        "eth" => 'ð',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ocirc" => 'ô',
        "otilde" => 'õ',
        "ouml" => 'ö',
        "oslash" => 'ø',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "yacute" => 'ý',
        "thorn" => 'þ',
        "yuml" => 'ÿ',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "hellip" => '…',
        "bull" => '•',
        "trade" => '™',
        "euro" => '€',
        "dagger" => '†',
        "permil" => '‰',
        "prime" => '′',
        "Prime" => '″',
        "larr" => '←',
        "rarr" => '→',
        "hearts" => '♥',
        "frac13" => '⅓',
        "minus" => '−',
        "le" => '≤',
        "ge" => '≥',
        "ne" => '≠',
        "asymp" => '≈',
        "infin" => '∞',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_become_one_escape() {
        assert_eq!(clean("Great.<br />Works.<br/>x<BR>y<br >z"), r"Great.\nWorks.\nx\ny\nz");
        assert_eq!(clean("a\r\nb\nc\rd"), r"a\nb\nc\nd");
        assert_eq!(one_line("a\r\nb<br />c &amp;"), r"a\nb<br />c &amp;");
        assert_eq!(unescape_newlines(&clean("a<br /><br />b")), "a\n\nb");
    }

    #[test]
    fn entities_decode_and_unknown_ones_stay() {
        assert_eq!(
            clean("&#34;Best&#34; &amp; &quot;cheap&quot; &#x27;ok&#39; &eacute;"),
            "\"Best\" & \"cheap\" 'ok' é"
        );
        assert_eq!(clean("AT&T; a & b &bogus; &#xZZ; &#0; &"), "AT&T; a & b &bogus; &#xZZ; &#0; &");
        assert_eq!(clean("&#10;"), r"\n", "a decoded line break is escaped too");
        assert_eq!(clean("<b>bold</b> 3 < 4"), "<b>bold</b> 3 < 4", "only <br> tags are rewritten");
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(clean("plain text"), Cow::Borrowed(_)));
        assert!(matches!(one_line("a <br /> b"), Cow::Borrowed(_)));
    }
}
