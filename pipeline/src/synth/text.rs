//! Review text that reads like the Amazon dump, quirks included.
//!
//! Bodies are built from sentence templates and cut to an exact length in characters (not bytes), so the length
//! distribution in [`super::profile`] survives intact. The dump's quirks are injected at the rates seen in the real
//! Electronics head (data README): `<br />` in ~9% of bodies, HTML entities (`&#34;`) in ~5%, literal double quotes
//! in ~4% (a few at the very start of a field), backslashes, multibyte UTF-8 and empty headlines.

use rand::Rng;
use rand::seq::IndexedRandom;

/// Which quirks one review carries; drawn once per review so the rates are easy to reason about.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    pub line_breaks: bool,
    pub entity: bool,
    pub quotes: bool,
    pub leading_quote: bool,
    pub backslash: bool,
    pub multibyte: bool,
    pub empty_headline: bool,
}

impl Quirks {
    pub fn draw(rng: &mut impl Rng) -> Self {
        Quirks {
            line_breaks: rng.random_bool(0.11),
            entity: rng.random_bool(0.05),
            quotes: rng.random_bool(0.04),
            leading_quote: rng.random_bool(0.004),
            backslash: rng.random_bool(0.003),
            multibyte: rng.random_bool(0.05),
            empty_headline: rng.random_bool(0.002),
        }
    }
}

const BRANDS: &[&str] = &[
    "Sonix",
    "Audiomax",
    "Kinetix",
    "Voltra",
    "Pixelon",
    "Cablex",
    "Nordvik",
    "Hoshi",
    "Brightline",
    "Tecmo",
    "Zentek",
    "Lumo",
    "Arcwave",
    "Duracore",
    "Mobilis",
];
const PRODUCTS: &[&str] = &[
    "Bluetooth Speaker",
    "Wireless Earbuds",
    "HDMI Cable",
    "USB Wall Charger",
    "Car Phone Mount",
    "Portable Power Bank",
    "Over-Ear Headphones",
    "TV Antenna",
    "Surge Protector",
    "Micro SD Card",
    "Laptop Sleeve",
    "Wireless Mouse",
    "Keyboard",
    "Webcam",
    "Tablet Case",
    "Ethernet Switch",
    "Soundbar",
    "Dash Cam",
    "Smart Plug",
    "Battery Pack",
];
const SPECS: &[&str] = &[
    "Black",
    "White",
    "6 ft",
    "10 Pack",
    "with Mic",
    "2nd Generation",
    "32GB",
    "Waterproof",
    "for iPhone and Android",
    "Gold Plated",
    "Refurbished",
    "Dual Port",
    "1080p",
];
const FEATURES: &[&str] = &[
    "sound",
    "battery life",
    "build quality",
    "cable",
    "connector",
    "range",
    "bass",
    "price",
    "charging",
    "remote",
    "manual",
    "volume",
    "fit",
    "screen",
    "buttons",
    "case",
];
const GADGETS: &[&str] = &["phone", "laptop", "TV", "car", "tablet", "desktop", "Kindle", "iPad", "receiver"];
const PEOPLE: &[&str] = &["wife", "husband", "son", "daughter", "dad", "mom", "office", "kids", "brother"];
const GOOD: &[&str] = &["great", "excellent", "solid", "good", "amazing", "impressive", "fine", "decent", "superb"];
const BAD: &[&str] = &["terrible", "awful", "flimsy", "poor", "weak", "useless", "disappointing", "cheap", "horrible"];
const SPANS: &[&str] = &["a week", "two days", "a month", "three weeks", "ten minutes", "six months", "a year"];

const POSITIVE: &[&str] = &[
    "I bought this {product} for my {person} and it works {good_adv}.",
    "The {feature} is {good}.",
    "Works {good_adv} with my {gadget}.",
    "Setup took less than five minutes and it has worked {good_adv} since.",
    "For the price you really can't beat it.",
    "The {feature} is {good} for such a small {product}.",
    "Battery life is {good}, easily ten hours on a charge.",
    "Would definitely buy again.",
    "Shipping was fast and it arrived well packed.",
    "I have had it for {span} now with no problems at all.",
    "Much better than the one that came with my {gadget}.",
    "Highly recommend this to anyone looking for a {product}.",
    "My {person} uses it every day.",
    "Exactly as described, no surprises.",
];
const NEGATIVE: &[&str] = &[
    "Stopped working after {span}.",
    "The {feature} is {bad}.",
    "I returned it.",
    "Do not waste your money on this {product}.",
    "Customer service never answered my emails.",
    "It does not fit my {gadget} as advertised.",
    "The {feature} broke within {span}.",
    "Cheaply made and the {feature} feels {bad}.",
    "I tried it with two different {gadget}s and it failed with both.",
    "The description says one thing and the box says another.",
    "Overheats after {span} of use.",
    "Save yourself the trouble and buy a better {product}.",
];
const MIXED: &[&str] = &[
    "It does the job but the {feature} could be better.",
    "Not bad for the price.",
    "The {feature} is {good} but the {feature2} is {bad}.",
    "Works most of the time.",
    "The instructions were confusing, but I figured it out.",
    "It is fine for occasional use with my {gadget}.",
    "After {span} the {feature} started to get loose.",
    "Average {product}, nothing special.",
    "I expected more given the reviews.",
];

const HEADLINES: [&[&str]; 5] = [
    &["One Star", "Junk", "Stopped working after {span}", "Do not buy", "Waste of money", "Broke right away"],
    &["Two Stars", "Disappointed", "Not as described", "Meh", "Cheap {product}", "Could be better"],
    &["Three Stars", "It's okay", "Decent but not great", "Average", "Does the job", "Mixed feelings"],
    &["Four Stars", "Good value", "Pretty good", "Solid {product}", "Works well", "Nice for the price"],
    &["Five Stars", "Five Stars", "Great product", "Love it!", "Works perfectly", "Excellent {product}", "Perfect"],
];

/// Fragments carrying each quirk, as they appear in the real dump.
const ENTITY_FRAGMENTS: &[&str] = &[
    "It fits the 7&#34; tablet perfectly.",
    "The &#34;premium&#34; cable is anything but.",
    "Works with my 55&#34; TV.",
    "Black &amp; white only.",
];
const QUOTE_FRAGMENTS: &[&str] = &[
    "The box says \"universal\" but it isn't.",
    "My son called it \"the best gift ever\".",
    "It has a 1/4\" jack on one end.",
    "They call this \"HD\" sound.",
];
const LEADING_QUOTE_BODIES: &[&str] = &["\"Plug and play\" is not quite true.", "\"Works great\" is all I can say."];
const BACKSLASH_FRAGMENTS: &[&str] =
    &["The driver installs to C:\\Program Files\\Audio.", "Rock on \\m/ this thing is loud.", "Hmm :-\\ not sure."];
const MULTIBYTE_FRAGMENTS: &[&str] = &[
    "Sounds great in the café.",
    "Works from −10 °C to 40 °C, so they say.",
    "Paid 25€ at the shop — cheaper here.",
    "Über easy to use 👍",
    "Love it 😀",
    "Quality is “okay” at best…",
    "很好 as my mother-in-law says.",
    "Half the size (½) of my old one.",
];
const LINE_BREAK: &str = "<br /><br />";

/// Short closing sentences indexed by length in characters. The body ends at a sentence boundary and is topped up
/// to its exact length with these, so no body ends in half a word or half a sentence.
const CLOSERS: [&str; 14] = [
    "",
    "!",
    "!!",
    " :)",
    " Ok.",
    " Meh.",
    " Done.",
    " Noted.",
    " Thanks.",
    " The end.",
    " So there.",
    " Nuff said.",
    " That's all.",
    " Just saying.",
];

/// Whole bodies for lengths too short for any sentence, indexed by length in characters.
const SHORT_BODIES: [&str; 15] = [
    "",
    "K",
    "ok",
    "Ok.",
    "Meh.",
    "Fine.",
    "So-so.",
    "Not bad",
    "It works",
    "As shown.",
    "Works okay",
    "Works fine.",
    "As described",
    "It does work.",
    "Just as shown.",
];

/// One product in the synthetic catalogue, derived from its index alone so the catalogue needs no memory.
pub struct Product {
    pub id: String,
    pub parent: u64,
    pub title: String,
    pub noun: &'static str,
}

impl Product {
    pub fn draw(rng: &mut impl Rng) -> Self {
        let noun = *PRODUCTS.choose(rng).expect("non-empty");
        let brand = BRANDS.choose(rng).expect("non-empty");
        let model = format!("{}{}", (b'A' + rng.random_range(0..26)) as char, rng.random_range(100..1000));
        let spec = SPECS.choose(rng).expect("non-empty");
        let title = if rng.random_bool(0.05) {
            format!("{brand} 3.5mm TRS to 1/4\" TRS {noun} {model}")
        } else {
            format!("{brand} {model} {noun}, {spec}")
        };
        Product { id: format!("B{}", code(rng, 9)), parent: rng.random_range(1_000_000..999_999_999), title, noun }
    }
}

/// `n` characters of upper-case letters and digits, like ASINs and review ids.
pub fn code(rng: &mut impl Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

fn fill(template: &str, rng: &mut impl Rng, noun: &str) -> String {
    let mut out = template.to_owned();
    let slots: [(&str, &[&str]); 8] = [
        ("{feature2}", FEATURES),
        ("{feature}", FEATURES),
        ("{gadget}", GADGETS),
        ("{person}", PEOPLE),
        ("{good_adv}", &["great", "perfectly", "flawlessly", "well", "fine"]),
        ("{good}", GOOD),
        ("{bad}", BAD),
        ("{span}", SPANS),
    ];
    for (slot, words) in slots {
        while let Some(at) = out.find(slot) {
            out.replace_range(at..at + slot.len(), words.choose(rng).expect("non-empty"));
        }
    }
    out.replace("{product}", &common_noun(noun))
}

/// "HDMI Cable" -> "HDMI cable": lower case inside a sentence, but acronyms stay as they are.
fn common_noun(noun: &str) -> String {
    let words = noun
        .split(' ')
        .map(|w| if w.chars().all(|c| c.is_ascii_uppercase()) { w.to_owned() } else { w.to_lowercase() });
    words.collect::<Vec<_>>().join(" ")
}

pub fn headline(rng: &mut impl Rng, rating: u8, noun: &str, quirks: Quirks) -> String {
    if quirks.empty_headline {
        return String::new();
    }
    let text = fill(HEADLINES[rating as usize - 1].choose(rng).expect("non-empty"), rng, noun);
    if quirks.leading_quote && rng.random_bool(0.5) { format!("\"{text}\" indeed") } else { text }
}

/// A body of exactly `len` characters for a review with this rating.
pub fn body(rng: &mut impl Rng, rating: u8, len: usize, noun: &str, quirks: Quirks) -> String {
    let sentences = match rating {
        1 | 2 => NEGATIVE,
        3 => MIXED,
        _ => POSITIVE,
    };
    let mut special: Vec<&str> = Vec::new();
    for (on, fragments) in [
        (quirks.entity, ENTITY_FRAGMENTS),
        (quirks.quotes, QUOTE_FRAGMENTS),
        (quirks.backslash, BACKSLASH_FRAGMENTS),
        (quirks.multibyte, MULTIBYTE_FRAGMENTS),
    ] {
        if on {
            special.push(fragments.choose(rng).expect("non-empty"));
        }
    }

    if len < SHORT_BODIES.len() && !quirks.leading_quote {
        return SHORT_BODIES[len].to_owned();
    }
    let mut text = String::new();
    if quirks.leading_quote {
        text.push_str(LEADING_QUOTE_BODIES.choose(rng).expect("non-empty"));
    }
    let mut chars = text.chars().count();
    let mut sentence_no = usize::from(!text.is_empty());
    loop {
        // Paragraph breaks come between sentences, the first one early so that short bodies show it too.
        let separator = match sentence_no {
            0 => "",
            _ if quirks.line_breaks && (sentence_no == 1 || rng.random_bool(0.2)) => LINE_BREAK,
            _ => " ",
        };
        let budget = len.saturating_sub(chars + separator.len());
        let sentence = match special.last() {
            Some(fragment) if fragment.chars().count() <= budget => special.pop().map(str::to_owned),
            _ => (0..8)
                .map(|_| fill(sentences.choose(rng).expect("non-empty"), rng, noun))
                .find(|s| s.chars().count() <= budget),
        };
        let Some(sentence) = sentence else { break };
        text.push_str(separator);
        text.push_str(&sentence);
        chars += separator.len() + sentence.chars().count();
        sentence_no += 1;
    }
    close(text, chars, len)
}

/// Tops `text` (`chars` characters long) up to exactly `len` characters with closing sentences.
fn close(mut text: String, mut chars: usize, len: usize) -> String {
    if text.is_empty() {
        // No sentence fitted: open with the longest short body, since closers start with a space.
        text.push_str(SHORT_BODIES[SHORT_BODIES.len() - 1]);
        chars = SHORT_BODIES.len() - 1;
    }
    let longest = CLOSERS.len() - 1;
    while chars < len {
        let gap = len - chars;
        // Leave either nothing or at least a four-character closer for the next round.
        let take = if gap <= longest { gap } else { (gap - 4).min(longest) };
        text.push_str(CLOSERS[take]);
        chars += take;
    }
    if chars > len {
        // Only a leading-quote opening can overshoot a very short length; cut it on a character boundary.
        let bytes = text.char_indices().nth(len).map_or(text.len(), |(i, _)| i);
        text.truncate(bytes);
    }
    text
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn tables_are_indexed_by_length() {
        for table in [&CLOSERS[..], &SHORT_BODIES[..]] {
            for (i, text) in table.iter().enumerate() {
                assert_eq!(text.chars().count(), i, "{text:?}");
            }
        }
    }

    #[test]
    fn bodies_have_the_exact_length_in_characters() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let all = Quirks {
            line_breaks: true,
            entity: true,
            quotes: true,
            leading_quote: true,
            backslash: true,
            multibyte: true,
            empty_headline: false,
        };
        for len in (1..400).chain([1000, 5000]) {
            for quirks in [Quirks::default(), all] {
                let body = body(&mut rng, (len % 5 + 1) as u8, len, "Soundbar", quirks);
                assert_eq!(body.chars().count(), len, "{body:?}");
                assert!(!body.contains(['\t', '\n', '\r']), "{body:?}");
                assert!(!body.starts_with(' '), "{body:?}");
            }
        }
    }

    #[test]
    fn quirks_show_up_in_long_bodies() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let quirks = Quirks { line_breaks: true, multibyte: true, leading_quote: true, ..Quirks::default() };
        let body = body(&mut rng, 5, 600, "Soundbar", quirks);
        assert!(body.starts_with('"'), "{body}");
        assert!(body.contains("<br />"), "{body}");
        assert!(body.len() > body.chars().count(), "no multibyte text in {body}");
    }
}
